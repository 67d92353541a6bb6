"""The HTTP function answers every status in SPEC.md with a JSON body, over the real simulator."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from index import http_handler
from tests.fixtures.handlers import (
    OUTCOME_FIELDS,
    http_event,
    outcome_lines,
    signed_event,
    signed_headers,
)
from wababind_local.cams_simulator import Fault


def call(event: bytes, context: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = http_handler(event, context())
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], response["headers"], json.loads(response["body"])


def test_good_bind_answers_200_with_the_outcome(wababind_env, context, capsys):
    status, _, body = call(
        signed_event({"WabaId": "1000000000000001", "Reference": "r-1"}), context
    )
    assert status == 200
    assert set(body) == OUTCOME_FIELDS
    assert body["Status"] == "bound" and body["Code"] == "OK" and body["Attempts"] == 1
    assert body["Source"] == "http" and body["EventId"].startswith("msg_")
    assert body["CustSpaceId"] == wababind_env.bound()["1000000000000001"]
    assert body["Reference"] == "r-1" and body["RequestId"]
    assert outcome_lines(capsys.readouterr().out) == [body]


def test_integer_waba_id_is_turned_into_its_digits(wababind_env, context):
    status, _, body = call(signed_event('{"WabaId": 1000000000000002}'), context)
    assert (status, body["WabaId"], body["Status"]) == (200, "1000000000000002", "bound")


def test_second_request_for_a_bound_waba_is_duplicate_without_a_cams_call(wababind_env, context):
    first = call(signed_event({"WabaId": "1000000000000003"}), context)[2]
    status, _, second = call(signed_event({"WabaId": "1000000000000003"}), context)
    assert status == 200 and second["Status"] == "duplicate" and second["Attempts"] == 0
    assert second["CustSpaceId"] == first["CustSpaceId"]
    assert wababind_env.count(waba_id="1000000000000003") == 1


def test_sts_credentials_from_the_context_are_used(wababind_env, context, monkeypatch):
    from tests.fixtures.handlers import FakeCredentials
    from wababind_local.cams_simulator import DEFAULT_STS_KEY

    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret")
    creds = FakeCredentials(
        DEFAULT_STS_KEY.access_key_id,
        DEFAULT_STS_KEY.access_key_secret,
        DEFAULT_STS_KEY.security_token or "",
    )
    response = http_handler(
        signed_event({"WabaId": "1000000000000004"}), context(credentials=creds)
    )
    assert response["statusCode"] == 200, response["body"]
    assert wababind_env.calls()[-1].access_key_id == DEFAULT_STS_KEY.access_key_id


@pytest.mark.parametrize(
    ("secret_env", "expected_code"),
    [("a-wrong-secret", "SignatureDoesNotMatch"), (None, "MissingCredentials")],
)
def test_bad_cams_credentials_are_refused_by_the_simulator(
    wababind_env, context, monkeypatch, capsys, secret_env, expected_code
):
    if secret_env is None:
        monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID")
    else:
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret_env)
    status, _, body = call(signed_event({"WabaId": "1000000000000005"}), context)
    assert (status, body["Status"], body["Code"], body["Retryable"]) == (
        502,
        "failed",
        expected_code,
        False,
    )
    out = capsys.readouterr()
    assert "string to sign" not in json.dumps(body) + out.out + out.err


# --- every status in the table -------------------------------------------------------------


def _big_body() -> str:
    return json.dumps({"WabaId": "1", "Pad": "x" * (64 * 1024)})


REJECTIONS = [
    # (name, event builder, status, field, rule)
    ("GET", lambda: http_event("{}", method="GET"), 405, "method", "POST"),
    ("PUT", lambda: http_event("{}", method="PUT"), 405, "method", "POST"),
    ("over 64 KiB", lambda: signed_event(_big_body()), 413, "body", "max-size"),
    (
        "text/plain",
        lambda: http_event('{"WabaId":"1"}', {"Content-Type": "text/plain"}),
        415,
        "content-type",
        "application/json",
    ),
    (
        "no content type",
        lambda: http_event('{"WabaId":"1"}', {"Content-Type": ""}),
        415,
        "content-type",
        "application/json",
    ),
    ("unsigned", lambda: http_event('{"WabaId":"1"}'), 401, "webhook-id", "missing"),
    (
        "wrong secret",
        lambda: signed_event({"WabaId": "1"}, secret="whsec_" + "QUJD" * 8),
        401,
        "webhook-signature",
        "mismatch",
    ),
    (
        "stale",
        lambda: signed_event(
            {"WabaId": "1"}, when=datetime.now(timezone.utc) - timedelta(minutes=6)
        ),
        401,
        "webhook-timestamp",
        "stale",
    ),
    (
        "future",
        lambda: signed_event(
            {"WabaId": "1"}, when=datetime.now(timezone.utc) + timedelta(minutes=6)
        ),
        401,
        "webhook-timestamp",
        "future",
    ),
    ("not JSON", lambda: signed_event("{nope"), 400, "body", "json"),
    ("JSON array", lambda: signed_event("[1, 2]"), 400, "body", "object"),
    ("WabaId letters", lambda: signed_event({"WabaId": "12ab"}), 422, "WabaId", "digits"),
    ("WabaId missing", lambda: signed_event({"Reference": "x"}), 422, "WabaId", "required"),
    ("not an HTTP event", lambda: b'{"hello": 1}', 400, "event", "fc-http-trigger"),
]


@pytest.mark.parametrize(
    ("name", "build", "status", "field", "rule"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_rejections_name_the_field_and_rule(
    wababind_env, context, name, build, status, field, rule, capsys
):
    got, _, body = call(build(), context)
    assert got == status
    assert {"Field": field, "Rule": rule} in [
        {"Field": e["Field"], "Rule": e["Rule"]} for e in body["Errors"]
    ]
    assert wababind_env.count() == 0
    assert outcome_lines(capsys.readouterr().out) == []


def test_a_503_lets_the_sender_retry_with_the_same_webhook_id(wababind_env, context):
    wababind_env.set_fault("1000000000000007", Fault.http_status(503, times=100))
    body = json.dumps({"WabaId": "1000000000000007"})
    headers = signed_headers(body, msg_id="msg_retry_me")
    status, resp_headers, outcome = call(http_event(body, headers), context)
    assert status == 503 and resp_headers["Retry-After"].isdigit() and outcome["Retryable"]
    wababind_env.set_fault("1000000000000007", Fault.http_status(503, times=0))
    retry = http_event(body, signed_headers(body, msg_id="msg_retry_me"))
    assert call(retry, context)[0] == 200


def test_webhook_auth_none_serves_without_a_secret(wababind_env, context, monkeypatch):
    monkeypatch.delenv("WEBHOOK_SECRET")
    monkeypatch.setenv("WEBHOOK_AUTH", "none")
    assert call(http_event('{"WabaId":"1000000000000008"}'), context)[0] == 200


def test_no_secret_and_no_opt_out_refuses_to_serve(wababind_env, context, monkeypatch):
    monkeypatch.delenv("WEBHOOK_SECRET")
    status, _, body = call(http_event('{"WabaId":"1000000000000009"}'), context)
    assert status == 500 and body["Code"] == "ConfigurationError"
    assert wababind_env.count() == 0


def test_bad_setting_is_a_json_error_that_names_it(wababind_env, context, monkeypatch):
    monkeypatch.setenv("CAMS_QPS", "fast")
    status, _, body = call(signed_event({"WabaId": "1"}), context)
    assert status == 500 and "CAMS_QPS" in body["Message"]


def test_base64_body_is_decoded(wababind_env, context):
    text = json.dumps({"WabaId": "1000000000000010"})
    event = http_event(text, signed_headers(text), base64_body=True)
    assert call(event, context)[0] == 200


def test_header_names_are_case_insensitive(wababind_env, context):
    text = json.dumps({"WabaId": "1000000000000011"})
    headers = {k.upper(): v for k, v in signed_headers(text).items()}
    assert (
        call(http_event(text, {**headers, "CONTENT-TYPE": "application/json"}), context)[0] == 200
    )


def _library_answer(headers: dict[str, str], body: str) -> str:
    from standardwebhooks import Webhook

    from tests.fixtures.handlers import WEBHOOK_SECRET

    try:
        Webhook(WEBHOOK_SECRET).verify(body, headers, json_parse=False)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _variant(change: str) -> tuple[dict[str, str], str]:
    """A signed request's headers and body, then one thing about them changed."""
    body = '{"WabaId":"1"}'
    now = datetime.now(timezone.utc).replace(microsecond=0)
    headers = signed_headers(body, msg_id="msg_same", when=now)
    stamp, good = headers["webhook-timestamp"], headers["webhook-signature"]
    changes = {
        "as signed": {},
        "leading zeros": {"webhook-timestamp": "000" + stamp},
        "a fraction": {"webhook-timestamp": stamp + ".4"},
        "a plus sign": {"webhook-timestamp": "+" + stamp},
        "spaces": {"webhook-timestamp": f" {stamp} "},
        "not a number": {"webhook-timestamp": "soon"},
        "too large": {"webhook-timestamp": "9" * 30},
        "6 min old": {"webhook-timestamp": str(int(stamp) - 360)},
        "6 min ahead": {"webhook-timestamp": str(int(stamp) + 360)},
        "v2 before v1": {"webhook-signature": "v2,AAAA " + good},
        "v1 after a bad v1": {"webhook-signature": "v1,AAAA " + good},
        "bad base64 first": {"webhook-signature": "v1,A " + good},
        "only v2": {"webhook-signature": good.replace("v1,", "v2,")},
        "noise in the base64": {"webhook-signature": good[:10] + "!" + good[10:]},
        "not ASCII": {"webhook-signature": "v1,\u00e9 " + good},
        "a lone surrogate": {"webhook-signature": "v1,\ud800 " + good},
        "other id": {"webhook-id": "msg_other"},
    }
    return {**headers, **changes[change]}, body


VERIFY_CASES = [
    "as signed",
    "leading zeros",
    "a fraction",
    "a plus sign",
    "spaces",
    "not a number",
    "too large",
    "6 min old",
    "6 min ahead",
    "v2 before v1",
    "v1 after a bad v1",
    "bad base64 first",
    "only v2",
    "noise in the base64",
    "not ASCII",
    "a lone surrogate",
    "other id",
]


@pytest.mark.parametrize("change", VERIFY_CASES)
def test_the_webhook_accepts_what_the_standard_webhooks_library_accepts(
    change, wababind_env, context
):
    """Our header handling before `Webhook.verify` (case, entry filtering) changes no answer:
    every variant the library accepts binds, every other one is refused."""
    headers, body = _variant(change)
    status = call(http_event(body, headers), context)[0]
    accepted = _library_answer(headers, body) == "ok"
    assert (status == 200) == accepted and status in (200, 400, 401)  # 400: not decodable
    if change == "as signed":
        assert accepted
