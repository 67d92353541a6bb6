"""CAMS answers → outcomes: terminal codes fail at once, retryable ones retry in the deadline."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from index import http_handler
from tests.fixtures.handlers import http_event, signed_event, signed_headers
from wababind.cams import is_retryable
from wababind_local.cams_simulator import DOCUMENTED_ERRORS, Fault

TERMINAL = sorted(
    code for code, (status, _msg) in DOCUMENTED_ERRORS.items() if not is_retryable(status, code)
)
RETRYABLE = sorted(
    code for code, (status, _msg) in DOCUMENTED_ERRORS.items() if is_retryable(status, code)
)


def bind(
    waba_id: str, context: Any, timeout: int = 30
) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = http_handler(signed_event({"WabaId": waba_id}), context(timeout=timeout))
    return response["statusCode"], response["headers"], json.loads(response["body"])


def test_the_catalog_has_terminal_and_retryable_codes():
    assert {"Ram.PermissionDeny", "Product.Unsubscript", "Unknown.ResourceOwnerId"} <= set(TERMINAL)
    assert {"System.LimitControl", "ServiceUnavailable", "InternalError"} <= set(RETRYABLE)


@pytest.mark.parametrize("code", TERMINAL)
def test_each_documented_terminal_code_fails_at_once_with_that_code(wababind_env, context, code):
    status_code, message = DOCUMENTED_ERRORS[code]
    wababind_env.set_fault("2000000000000001", Fault.error(code, status_code, message))
    status, _, body = bind("2000000000000001", context)
    assert status == 502
    assert (body["Status"], body["Code"], body["Retryable"], body["Attempts"]) == (
        "failed",
        code,
        False,
        1,
    )
    assert body["RequestId"] and body["CustSpaceId"] is None
    assert wababind_env.count(waba_id="2000000000000001") == 1


def test_permission_denial_carries_access_denied_detail(wababind_env, context):
    status_code, message = DOCUMENTED_ERRORS["Ram.PermissionDeny"]
    wababind_env.set_fault(
        "2000000000000002", Fault.error("Ram.PermissionDeny", status_code, message)
    )
    _, _, body = bind("2000000000000002", context)
    assert "cams:ChatappBindWaba" in (body["AccessDeniedDetail"] or "")


def test_http_200_with_success_false_is_failed_never_bound(wababind_env, context):
    wababind_env.set_fault(
        "2000000000000003", Fault.success_false("ERR-FB-001", "Graph API refused")
    )
    status, _, body = bind("2000000000000003", context)
    assert status == 502 and body["Status"] == "failed" and body["Code"] == "ERR-FB-001"
    assert body["CustSpaceId"] is None


def test_a_terminal_failure_answers_its_resend_without_a_call_and_a_new_request_calls_again(
    wababind_env, context
):
    wababind_env.set_fault(
        "2000000000000004", Fault.error("Product.Unsubscript", 400, "not subscribed")
    )
    text = json.dumps({"WabaId": "2000000000000004"})
    first = http_event(text, signed_headers(text, msg_id="msg_terminal_1"))
    resent = http_event(text, signed_headers(text, msg_id="msg_terminal_1"))
    assert http_handler(first, context())["statusCode"] == 502
    response = http_handler(resent, context())
    body = json.loads(response["body"])
    assert response["statusCode"] == 502 and body["Code"] == "Product.Unsubscript"
    assert (body["Attempts"], body["EventId"]) == (0, "msg_terminal_1")
    assert wababind_env.count(waba_id="2000000000000004") == 1
    # a new request (a new webhook-id: the WABA was fixed and sent again) calls CAMS again
    status, _, body = bind("2000000000000004", context)
    assert status == 502 and body["Attempts"] == 1
    assert wababind_env.count(waba_id="2000000000000004") == 2


RETRIED = [
    ("503", lambda: Fault.http_status(503, times=2)),
    ("500", lambda: Fault.http_status(500, times=2)),
    ("ServiceUnavailable", lambda: Fault.error("ServiceUnavailable", 503, "unavailable", times=2)),
    ("InternalError", lambda: Fault.error("InternalError", 500, "internal", times=2)),
    (
        "System.LimitControl",
        lambda: Fault.error("System.LimitControl", 400, "flow control", times=2),
    ),
    ("Throttling.User", lambda: Fault.error("Throttling.User", 400, "user flow control", times=2)),
    ("dropped connection", lambda: Fault.drop(times=2)),
    ("slow past the read timeout", lambda: Fault.slow(2.0, times=1)),
    ("garbage 200", lambda: Fault.garbage(times=2)),
    ("a gateway's 408 page", lambda: Fault.http_status(408, times=2)),
    ("a gateway's 429 page", lambda: Fault.http_status(429, times=2)),
    ("504 page", lambda: Fault.http_status(504, times=2)),
]


@pytest.mark.parametrize(("name", "fault"), RETRIED, ids=[r[0] for r in RETRIED])
def test_retryable_faults_are_retried_and_bound_when_they_clear(wababind_env, context, name, fault):
    installed = fault()
    wababind_env.set_fault("2000000000000005", installed)
    status, _, body = bind("2000000000000005", context)
    assert status == 200, body
    assert body["Status"] == "bound"
    assert body["Attempts"] == installed.times + 1
    assert wababind_env.count(waba_id="2000000000000005") == installed.times + 1


def test_a_fault_that_never_clears_answers_503_before_the_deadline(wababind_env, context):
    wababind_env.set_fault("2000000000000006", Fault.http_status(503))
    started = time.monotonic()
    status, headers, body = bind("2000000000000006", context, timeout=4)
    elapsed = time.monotonic() - started
    assert status == 503 and headers["Retry-After"].isdigit()
    assert body["Retryable"] is True and body["Code"] == "HTTP503" and body["Attempts"] >= 2
    # behaviour, not speed: the handler stopped on its own, inside the function's timeout
    assert elapsed < 4
    # a retryable failure is not remembered: the next try calls CAMS again
    wababind_env.set_fault("2000000000000006", Fault.http_status(503, times=0))
    assert bind("2000000000000006", context)[0] == 200


# A page without CAMS's JSON at 3xx/4xx is not CAMS answering: a WAF, a proxy, a wrong endpoint.
# It will answer the same tomorrow, so it is terminal, not retried for a day.
TERMINAL_PAGES = [301, 400, 401, 403, 404, 405]


@pytest.mark.parametrize("status", TERMINAL_PAGES)
def test_a_page_without_json_at_3xx_or_4xx_is_terminal(wababind_env, context, status):
    wababind_env.set_fault("2000000000000007", Fault.http_status(status))
    code, _, body = bind("2000000000000007", context)
    assert code == 502
    assert (body["Status"], body["Code"], body["Retryable"], body["Attempts"]) == (
        "failed",
        f"HTTP{status}",
        False,
        1,
    )
    assert "CAMS_ENDPOINT" in body["Message"] and body["Ambiguous"] is False
    assert wababind_env.count(waba_id="2000000000000007") == 1
