"""No secret leaks: every path runs with known credentials and secrets, and none of them (nor any
signature made with them) shows up in a response, an outcome, an exception or a log line.

Known values: the simulator's AccessKey secrets and STS token, a wrong AccessKey secret, the
webhook and callback secrets (with their base64 keys), an SLS AccessKey secret, a Redis password.
Signatures are collected as they are made: every `webhook-signature` sent to the function, every
CAMS `Signature` the simulator receives, every callback signature the receiver gets, every SLS
`Authorization` signature. Each is also looked for percent-encoded and JSON-escaped (CAMS echoes
its string-to-sign percent-encoded, twice).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest

from index import http_handler, mq_handler
from tests.fixtures.handlers import (
    WEBHOOK_SECRET,
    FakeCredentials,
    http_event,
    signed_headers,
)
from tests.test_sink_callback import Receiver
from wababind.errors import EventFormatError, RetryableBatchError
from wababind.runtime import reset_runtime
from wababind_local.cams_simulator import DEFAULT_KEY, DEFAULT_STS_KEY, Fault
from wababind_local.sls_server import SlsServer

CALLBACK_SECRET = "whsec_" + base64.b64encode(b"known-callback-secret-for-tests!").decode()
WRONG_AK_SECRET = "KnownWrongAccessKeySecret0042"
BAD_WEBHOOK_SECRET = "whsec_KnownButMalformed!!Secret"
REDIS_PASSWORD = "KnownRedisPassw0rdForTests"
STS = FakeCredentials(
    DEFAULT_STS_KEY.access_key_id,
    DEFAULT_STS_KEY.access_key_secret,
    DEFAULT_STS_KEY.security_token or "",
)
WRONG_STS = FakeCredentials(STS.access_key_id, WRONG_AK_SECRET, STS.security_token)


def whsec_parts(secret: str) -> list[str]:
    """The secret, its base64 key, and the key bytes when they are text."""
    key = secret.removeprefix("whsec_")
    parts = [secret, key]
    raw = base64.b64decode(key + "==")
    if raw.isascii():
        parts.append(raw.decode())
    return parts


KNOWN_SECRETS = [
    DEFAULT_KEY.access_key_secret,
    STS.access_key_secret,
    STS.security_token,
    WRONG_AK_SECRET,
    BAD_WEBHOOK_SECRET,
    REDIS_PASSWORD,
    *whsec_parts(WEBHOOK_SECRET),
    *whsec_parts(CALLBACK_SECRET),
]


def variants(secret: str) -> set[str]:
    """The forms a value takes on its way into a message: raw, percent-encoded, JSON-escaped."""
    once = quote(secret, safe="")
    return {secret, once, quote(secret, safe="~"), quote(once, safe=""), json.dumps(secret)[1:-1]}


MIN_SIGNATURE = 16  # shorter "signatures" are test noise (v1,AAAA), not secrets


@dataclass
class Watch:
    """Collects what a caller or an operator sees, and the signatures made along the way."""

    capsys: Any
    caplog: Any
    sim: Any = None
    seen: list[str] = field(default_factory=list)
    signatures: set[str] = field(default_factory=set)

    def add_signature(self, value: str) -> None:
        if len(value) >= MIN_SIGNATURE:
            self.signatures.add(value)

    def add_signature_header(self, value: str) -> None:
        for entry in value.split():
            self.add_signature(entry.partition(",")[2] or entry)

    def http(self, event: bytes, context: Any) -> dict[str, Any]:
        try:
            headers = json.loads(event).get("headers") or {}
        except ValueError:
            headers = {}
        for name, value in headers.items():
            if name.lower() == "webhook-signature":
                self.add_signature_header(value)
        response = http_handler(event, context)
        self.seen.append(json.dumps(response))
        return response

    def mq(self, payload: Any, context: Any) -> dict[str, Any] | None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            summary = mq_handler(raw, context)
        except (EventFormatError, RetryableBatchError) as exc:
            self.seen += [str(exc), repr(exc)]
            return None
        self.seen.append(summary)
        return dict(json.loads(summary))

    def assert_nothing_leaked(self) -> None:
        captured = self.capsys.readouterr()
        text = "\n".join([*self.seen, captured.out, captured.err, self.caplog.text])
        assert "Traceback (most recent call last)" not in text
        secrets = [s for s in KNOWN_SECRETS if s] + sorted(self.signatures)
        for secret in secrets:
            for form in variants(secret):
                assert form not in text, f"a known secret or signature leaked: {secret[:6]}..."


@pytest.fixture
def watch(
    wababind_env: Any, capsys: Any, caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Watch]:
    """Every log level captured, and the CAMS simulator reporting each Signature it receives."""
    caplog.set_level(logging.DEBUG)
    w = Watch(capsys, caplog, wababind_env)
    original = wababind_env._authenticate

    def record(method: str, path: str, params: dict[str, str]) -> Any:
        w.add_signature(params.get("Signature", ""))
        return original(method, path, params)

    monkeypatch.setattr(wababind_env, "_authenticate", record)
    yield w
    w.assert_nothing_leaked()


def signed(body: dict[str, Any] | str, **kw: Any) -> bytes:
    text = body if isinstance(body, str) else json.dumps(body)
    return http_event(text, signed_headers(text, **kw))


# ---- HTTP paths ------------------------------------------------------------------------------


def test_http_bound_and_duplicate_with_sts_credentials(watch: Watch, context: Any) -> None:
    event = signed({"WabaId": "7100000000000001", "Reference": "r"})
    assert watch.http(event, context(credentials=STS))["statusCode"] == 200
    again = signed({"WabaId": "7100000000000001"})
    assert watch.http(again, context(credentials=STS))["statusCode"] == 200
    assert len(watch.signatures) >= 3


def test_http_bound_with_environment_credentials(watch: Watch, context: Any) -> None:
    assert watch.http(signed({"WabaId": "7100000000000002"}), context())["statusCode"] == 200


def test_http_rejections(watch: Watch, context: Any) -> None:
    text = json.dumps({"WabaId": "7100000000000003"})
    good = signed_headers(text)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    stale = datetime.now(timezone.utc) - timedelta(hours=1)
    cases = [
        (http_event(text, good), 200),
        (http_event(text, good), 200),  # the same message again: the first bind's answer
        (signed(text, secret=other), 401),
        (signed(text, when=stale), 401),
        # a header that also lists the valid v1 signature verifies (any listed one may match)
        (http_event(text, {**good, "webhook-signature": f"v2,x {good['webhook-signature']}"}), 200),
        (
            http_event(text, {**good, "webhook-signature": "v2," + good["webhook-signature"][3:]}),
            401,
        ),
        (signed("{not json"), 400),
        (signed("[]"), 400),
        (
            signed({"WabaId": "12ab", "CallbackUrl": "https://u:" + WRONG_AK_SECRET + "@h.test/"}),
            422,
        ),
        (signed({"WabaId": "1", "Pad": "x" * 70_000}), 413),
        (http_event(text, {**signed_headers(text), "Content-Type": "text/plain"}), 415),
        (http_event(text, signed_headers(text), method="GET"), 405),
        (b'{"headers": {"webhook-signature": "v1,QUJD"}}', 400),
    ]
    for n, (event, status) in enumerate(cases):
        assert (n, watch.http(event, context(credentials=STS))["statusCode"]) == (n, status)


def test_http_cams_refuses_the_signature(watch: Watch, context: Any) -> None:
    """CAMS's SignatureDoesNotMatch message carries its string-to-sign, STS token included."""
    response = watch.http(signed({"WabaId": "7100000000000004"}), context(credentials=WRONG_STS))
    body = json.loads(response["body"])
    assert (response["statusCode"], body["Code"]) == (502, "SignatureDoesNotMatch")


@pytest.mark.parametrize(
    "fault",
    [
        Fault.error("Ram.PermissionDeny", 400, "You are not authorized to perform the operation."),
        Fault.error("InternalError", 500, "internal"),
        Fault.http_status(503),
        Fault.garbage(),
        Fault.drop(),
    ],
    ids=lambda f: f.kind + (f.code and f"-{f.code}"),
)
def test_http_cams_failures(watch: Watch, context: Any, fault: Fault) -> None:
    watch.sim.set_fault("7100000000000005", fault)
    response = watch.http(
        signed({"WabaId": "7100000000000005"}), context(timeout=3, credentials=STS)
    )
    assert response["statusCode"] in (502, 503)


def test_http_without_credentials(watch: Watch, context: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID")
    response = watch.http(signed({"WabaId": "7100000000000006"}), context())
    assert response["statusCode"] == 502


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_SECRET", BAD_WEBHOOK_SECRET),
        ("CALLBACK_SECRET", BAD_WEBHOOK_SECRET),
        ("REDIS_URL", f"http://:{REDIS_PASSWORD}@127.0.0.1:1/0"),
        ("CALLBACK_URL", f"https://user:{REDIS_PASSWORD}@hooks.example.com/"),
    ],
)
def test_bad_settings_are_reported_without_their_value(
    watch: Watch, context: Any, monkeypatch: Any, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    reset_runtime()
    for _ in range(2):  # the first invocation reports it, the next ones answer the same
        response = watch.http(signed({"WabaId": "7100000000000007"}), context())
        assert response["statusCode"] == 500
        assert name in json.loads(response["body"])["Message"]


def test_redis_password_stays_out_of_logs(
    watch: Watch, context: Any, monkeypatch: Any, redis_url: str
) -> None:
    """A Redis that refuses the password: nothing binds without it (ON_REDIS_OUTAGE=wait), the
    webhook answers 503, the batch is redelivered, and the logs say so without the password."""
    monkeypatch.setenv("REDIS_URL", redis_url.replace("redis://", f"redis://:{REDIS_PASSWORD}@"))
    reset_runtime()
    response = watch.http(signed({"WabaId": "7100000000000008"}), context(timeout=2))
    assert response["statusCode"] == 503 and "Retry-After" in response["headers"]
    assert watch.mq([{"WabaId": "7100000000000009"}], context()) is None  # raised: redelivered
    assert watch.sim.count() == 0


# ---- MQ paths --------------------------------------------------------------------------------


def test_mq_batch_of_every_outcome(watch: Watch, context: Any) -> None:
    batch = [
        {"WabaId": "7200000000000001"},
        {"WabaId": "7200000000000001"},
        {"WabaId": "bad", "Reference": STS.security_token},
        {"WabaId": "7200000000000002", "CallbackUrl": f"https://{WRONG_AK_SECRET}@x.test/"},
    ]
    summary = watch.mq(batch, context(credentials=STS))
    assert summary is not None and summary["Total"] == 4
    watch.sim.set_fault("7200000000000003", Fault.error("Ram.PermissionDeny", 400, "denied"))
    assert watch.mq([{"WabaId": "7200000000000003"}], context(credentials=WRONG_STS)) is not None


def test_mq_retryable_and_rejected_events(watch: Watch, context: Any) -> None:
    watch.sim.set_fault("7200000000000004", Fault.http_status(503))
    assert watch.mq([{"WabaId": "7200000000000004"}], context(timeout=3, credentials=STS)) is None
    assert watch.mq({"AccessKeySecret": STS.access_key_secret}, context()) is None
    assert watch.mq(b"\xff" + STS.security_token.encode(), context()) is None


# ---- sinks -----------------------------------------------------------------------------------


def callback_env(monkeypatch: Any, receiver: Receiver) -> None:
    monkeypatch.setenv("OUTCOME_SINKS", "log,callback")
    monkeypatch.setenv("CALLBACK_URL", receiver.url)
    monkeypatch.setenv("CALLBACK_SECRET", CALLBACK_SECRET)
    monkeypatch.setenv("WABABIND_UNSAFE_TEST_CALLBACKS", "allow-http-and-loopback")
    reset_runtime()


@pytest.mark.parametrize("answer", [200, 401, 500])
def test_callback_sink(watch: Watch, context: Any, monkeypatch: Any, answer: int) -> None:
    receiver = Receiver(secret=CALLBACK_SECRET, script=[(answer, {}, 0.0)] * 6).start()
    try:
        callback_env(monkeypatch, receiver)
        assert (
            watch.http(signed({"WabaId": "7300000000000001"}), context(credentials=STS))[
                "statusCode"
            ]
            == 200
        )
        assert watch.mq([{"WabaId": "7300000000000002"}], context(credentials=STS)) is not None
    finally:
        receiver.stop()
    assert receiver.received and all(r.verified for r in receiver.received)
    for got in receiver.received:
        watch.add_signature_header(got.headers["webhook-signature"])
        assert CALLBACK_SECRET not in got.body.decode()
        watch.seen.append(got.body.decode())  # the outcome the receiver got is checked too
    out = watch.capsys.readouterr()
    watch.seen += [out.out, out.err]
    if answer != 200:
        assert "WabaBindOutcomeUndelivered" in out.out


@pytest.mark.parametrize("accepts", [True, False], ids=["accepted", "refused"])
def test_sls_sink(watch: Watch, context: Any, monkeypatch: Any, accepts: bool) -> None:
    secret = DEFAULT_KEY.access_key_secret if accepts else "another-sls-secret-000"
    server = SlsServer(DEFAULT_KEY.access_key_id, secret).start()
    original = server.check

    def record(method: str, path: str, query: str, headers: Any, body: bytes) -> None:
        watch.add_signature(headers.get("Authorization", "").rpartition(":")[2])
        original(method, path, query, headers, body)

    monkeypatch.setattr(server, "check", record)
    try:
        monkeypatch.setenv("OUTCOME_SINKS", "log,sls")
        monkeypatch.setenv("SLS_ENDPOINT", server.endpoint)
        monkeypatch.setenv("SLS_PROJECT", "wababind-logs")
        monkeypatch.setenv("SLS_LOGSTORE", "wababind-outcomes")
        reset_runtime()
        assert watch.http(signed({"WabaId": "7400000000000001"}), context())["statusCode"] == 200
        assert watch.mq([{"WabaId": "7400000000000002"}], context()) is not None
    finally:
        server.stop()
    records = server.records()
    assert len(records) == (2 if accepts else 0)
    watch.seen += [json.dumps(r) for r in records]


def test_the_watch_sees_a_leak(capsys: Any, caplog: Any) -> None:
    """The checker itself: a secret in a log line, percent-encoded, is found."""
    w = Watch(capsys, caplog)
    w.add_signature("c2lnbmF0dXJlLWZvci10ZXN0cw==")
    token = quote(quote(STS.security_token, safe=""), safe="")
    print(f"string to sign is: POST&%2F&SecurityToken%3D{token}")
    with pytest.raises(AssertionError, match="leaked"):
        w.assert_nothing_leaked()
    w.seen.append("sig c2lnbmF0dXJlLWZvci10ZXN0cw== here")
    with pytest.raises(AssertionError, match="leaked"):
        w.assert_nothing_leaked()
