"""The bad-input corpus: every malformed request gets its documented answer, table-driven.

HTTP rows: the status SPEC.md documents, a JSON error body whose `Errors` name the field and the
rule, no stack trace anywhere, no CAMS call and no outcome line. A few rows are the accepted
neighbour of a refused one (the boundary), and answer 200 with the outcome. Queue rows: exactly
one outcome per message, invalid messages `failed`/`InvalidMessage`/not retried with a message
that names the field and the rule, valid neighbours bound; an event of no known shape is
refused with EventFormatError and no outcome at all.

Cases already in test_webhook.py, test_mq.py and test_ssrf.py are not repeated here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from index import http_handler, mq_handler
from tests.fixtures.handlers import (
    WEBHOOK_SECRET,
    http_event,
    outcome_lines,
    signed_event,
    signed_headers,
)
from wababind.errors import EventFormatError

ALLOWED_HOSTS = "hooks.example.com,xn--bcher-kva.example"
MAX_BODY = 64 * 1024
TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
_ids = itertools.count(1)


def new_waba_id() -> str:
    """A WabaId no other row uses, so that every accepted row makes its own first bind."""
    return f"55{next(_ids):014d}"


def now() -> datetime:
    return datetime.now(timezone.utc)


def sign_raw(
    raw: bytes, *, msg_id: str | None = None, when: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers over the raw bytes (the body need not be UTF-8)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = str(int((when or now()).timestamp()))
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def signed(text: str, header: str, value: str | None) -> bytes:
    """A signed event for `text` with one webhook header set to `value` (None: left out)."""
    headers = signed_headers(text)
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    return http_event(text, headers)


def with_signature(text: str, make: Callable[[str], str]) -> bytes:
    """A signed event whose webhook-signature is rewritten from the valid one."""
    headers = signed_headers(text)
    headers["webhook-signature"] = make(headers["webhook-signature"])
    return http_event(text, headers)


def fc_event(**changes: Any) -> bytes:
    """A valid signed FC HTTP trigger event with top-level or requestContext fields changed."""
    event = json.loads(signed_event({"WabaId": new_waba_id()}))
    for key, value in changes.items():
        if key == "http":
            event["requestContext"]["http"] = value
        elif value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return json.dumps(event).encode()


def bind(value: Any = None, **fields: Any) -> str:
    """A bind request's JSON text; `value` is the WabaId (a fresh one when None)."""
    return json.dumps({"WabaId": new_waba_id() if value is None else value, **fields})


def padded(size: int) -> str:
    """A valid bind request of exactly `size` bytes (an ignored field pads it)."""
    head = bind(Pad="")
    text = head[:-2] + "x" * (size - len(head)) + '"}'
    assert len(text.encode()) == size
    return text


# ---- HTTP rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Http:
    """One request and its documented answer: status, and the field and rule it names."""

    name: str
    build: Callable[[], bytes]
    status: int
    field: str | None = None  # None for an accepted row (200)
    rule: str | None = None
    prime: Callable[[], bytes] | None = None  # a request sent first (must answer 200)


def bad_body(name: str, text: str, rule: str) -> Http:
    return Http(name, lambda: signed_event(text), 400, "body", rule)


def bad_field(name: str, text: str, fld: str, rule: str) -> Http:
    return Http(name, lambda: signed_event(text), 422, fld, rule)


def bad_waba_id(name: str, literal: str, rule: str) -> Http:
    return bad_field(f"WabaId {name}", '{"WabaId": ' + literal + "}", "WabaId", rule)


def bad_callback(name: str, url: str, rule: str) -> Http:
    return bad_field(f"CallbackUrl {name}", bind(CallbackUrl=url), "CallbackUrl", rule)


def accepted(name: str, build: Callable[[], bytes]) -> Http:
    return Http(name, build, 200)


def unauthorized(name: str, build: Callable[[], bytes], header: str, rule: str) -> Http:
    return Http(name, build, 401, header, rule)


def replay_pair(
    change: Callable[[str, str], bytes],
) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    """(first request, replay): the replay reuses the first webhook-id, built by `change`."""
    msg_id = f"msg_{uuid.uuid4().hex}"

    def first() -> bytes:
        text = bind()
        return http_event(text, signed_headers(text, msg_id=msg_id))

    return first, lambda: change(msg_id, bind())


NOT_UTF8 = b'{"WabaId": "\xff\xfe"}'
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-another-secret-32").decode()
_replay_body = replay_pair(lambda m, t: http_event(t, signed_headers(t, msg_id=m)))
_replay_time = replay_pair(
    lambda m, t: http_event(t, signed_headers(t, msg_id=m, when=now() - timedelta(seconds=30)))
)
_tampered = bind()

HTTP_CASES: list[Http] = [
    # -- malformed and truncated JSON
    bad_body("truncated object", '{"WabaId": "123', "json"),
    bad_body("truncated after a key", '{"WabaId"', "json"),
    bad_body("trailing comma", '{"WabaId": "1",}', "json"),
    bad_body("single quotes", "{'WabaId': '1'}", "json"),
    bad_body("bare word", "WabaId=1", "json"),
    bad_body("empty body", "", "json"),
    bad_body("whitespace only", " \n\t ", "json"),
    bad_body("two objects", '{"WabaId": "1"}{"WabaId": "2"}', "json"),
    bad_body("NaN is not JSON", '{"WabaId": "1000000000000999", "Extra": NaN}', "json"),
    bad_body("Infinity is not JSON", '{"WabaId": "1000000000000998", "Extra": -Infinity}', "json"),
    bad_body("nested past the parser's depth", "[" * 30_000 + "]" * 30_000, "json"),
    # -- JSON that is not an object
    bad_body("a string", '"{\\"WabaId\\": \\"1\\"}"', "object"),
    bad_body("a number", "1234567890", "object"),
    bad_body("null", "null", "object"),
    bad_body("true", "true", "object"),
    bad_body("an empty array", "[]", "object"),
    bad_body("an array of requests", '[{"WabaId": "1"}]', "object"),
    # -- not decodable
    Http(
        "body not UTF-8 (signed over its bytes)",
        lambda: http_event(NOT_UTF8, sign_raw(NOT_UTF8), base64_body=True),
        400,
        "body",
        "utf-8",
    ),
    Http("base64 flag with a plain JSON body", lambda: _b64_event(bind()), 400, "body", "base64"),
    Http(
        "base64 with a bad character",
        lambda: _b64_event("eyJXYWJhSWQiOiAiMSJ9!"),
        400,
        "body",
        "base64",
    ),
    Http(
        "base64 cut short",
        lambda: _b64_event("eyJXYWJhSWQiOiAiMSJ"),
        400,
        "body",
        "base64",
    ),
    Http("base64 url-safe alphabet", lambda: _b64_event("-_-_"), 400, "body", "base64"),
    # -- wrong types
    bad_field("WabaId an object", '{"WabaId": {"id": "1"}}', "WabaId", "type"),
    bad_field("WabaId an array", '{"WabaId": ["1"]}', "WabaId", "type"),
    bad_field("Reference a number", bind(Reference=7), "Reference", "type"),
    bad_field("Reference an object", bind(Reference={"a": 1}), "Reference", "type"),
    bad_field("CallbackUrl a number", bind(CallbackUrl=443), "CallbackUrl", "type"),
    bad_field(
        "CallbackUrl an array",
        bind(CallbackUrl=["https://hooks.example.com/"]),
        "CallbackUrl",
        "type",
    ),
    bad_field("Reference too long", bind(Reference="r" * 129), "Reference", "length"),
    bad_field("Reference with a newline", bind(Reference="a\nb"), "Reference", "printable"),
    bad_field("Reference with NUL", bind(Reference="a\u0000b"), "Reference", "printable"),
    bad_field(
        "Reference with a lone surrogate",
        '{"WabaId": "1", "Reference": "\\ud800"}',
        "Reference",
        "printable",
    ),
    # -- WabaId
    bad_waba_id("empty", '""', "length"),
    bad_waba_id("33 digits", '"' + "1" * 33 + '"', "length"),
    bad_waba_id("letters only", '"abcdef"', "digits"),
    bad_waba_id("exponent", '"1e10"', "digits"),
    bad_waba_id("hex", '"0x1F"', "digits"),
    bad_waba_id("negative sign", '"-123"', "digits"),
    bad_waba_id("leading plus", '"+123"', "digits"),
    bad_waba_id("leading space", '" 123"', "digits"),
    bad_waba_id("trailing newline", '"123\\n"', "digits"),
    bad_waba_id("inner space", '"12 34"', "digits"),
    bad_waba_id("Arabic-Indic digits", '"\\u0661\\u0662\\u0663"', "digits"),
    bad_waba_id("fullwidth digits", '"\\uff11\\uff12\\uff13"', "digits"),
    bad_waba_id("superscript digits", '"\\u00b9\\u00b2\\u00b3"', "digits"),
    bad_waba_id("negative integer", "-5", "digits"),
    bad_waba_id("float", "12.5", "type"),
    bad_waba_id("whole float", "12.0", "type"),
    bad_waba_id("float in exponent form", "1e15", "type"),
    bad_waba_id("integer of 33 digits", "1" * 33, "length"),
    bad_waba_id("huge integer", "9" * 400, "length"),
    bad_waba_id("true", "true", "type"),
    bad_waba_id("false", "false", "type"),
    bad_waba_id("null", "null", "type"),
    Http("WabaId 32 digits", lambda: signed_event(bind("9" * 16 + new_waba_id())), 200),
    Http(
        "WabaId an integer of 32 digits", lambda: signed_event('{"WabaId": ' + "8" * 32 + "}"), 200
    ),
    # -- oversize bodies
    accepted("body of exactly 64 KiB", lambda: signed_event(padded(MAX_BODY))),
    Http(
        "body 1 byte over 64 KiB",
        lambda: signed_event(padded(MAX_BODY + 1)),
        413,
        "body",
        "max-size",
    ),
    accepted(
        "base64 body of exactly 64 KiB",
        lambda: _b64_signed(padded(MAX_BODY)),
    ),
    Http(
        "base64 body 1 byte over",
        lambda: _b64_signed(padded(MAX_BODY + 1)),
        413,
        "body",
        "max-size",
    ),
    Http("unsigned body of 1 MiB", lambda: http_event("x" * 2**20), 413, "body", "max-size"),
    # -- webhook headers
    unauthorized(
        "no webhook-timestamp",
        lambda: signed(bind(), "webhook-timestamp", None),
        "webhook-timestamp",
        "missing",
    ),
    unauthorized(
        "no webhook-signature",
        lambda: signed(bind(), "webhook-signature", None),
        "webhook-signature",
        "missing",
    ),
    unauthorized(
        "empty webhook-id", lambda: signed(bind(), "webhook-id", ""), "webhook-id", "missing"
    ),
    unauthorized(
        "duplicated webhook-id", lambda: _duplicated("webhook-id"), "webhook-signature", "mismatch"
    ),
    unauthorized(
        "duplicated webhook-timestamp",
        lambda: _duplicated("webhook-timestamp"),
        "webhook-timestamp",
        "format",
    ),
    unauthorized(
        "duplicated webhook-signature",
        lambda: _duplicated("webhook-signature"),
        "webhook-signature",
        "format",
    ),
    unauthorized(
        "timestamp not a number",
        lambda: signed(bind(), "webhook-timestamp", "yesterday"),
        "webhook-timestamp",
        "format",
    ),
    unauthorized(
        "timestamp NaN",
        lambda: signed(bind(), "webhook-timestamp", "nan"),
        "webhook-timestamp",
        "format",
    ),
    unauthorized(
        "timestamp in milliseconds", lambda: _at(now(), millis=True), "webhook-timestamp", "format"
    ),
    unauthorized(
        "stale by a day", lambda: _at(now() - timedelta(days=1)), "webhook-timestamp", "stale"
    ),
    unauthorized(
        "dated an hour ahead",
        lambda: _at(now() + timedelta(hours=1)),
        "webhook-timestamp",
        "future",
    ),
    accepted("dated 4 minutes ago", lambda: _at(now() - timedelta(minutes=4))),
    accepted("dated 4 minutes ahead", lambda: _at(now() + timedelta(minutes=4))),
    # a seen webhook-id is a resend, never refused: a body signed anew is bound on its own
    # (its WabaId keys the bind; tests/test_webhook_resend.py has the same body resent)
    Http("seen webhook-id, another body", _replay_body[1], 200, prime=_replay_body[0]),
    Http("seen webhook-id, older timestamp", _replay_time[1], 200, prime=_replay_time[0]),
    unauthorized(
        "body changed after signing",
        lambda: http_event(_tampered + " ", signed_headers(_tampered)),
        "webhook-signature",
        "mismatch",
    ),
    unauthorized(
        "signed for another webhook-id", lambda: _other_id(), "webhook-signature", "mismatch"
    ),
    unauthorized(
        "secret that differs",
        lambda: signed_event(bind(), secret=OTHER_SECRET),
        "webhook-signature",
        "mismatch",
    ),
    unauthorized(
        "v2 prefix",
        lambda: with_signature(bind(), lambda s: "v2" + s[2:]),
        "webhook-signature",
        "mismatch",
    ),
    unauthorized(
        "v1a prefix",
        lambda: with_signature(bind(), lambda s: "v1a" + s[2:]),
        "webhook-signature",
        "mismatch",
    ),
    unauthorized(
        "no version prefix",
        lambda: with_signature(bind(), lambda s: s[3:]),
        "webhook-signature",
        "format",
    ),
    unauthorized(
        "signature not base64",
        lambda: with_signature(bind(), lambda s: "v1,@@@@"),
        "webhook-signature",
        "mismatch",
    ),
    unauthorized(
        "several, none valid", lambda: _several_invalid(), "webhook-signature", "mismatch"
    ),
    accepted(
        "several, the last valid",
        lambda: with_signature(bind(), lambda s: f"v1,AAAA v2,{s[3:]} {s}"),
    ),
    accepted("several, the first valid", lambda: with_signature(bind(), lambda s: f"{s} v1,AAAA")),
    accepted(
        "a malformed entry before a valid one", lambda: with_signature(bind(), lambda s: f"v1 {s}")
    ),
    # -- method and content type
    Http("HEAD", lambda: http_event("", method="HEAD"), 405, "method", "POST"),
    Http("DELETE", lambda: http_event(bind(), method="DELETE"), 405, "method", "POST"),
    Http("PATCH", lambda: http_event(bind(), method="PATCH"), 405, "method", "POST"),
    Http("OPTIONS", lambda: http_event("", method="OPTIONS"), 405, "method", "POST"),
    Http(
        "GET with a signed body",
        lambda: http_event(bind(), signed_headers(bind()), method="GET"),
        405,
        "method",
        "POST",
    ),
    Http(
        "form content type",
        lambda: _typed("application/x-www-form-urlencoded"),
        415,
        "content-type",
        "application/json",
    ),
    Http(
        "multipart content type",
        lambda: _typed("multipart/form-data; boundary=x"),
        415,
        "content-type",
        "application/json",
    ),
    Http(
        "XML content type",
        lambda: _typed("application/xml"),
        415,
        "content-type",
        "application/json",
    ),
    Http(
        "JSON-like content type",
        lambda: _typed("application/json-patch+json"),
        415,
        "content-type",
        "application/json",
    ),
    Http(
        "JSON with latin-1 charset",
        lambda: _typed("application/json; charset=latin-1"),
        415,
        "content-type",
        "application/json",
    ),
    Http("content type missing", lambda: _typed(None), 415, "content-type", "application/json"),
    accepted("JSON with UTF-8 charset", lambda: _typed("application/json; charset=UTF-8")),
    accepted("JSON in capitals", lambda: _typed("Application/JSON")),
    # -- CallbackUrl
    bad_callback("http", "http://hooks.example.com/cb", "scheme"),
    bad_callback("no scheme", "hooks.example.com/cb", "scheme"),
    bad_callback("javascript", "javascript:alert(1)", "scheme"),
    bad_callback("user info", "https://admin:pw@hooks.example.com/cb", "userinfo"),
    bad_callback(
        "user info spoofing the host", "https://hooks.example.com:443@169.254.169.254/", "userinfo"
    ),
    bad_callback("IPv4 literal", "https://203.0.113.10/cb", "ip-literal"),
    bad_callback("private IPv4 literal", "https://10.0.0.1/cb", "ip-literal"),
    bad_callback("IPv6 literal", "https://[2001:db8::1]/cb", "ip-literal"),
    bad_callback("IPv6 metadata literal", "https://[fd00:ec2::254]/cb", "ip-literal"),
    bad_callback("IPv4-mapped IPv6", "https://[::ffff:169.254.169.254]/cb", "ip-literal"),
    bad_callback("decimal IPv4", "https://3232235777/cb", "ip-literal"),
    bad_callback("octal IPv4", "https://0300.0250.0.1/cb", "ip-literal"),
    bad_callback("hex IPv4", "https://0xa9.0xfe.0xa9.0xfe/cb", "ip-literal"),
    bad_callback("short IPv4", "https://10.1/cb", "ip-literal"),
    bad_callback("localhost", "https://localhost:8443/cb", "host"),
    bad_callback("localhost with a dot", "https://localhost./cb", "host"),
    bad_callback(
        "Alibaba metadata host", "https://100.100.100.200/latest/meta-data/", "ip-literal"
    ),
    bad_callback("metadata host name", "https://metadata.google.internal/", "host"),
    bad_callback("host outside the allow list", "https://hooks.example.org/cb", "host"),
    bad_callback("allowed host as a suffix", "https://evilhooks.example.com/cb", "host"),
    bad_callback("allowed host as a prefix", "https://hooks.example.com.attacker.test/cb", "host"),
    bad_callback("IDN outside the allow list", "https://b\u00fccher.example.org/cb", "host"),
    bad_callback("IDN homograph of an allowed host", "https://hooks.ex\u0430mple.com/cb", "host"),
    accepted(
        "IDN in the allow list",
        lambda: signed_event(bind(CallbackUrl="https://b\u00fccher.example/cb")),
    ),
    accepted(
        "allowed host", lambda: signed_event(bind(CallbackUrl="https://hooks.example.com/cb?t=1"))
    ),
    # -- not an FC HTTP trigger event at all
    Http("event not JSON", lambda: b"POST / HTTP/1.1", 400, "event", "fc-http-trigger"),
    Http("event empty", lambda: b"", 400, "event", "fc-http-trigger"),
    Http(
        "event without requestContext",
        lambda: fc_event(requestContext=...),
        400,
        "event",
        "fc-http-trigger",
    ),
    Http(
        "event without a method",
        lambda: fc_event(http={"path": "/"}),
        400,
        "event",
        "fc-http-trigger",
    ),
    Http(
        "event headers a list",
        lambda: fc_event(headers=[["content-type", "application/json"]]),
        400,
        "event",
        "fc-http-trigger",
    ),
    Http("event body a number", lambda: fc_event(body=5), 400, "event", "fc-http-trigger"),
]


def _b64_event(body: str) -> bytes:
    event = json.loads(http_event(bind()))
    event.update(body=body, isBase64Encoded=True)
    event["headers"].update(sign_raw(body.encode()))
    return json.dumps(event).encode()


def _b64_signed(text: str) -> bytes:
    return http_event(text, signed_headers(text), base64_body=True)


def _several_invalid() -> bytes:
    """A valid signature under a v2 prefix, one by another secret, one of random bytes."""
    text = bind()
    headers = signed_headers(text)
    valid = headers["webhook-signature"]
    other = signed_headers(text, secret=OTHER_SECRET, msg_id=headers["webhook-id"])
    headers["webhook-signature"] = f"v1,AAAA v2,{valid[3:]} {other['webhook-signature']}"
    return http_event(text, headers)


def _duplicated(name: str) -> bytes:
    """FC joins a repeated header's values with commas."""
    text = bind()
    first, second = signed_headers(text), signed_headers(text)
    return http_event(text, {**first, name: f"{first[name]},{second[name]}"})


def _at(when: datetime, *, millis: bool = False) -> bytes:
    text = bind()
    headers = signed_headers(text, when=when)
    if millis:
        headers["webhook-timestamp"] += "000"
    return http_event(text, headers)


def _other_id() -> bytes:
    text = bind()
    headers = signed_headers(text)
    headers["webhook-id"] = "msg_someone_else"
    return http_event(text, headers)


def _typed(content_type: str | None) -> bytes:
    text = bind()
    headers = signed_headers(text)
    event = json.loads(http_event(text, headers))
    if content_type is None:
        del event["headers"]["Content-Type"]
    else:
        event["headers"]["Content-Type"] = content_type
    return json.dumps(event).encode()


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert not TRACE.search(text), text[:2000]


def call(event: bytes, context: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = http_handler(event, context())
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["isBase64Encoded"] is False
    body = json.loads(response["body"])
    assert isinstance(body, dict)
    assert_clean(response["body"])
    return response["statusCode"], response["headers"], body


def test_the_corpus_is_big_enough() -> None:
    assert len(HTTP_CASES) + len(MQ_CASES) + len(MQ_REJECTED) >= 60
    names = [c.name for c in HTTP_CASES] + [c.name for c in MQ_CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_http_bad_input(
    case: Http, wababind_env: Any, context: Any, capsys: Any, caplog: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("CALLBACK_ALLOWED_HOSTS", ALLOWED_HOSTS)
    if case.prime is not None:
        assert call(case.prime(), context)[0] == 200
    calls_before = wababind_env.count()
    capsys.readouterr()

    status, headers, body = call(case.build(), context)
    out = capsys.readouterr()
    assert_clean(out.out, out.err, caplog.text)
    assert status == case.status, body
    records = outcome_lines(out.out)
    if status == 200:
        assert body["Kind"] == "WabaBindOutcome" and body["Status"] == "bound", body
        assert records == [body]
        return
    assert set(body) == {"Code", "Message", "Errors"}
    assert body["Code"] and body["Message"]
    problems = [(e["Field"], e["Rule"]) for e in body["Errors"]]
    assert (case.field, case.rule) in problems, body
    assert all(e["Message"] for e in body["Errors"])
    if status == 405:
        assert headers["Allow"] == "POST"
    assert records == []
    assert wababind_env.count() == calls_before


# ---- queue rows ------------------------------------------------------------------------------

OK = ("bound", None, None)


def invalid(fld: str, rule: str) -> tuple[str, str, str]:
    return ("InvalidMessage", fld, rule)


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def req(value: Any = None, **fields: Any) -> dict[str, Any]:
    return {"WabaId": new_waba_id() if value is None else value, **fields}


def rocketmq(body: Any, key: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ce-{key}",
        "source": "acs:mq",
        "type": "mq:Topic:SendMessage",
        "data": {"topic": "waba-bind", "systemProperties": {"UNIQ_KEY": key}, "body": body},
    }


def mns(body: Any, key: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ce-{key}",
        "source": "acs:mns",
        "type": "mns:Queue:SendMessage",
        "data": {"requestId": "r", "messageId": key, "messageBody": body},
    }


def kafka(value: Any, key: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": key,
        "source": "acs:alikafka",
        "type": "alikafka:Topic:Message",
        "data": {"topic": "waba-bind", "partition": 0, "offset": 1, "key": None, "value": value},
    }


@dataclass(frozen=True)
class Mq:
    """One MQ event; per message, `bound` or (InvalidMessage, field, rule) in its Message."""

    name: str
    event: Callable[[], Any]
    expected: list[tuple[str, str | None, str | None]] = field(default_factory=list)


MQ_CASES: list[Mq] = [
    Mq(
        "direct: WabaId with a sign, a float, a boolean",
        lambda: [req(), req("-12"), req(1.5), req(True), req()],
        [OK, invalid("WabaId", "digits"), invalid("WabaId", "type"), invalid("WabaId", "type"), OK],
    ),
    Mq(
        "direct: Reference and CallbackUrl rules",
        lambda: [
            req(Reference="tab\there"),
            req(CallbackUrl="https://u@hooks.example.com/"),
            req(CallbackUrl="https://0x7f.0.0.1/"),
            req(),
        ],
        [
            invalid("Reference", "printable"),
            invalid("CallbackUrl", "userinfo"),
            invalid("CallbackUrl", "ip-literal"),
            OK,
        ],
    ),
    Mq(
        "direct: an empty object and a bare string",
        lambda: [req(), {}, "not json", req("\uff11\uff12\uff13")],
        [
            OK,
            invalid("WabaId", "required"),
            invalid("element 2", "a string"),
            invalid("WabaId", "digits"),
        ],
    ),
    Mq(
        "direct: every message invalid",
        lambda: [req(""), req("x" * 40), {"WabaId": None}],
        [invalid("WabaId", "length"), invalid("WabaId", "length"), invalid("WabaId", "type")],
    ),
    Mq(
        "rocketmq: bad base64, bad digits, a good one",
        lambda: [
            rocketmq("eyJXYWJhSWQiOi@@", "K1"),
            rocketmq(json.dumps(req(" 12")), "K2"),
            rocketmq(b64(req()), "K3"),
        ],
        [invalid("data.body", "neither JSON"), invalid("WabaId", "digits"), OK],
    ),
    Mq(
        "rocketmq: data not an object",
        lambda: [rocketmq(json.dumps(req()), "K4"), {**rocketmq("", "K5"), "data": "oops"}],
        [OK, invalid("data", "valid dictionary")],
    ),
    Mq(
        "mns: array body, null body, good body",
        lambda: [mns(b64([req()]), "M1"), mns(None, "M2"), mns(b64(req()), "M3")],
        [invalid("$", "object"), invalid("data.messageBody", "missing or null"), OK],
    ),
    Mq(
        "mns: base64 of non-UTF-8 bytes",
        lambda: [
            mns(base64.b64encode(b"\xff\xfe\x00").decode(), "M4"),
            mns(json.dumps(req()), "M5"),
        ],
        [invalid("data.messageBody", "base64"), OK],
    ),
    Mq(
        "kafka strings: truncated JSON element",
        lambda: [
            json.dumps(kafka(req(), "k-1")),
            '{"specversion": "1.0", "type": "alik',
            json.dumps(kafka(req(10**40), "k-3")),
        ],
        [OK, invalid("element 1", "holds no JSON"), invalid("WabaId", "length")],
    ),
    Mq(
        "kafka raw data: missing value",
        lambda: [
            {"topic": "t", "partition": 0, "offset": 7, "value": req()},
            {"topic": "t", "partition": 0, "offset": 8},
        ],
        [OK, invalid("value", "Field required")],
    ),
    Mq(
        "cloud events with a bind request mixed in",
        lambda: [mns(b64(req()), "M6"), req()],
        [OK, invalid("element 1", "not a CloudEvent")],
    ),
    Mq(
        "mns topic: WabaId in fullwidth digits",
        lambda: {
            "TopicOwner": "1",
            "TopicName": "t",
            "MessageId": "T1",
            "Message": b64(req("\uff11\uff12\uff13")),
        },
        [invalid("WabaId", "digits")],
    ),
    Mq("empty batch with whitespace", lambda: " [ ] ", []),
]

MQ_REJECTED = [
    (
        "single CloudEvent of another type",
        {"specversion": "1.0", "type": "oss:ObjectCreated:PutObject", "data": {}},
    ),
    ("CloudEvent without a type", {"specversion": "1.0", "id": "x", "data": {"body": "{}"}}),
    ("array of arrays", [[{"WabaId": "1"}]]),
    ("array of unknown objects", [{"wabaId": "1"}, {"waba_id": "2"}]),
    ("JSON number", 1234567890123456),
    ("bytes that are not UTF-8", b"\xff[]"),
]


@pytest.mark.parametrize("case", MQ_CASES, ids=[c.name for c in MQ_CASES])
def test_queue_bad_input(
    case: Mq, wababind_env: Any, context: Any, capsys: Any, caplog: Any
) -> None:
    event = case.event()
    raw = event.encode() if isinstance(event, str) else json.dumps(event).encode()
    summary = json.loads(mq_handler(raw, context()))
    out = capsys.readouterr()
    assert_clean(out.out, out.err, caplog.text, json.dumps(summary))

    outcomes = summary["Outcomes"]
    assert summary["Total"] == len(outcomes) == len(case.expected)
    by_id = sorted(outcome_lines(out.out), key=lambda o: str(o["EventId"]))
    assert by_id == sorted(outcomes, key=lambda o: str(o["EventId"]))
    assert len({o["EventId"] for o in outcomes}) == len(outcomes)
    bad = [e for e in case.expected if e[0] != "bound"]
    assert (summary["Bound"], summary["Failed"], summary["Retryable"]) == (
        len(case.expected) - len(bad),
        len(bad),
        0,
    )
    for outcome, (code, fld, rule) in zip(outcomes, case.expected, strict=True):
        if code == "bound":
            assert outcome["Status"] == "bound", outcome
            continue
        assert (outcome["Status"], outcome["Code"], outcome["Retryable"]) == ("failed", code, False)
        assert outcome["Attempts"] == 0
        assert fld in outcome["Message"] and rule in outcome["Message"], outcome["Message"]
    assert wababind_env.count() == summary["Bound"]


@pytest.mark.parametrize(("name", "event"), MQ_REJECTED, ids=[n for n, _ in MQ_REJECTED])
def test_queue_event_of_no_known_shape(
    name: str, event: Any, wababind_env: Any, context: Any, capsys: Any
) -> None:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    with pytest.raises(EventFormatError) as info:
        mq_handler(raw, context())
    out = capsys.readouterr()
    assert str(info.value) and not TRACE.search(str(info.value))
    assert outcome_lines(out.out) == []
    assert wababind_env.count() == 0
