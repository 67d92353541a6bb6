"""Contract: the webhook served over real HTTP matches openapi.yaml, checked by schemathesis.

The HTTP function runs behind the local FC emulator (an FC 3.0 HTTP trigger on loopback) with
the CAMS simulator behind it. Schemathesis generates requests from openapi.yaml (positive and
negative data, every operation); this test signs most POSTs with valid Standard Webhooks
headers so that the 200 and 422 paths are reached, sends some stale or with the generated
(invalid) headers (401), and checks every answer against the document: a documented status,
the documented content type and headers, a body of the documented schema. An independent
oracle then checks that the status is the one SPEC.md gives for what was sent.
"""

from __future__ import annotations

import json
import re
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_bad_input import sign_raw
from wababind.models import CallbackPolicy, parse_bind_request

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "openapi.yaml"
# The function answers OPTIONS with its JSON 405; TRACE and the like never reach it (the
# emulator's HTTP server, like FC, refuses them itself), and a HEAD answer has no body to check.
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"unexpected-methods": ["options"]}},
        "generation": {"max-examples": 40},
    }
)
SCHEMA = schemathesis.openapi.from_path(SPEC, config=CONFIG)
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
# How a generated POST is authenticated: mostly validly signed, so the body is what decides.
AUTH = ["signed"] * 6 + ["generated headers", "stale", "unsigned"]


def body_bytes(kwargs: dict[str, Any]) -> bytes:
    """The request body exactly as it goes on the wire (schemathesis hands over a JSON value)."""
    if "json" in kwargs:
        return json.dumps(kwargs.pop("json"), allow_nan=False).encode()
    data = kwargs.pop("data", None)
    if data is None:
        return b""
    return data if isinstance(data, bytes) else str(data).encode()


def auth_for(headers: dict[str, str], body: bytes) -> str:
    """A choice from AUTH that depends only on the generated case (so a failure replays)."""
    generated = "|".join(f"{k}={v}" for k, v in sorted(headers.items()) if k.startswith("webhook-"))
    return AUTH[zlib.crc32(generated.encode() + body) % len(AUTH)]


def authenticate(headers: dict[str, str], auth: str, body: bytes) -> None:
    """Put the webhook headers `auth` asks for onto a request (in place)."""
    for name in [h for h in headers if h.lower().startswith("webhook-")]:
        if auth != "generated headers":
            del headers[name]
    if auth == "signed":
        headers.update(sign_raw(body))
    elif auth == "stale":
        headers.update(sign_raw(body, when=datetime.now(timezone.utc) - timedelta(hours=1)))


def expected_status(method: str, headers: dict[str, str], auth: str, body: bytes) -> set[int]:
    """What SPEC.md's status table gives for the request as sent.

    The table does not order 400 and 401: a body that is not UTF-8 may be refused either way
    when it is not validly signed.
    """
    if method != "POST":
        return {405}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media, _, params = content_type.partition(";")
    charset = re.search(r"charset=\"?([^\";]+)", params)
    if media.strip().lower() != "application/json" or (
        charset and charset.group(1).lower() not in ("utf-8", "utf8")
    ):
        return {415}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {400} if auth == "signed" else {400, 401}
    if auth != "signed":
        return {401}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {400}
    if not isinstance(value, dict):
        return {400}
    request, _ = parse_bind_request(value, CallbackPolicy())
    return {200} if request is not None else {422}


def test_the_document_covers_every_documented_status() -> None:
    SCHEMA.validate()
    doc = yaml.safe_load(SPEC.read_text())
    post = doc["paths"]["/"]["post"]
    assert set(post["responses"]) == {
        "200", "400", "401", "413", "415", "422", "500", "502", "503",
    }  # fmt: skip
    assert post["responses"]["503"]["headers"]["Retry-After"]
    headers = {p["$ref"].rsplit("/", 1)[1] for p in post["parameters"]}
    assert headers == {"WebhookId", "WebhookTimestamp", "WebhookSignature"}
    others = set(doc["paths"]["/"]) - {"post"}
    assert others and all(set(doc["paths"]["/"][m]["responses"]) == {"405"} for m in others)


@pytest.fixture
def webhook_url(start_local_fc: Any) -> str:
    """The HTTP function on loopback, behind the FC emulator (s.yaml's environment)."""
    return str(start_local_fc().endpoint)


@SCHEMA.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_webhook_matches_its_contract(case: Any, webhook_url: str) -> None:
    kwargs = case.as_transport_kwargs(base_url=webhook_url)
    body = body_bytes(kwargs)
    headers = {k: str(v) for k, v in kwargs.pop("headers", {}).items()}
    method = kwargs.pop("method")
    auth = auth_for(headers, body)
    if method == "POST":
        authenticate(headers, auth, body)
    response = requests.request(
        method,
        kwargs.pop("url"),
        headers=headers,
        data=body,
        params=kwargs.get("params"),
        timeout=30,
    )
    case.validate_response(response, checks=CHECKS, headers=headers)

    assert not TRACE.search(response.text)
    assert response.headers["Content-Type"].startswith("application/json"), (
        method,
        response.status_code,
        response.text[:300],
        headers,
    )
    assert isinstance(response.json(), dict)
    expected = expected_status(method, headers, auth, body)
    assert response.status_code in expected, (auth, body[:300], response.text[:500])


# The statuses generated requests cannot reach against a healthy CAMS, each made on purpose.
FAILURES = [
    ("502 terminal CAMS code", "7700000000000001", {}, 502),
    ("503 CAMS unavailable to the deadline", "7700000000000002", {}, 503),
    ("413 body over 64 KiB", "7700000000000003", {"Pad": "x" * (64 * 1024)}, 413),
    ("500 bad setting", "7700000000000004", {}, 500),
]


@pytest.mark.parametrize(
    ("name", "waba_id", "extra", "status"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_failure_answers_match_the_contract(
    start_local_fc: Any, name: str, waba_id: str, extra: dict[str, Any], status: int
) -> None:
    from wababind_local.cams_simulator import Fault

    env = {"CAMS_QPS": "fast"} if status == 500 else {}
    fc = start_local_fc(timeout_s=3, env=env)
    fc.cams.set_fault("7700000000000001", Fault.error("Ram.PermissionDeny", 400, "denied"))
    fc.cams.set_fault("7700000000000002", Fault.http_status(503))
    body = {"WabaId": waba_id, "Reference": name, **extra}
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **sign_raw(raw)}
    response = requests.post(fc.endpoint + "/", data=raw, headers=headers, timeout=30)
    assert response.status_code == status, response.text[:500]
    case = SCHEMA["/"]["POST"].Case(body=body, headers=headers, media_type="application/json")
    case.validate_response(response, checks=CHECKS, headers=headers)
    assert not TRACE.search(response.text)
