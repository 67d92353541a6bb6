"""Property tests: every parser, fed generated input, answers or raises only our own error.

- the bind request parser never raises, and lists exactly the (field, rule) pairs an
  independent oracle predicts;
- the HTTP function, fed arbitrary events or generated requests (any method, content type,
  signature state and body), always returns its documented response and never raises;
- the MQ function, fed each trigger format with generated bodies, gives one outcome per message
  (bound exactly when the oracle says the body is valid), and raises only EventFormatError;
- round trips: BindRequest and HttpTriggerEvent through their dumps, FieldProblem and the
  outcome record through JSON, and a valid request through each entry point to its outcome.

The CAMS simulator stays healthy here, so no bind fails and nothing is retryable.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st
from pydantic import ValidationError

from index import http_handler, mq_handler
from tests.fixtures.handlers import http_event, signed_headers
from wababind.errors import EventFormatError
from wababind.models import (
    BindRequest,
    CallbackPolicy,
    FieldProblem,
    HttpTriggerEvent,
    parse_bind_request,
)
from wababind.outcome import Outcome

ALLOWED_HOSTS = ("hooks.example.com",)
POLICY = CallbackPolicy(ALLOWED_HOSTS)
TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
HTTP_STATUSES = {200, 400, 401, 405, 413, 415, 422}
WITH_FIXTURES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---- generated bind requests and their oracle ------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
waba_ids = st.one_of(
    st.from_regex(r"[0-9]{1,32}", fullmatch=True),
    st.integers(min_value=-(10**3), max_value=10**34),
    st.text(max_size=40),
    st.sampled_from(["", " 1", "+1", "-1", "1.0", "1e5", "\u0661\u0662", "\uff11", "1" * 33]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
references = st.one_of(
    st.none(),
    st.text(max_size=140),
    st.sampled_from(["r" * 128, "r" * 129, "tab\there", "\u00a0", "ok"]),
    st.integers(),
)
# CallbackUrl values and the rule each breaks (None: allowed).
CALLBACKS: dict[str, str | None] = {
    "https://hooks.example.com/cb": None,
    "https://HOOKS.example.com:8443/cb?x=1": None,
    "http://hooks.example.com/cb": "scheme",
    "https://u:p@hooks.example.com/": "userinfo",
    "https://127.0.0.1/": "ip-literal",
    "https://[::1]/": "ip-literal",
    "https://2130706433/": "ip-literal",
    "https://localhost/": "host",
    "https://metadata.google.internal/": "host",
    "https://evil.example.net/": "host",
    "https://hooks.example.com/#x": "fragment",
}
callbacks = st.one_of(st.none(), st.sampled_from(sorted(CALLBACKS)), st.integers())
requests = st.fixed_dictionaries(
    {},
    optional={
        "WabaId": waba_ids,
        "Reference": references,
        "CallbackUrl": callbacks,
        "Extra": json_values,
    },
)
PRINTABLE = st.characters(codec="utf-8", exclude_categories=("C", "Z")) | st.just(" ")
valid_requests = st.fixed_dictionaries(
    {"WabaId": st.from_regex(r"[0-9]{1,32}", fullmatch=True) | st.integers(0, 10**32 - 1)},
    optional={
        "Reference": st.text(PRINTABLE, max_size=128),
        "CallbackUrl": st.sampled_from([u for u, rule in CALLBACKS.items() if rule is None]),
        "Unknown": json_values,
    },
)


def predicted_problems(body: dict[str, Any]) -> set[tuple[str, str]]:
    """(field, rule) pairs the bind request rules of SPEC.md give for `body`, found apart."""
    problems = set()
    if "WabaId" not in body:
        problems.add(("WabaId", "required"))
    else:
        value = body["WabaId"]
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            text = None
            problems.add(("WabaId", "type"))
        if text is not None:
            if not 1 <= len(text) <= 32:
                problems.add(("WabaId", "length"))
            elif not all(c in "0123456789" for c in text):
                problems.add(("WabaId", "digits"))
    ref = body.get("Reference")
    if ref is not None:
        if not isinstance(ref, str):
            problems.add(("Reference", "type"))
        elif len(ref) > 128:
            problems.add(("Reference", "length"))
        elif not ref.isprintable():
            problems.add(("Reference", "printable"))
    url = body.get("CallbackUrl")
    if url is not None:
        if not isinstance(url, str):
            problems.add(("CallbackUrl", "type"))
        elif CALLBACKS[url] is not None:
            problems.add(("CallbackUrl", str(CALLBACKS[url])))
    return problems


def digits_of(value: Any) -> str:
    return str(value)


def assert_clean(text: str) -> None:
    assert not TRACE.search(text), text[:2000]


# ---- the bind request parser -----------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(requests)
def test_bind_request_parser_lists_exactly_the_broken_rules(body: dict[str, Any]) -> None:
    request, problems = parse_bind_request(body, POLICY)
    expected = predicted_problems(body)
    assert {(p.field, p.rule) for p in problems} == expected
    assert (request is None) == bool(expected)
    assert all(p.message for p in problems)
    if request is not None:
        assert request.waba_id == digits_of(body["WabaId"])
        assert request.reference == body.get("Reference")


@settings(max_examples=200, deadline=None)
@given(json_values | st.lists(requests, max_size=2))
def test_bind_request_parser_never_raises_on_any_json(value: Any) -> None:
    request, problems = parse_bind_request(value, POLICY)
    assert (request is None) == bool(problems)
    with contextlib.suppress(ValidationError):
        BindRequest.model_validate(value, context=POLICY)


# ---- the HTTP function -----------------------------------------------------------------------


def http_response(event: bytes, context: Any) -> tuple[int, dict[str, Any]]:
    response = http_handler(event, context())
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["Content-Type"] == "application/json"
    assert_clean(response["body"])
    body = json.loads(response["body"])
    assert isinstance(body, dict)
    return response["statusCode"], body


@WITH_FIXTURES
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_http_function_answers_any_event(wababind_env: Any, context: Any, event: bytes) -> None:
    status, body = http_response(event, context)
    assert status in HTTP_STATUSES - {200}
    assert body["Errors"]


http_events = st.fixed_dictionaries(
    {
        "version": st.just("v1"),
        "rawPath": st.sampled_from(["/", "/x"]),
        "body": st.text(max_size=50),
        "isBase64Encoded": st.booleans(),
        "headers": st.dictionaries(
            st.sampled_from(["Content-Type", "webhook-id", "webhook-timestamp", "X-A"]),
            st.text(max_size=20),
            max_size=4,
        ),
        "queryParameters": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        "requestContext": st.fixed_dictionaries(
            {
                "accountId": st.text(max_size=5),
                "requestId": st.text(max_size=5),
                "http": st.fixed_dictionaries(
                    {"method": st.sampled_from(["POST", "GET", "post", "PUT"])},
                    optional={
                        "path": st.text(max_size=5),
                        "protocol": st.just("HTTP/1.1"),
                        "sourceIp": st.just("203.0.113.1"),
                        "userAgent": st.text(max_size=5),
                    },
                ),
            }
        ),
    }
)


@WITH_FIXTURES
@given(http_events)
def test_http_function_answers_any_well_formed_event(
    wababind_env: Any, context: Any, event: dict[str, Any]
) -> None:
    status, body = http_response(json.dumps(event).encode(), context)
    assert status in HTTP_STATUSES - {200}  # never signed, so never bound
    assert body["Errors"]


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it (no NaN or Infinity); raises ValueError otherwise."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


def expected_http(method: str, content_type: str, auth: str, text: str) -> tuple[int, Any]:
    """The status SPEC.md documents for this request, and the parsed body when it gets that far."""
    if method != "POST":
        return 405, None
    if content_type.split(";")[0].strip().lower() != "application/json":
        return 415, None
    if auth != "signed":
        return 401, None
    try:
        body = strict_json(text)
    except (ValueError, RecursionError):
        return 400, None
    if not isinstance(body, dict):
        return 400, None
    return (422 if predicted_problems(body) else 200), body


@WITH_FIXTURES
@given(
    method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE"]),
    content_type=st.sampled_from(
        ["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", ""]
    ),
    auth=st.sampled_from(["signed"] * 6 + ["unsigned", "wrong secret"]),
    text=st.one_of(
        valid_requests.map(json.dumps),
        requests.map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=60),
    ),
    base64_body=st.booleans(),
)
def test_http_function_follows_the_status_table(
    wababind_env: Any,
    context: Any,
    monkeypatch: Any,
    method: str,
    content_type: str,
    auth: str,
    text: str,
    base64_body: bool,
) -> None:
    monkeypatch.setenv("CALLBACK_ALLOWED_HOSTS", ",".join(ALLOWED_HOSTS))
    headers = {"Content-Type": content_type}
    if auth == "signed":
        headers.update(signed_headers(text))
    elif auth == "wrong secret":
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        headers.update(signed_headers(text, secret=other))
    event = http_event(text, headers, method=method, base64_body=base64_body)

    status, body = http_response(event, context)
    expected, request = expected_http(method, content_type, auth, text)
    event_label(f"status {status}")
    assert status == expected, body
    if status == 200:
        assert body["Status"] in ("bound", "duplicate") and body["Source"] == "http"
        assert body["WabaId"] == digits_of(request["WabaId"])
        assert body["Reference"] == request.get("Reference")
    elif status == 422:
        assert {(e["Field"], e["Rule"]) for e in body["Errors"]} == predicted_problems(request)
    else:
        assert body["Errors"] and all(e["Field"] and e["Rule"] for e in body["Errors"])


# ---- the MQ function -------------------------------------------------------------------------

JUNK = "%%not json, not base64%%"
bodies = st.one_of(requests, valid_requests, st.just(JUNK))
encodings = st.sampled_from(["text", "base64"])


def encode(body: Any, how: str) -> Any:
    if body == JUNK:
        return JUNK
    text = json.dumps(body)
    return base64.b64encode(text.encode()).decode() if how == "base64" else text


def cloud_event(kind: str, n: int, payload: Any) -> dict[str, Any]:
    data: dict[str, Any]
    if kind == "mq:Topic:SendMessage":
        data = {"topic": "t", "systemProperties": {"UNIQ_KEY": f"u{n}"}, "body": payload}
    elif kind == "mns:Queue:SendMessage":
        data = {"requestId": "r", "messageId": f"m{n}", "messageBody": payload}
    else:
        data = {"topic": "t", "partition": 0, "offset": n, "value": payload}
    return {"specversion": "1.0", "id": f"ce-{n}", "source": "acs", "type": kind, "data": data}


CLOUD_EVENT_TYPES = {
    "rocketmq": "mq:Topic:SendMessage",
    "mns": "mns:Queue:SendMessage",
    "kafka": "alikafka:Topic:Message",
}


def build_event(fmt: str, items: list[Any], how: str) -> Any:
    """The event of `fmt` carrying `items` (bodies, or JUNK)."""
    if fmt == "rocketmq":
        return [cloud_event("mq:Topic:SendMessage", i, encode(b, how)) for i, b in enumerate(items)]
    if fmt == "mns":
        return [
            cloud_event("mns:Queue:SendMessage", i, encode(b, how)) for i, b in enumerate(items)
        ]
    if fmt == "kafka":
        return [
            cloud_event("alikafka:Topic:Message", i, encode(b, how)) for i, b in enumerate(items)
        ]
    if fmt == "kafka-strings":
        return [json.dumps(e) for e in build_event("kafka", items, how)]
    if fmt == "mns-topic":
        return {
            "TopicOwner": "1",
            "TopicName": "t",
            "MessageId": "T",
            "Message": encode(items[0], how),
        }
    if fmt == "direct-single":
        return items[0]
    return items


MQ_FORMATS = ["rocketmq", "mns", "kafka", "kafka-strings", "mns-topic", "direct-single", "direct"]


def message_count(fmt: str, items: list[Any]) -> int:
    return 1 if fmt in ("mns-topic", "direct-single") else len(items)


def body_is_valid(body: Any) -> bool:
    return isinstance(body, dict) and not predicted_problems(body)


@WITH_FIXTURES
@given(
    fmt=st.sampled_from(MQ_FORMATS),
    items=st.lists(bodies, min_size=1, max_size=4),
    how=encodings,
)
def test_mq_function_gives_one_outcome_per_message(
    wababind_env: Any, context: Any, monkeypatch: Any, fmt: str, items: list[Any], how: str
) -> None:
    monkeypatch.setenv("CALLBACK_ALLOWED_HOSTS", ",".join(ALLOWED_HOSTS))
    direct = fmt.startswith("direct")
    if direct:
        items = [{} if b == JUNK else b for b in items]
    used = items[: message_count(fmt, items)]
    event = build_event(fmt, items, how)
    if direct and not any("WabaId" in b for b in used):
        with pytest.raises(EventFormatError):
            mq_handler(json.dumps(event).encode(), context())
        return
    summary = json.loads(mq_handler(json.dumps(event).encode(), context()))
    assert_clean(json.dumps(summary))
    outcomes = summary["Outcomes"]
    assert summary["Total"] == len(outcomes) == len(used)
    assert summary["Retryable"] == 0
    for body, outcome in zip(used, outcomes, strict=True):
        if body_is_valid(body):
            assert outcome["Status"] in ("bound", "duplicate"), outcome
            assert outcome["WabaId"] == digits_of(body["WabaId"])
            assert outcome["Reference"] == body.get("Reference")
        else:
            assert (outcome["Status"], outcome["Code"]) == ("failed", "InvalidMessage"), outcome
            assert outcome["Retryable"] is False and outcome["Message"]


@WITH_FIXTURES
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_mq_function_raises_only_event_format_error(
    wababind_env: Any, context: Any, event: bytes
) -> None:
    try:
        summary = json.loads(mq_handler(event, context()))
    except EventFormatError as exc:
        assert str(exc) and not TRACE.search(str(exc))
        return
    assert summary["Total"] == len(summary["Outcomes"])
    assert summary["Retryable"] == 0


# ---- round trips -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(valid_requests)
def test_bind_request_round_trip(body: dict[str, Any]) -> None:
    request = BindRequest.model_validate(body, context=POLICY)
    dumped = request.model_dump(by_alias=True)
    assert set(dumped) == {"WabaId", "Reference", "CallbackUrl"}  # unknown fields dropped
    assert dumped["WabaId"] == digits_of(body["WabaId"])
    assert BindRequest.model_validate(dumped, context=POLICY) == request
    as_json = request.model_dump_json(by_alias=True)
    assert BindRequest.model_validate_json(as_json, context=POLICY) == request
    again, problems = parse_bind_request(json.loads(as_json), POLICY)
    assert (again, problems) == (request, [])


@settings(max_examples=200, deadline=None)
@given(http_events)
def test_http_trigger_event_round_trip(event: dict[str, Any]) -> None:
    model = HttpTriggerEvent.model_validate(event)
    assert model.method == event["requestContext"]["http"]["method"].upper()
    assert set(model.headers) == {k.lower() for k in event["headers"]}
    dumped = model.model_dump(by_alias=True)
    assert HttpTriggerEvent.model_validate(dumped) == model
    assert HttpTriggerEvent.model_validate_json(model.model_dump_json(by_alias=True)) == model


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1), st.text(min_size=1), st.text())
def test_field_problem_round_trip(fld: str, rule: str, message: str) -> None:
    problem = FieldProblem(fld, rule, message)
    doc = json.loads(json.dumps(problem.to_json()))
    assert FieldProblem(doc["Field"], doc["Rule"], doc["Message"]) == problem


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(["bound", "duplicate", "failed"]),
    source=st.sampled_from(["http", "rocketmq", "mns", "kafka", "direct"]),
    text=st.text(max_size=30),
    started=times,
    span_ms=st.integers(0, 10**7),
    attempts=st.integers(0, 50),
    retryable=st.booleans(),
)
def test_outcome_record_round_trip(
    status: Any,
    source: Any,
    text: str,
    started: datetime,
    span_ms: int,
    attempts: int,
    retryable: bool,
) -> None:
    finished = started + timedelta(milliseconds=span_ms)
    outcome = Outcome(
        event_id=text or "e",
        source=source,
        waba_id="123",
        reference=text,
        status=status,
        code="OK",
        message=text,
        retryable=retryable,
        attempts=attempts,
        started_at=started,
        finished_at=finished,
    )
    record = outcome.to_record()
    assert json.loads(outcome.to_json()) == record

    def parsed(value: str) -> datetime:
        assert value.endswith("Z")
        return datetime.fromisoformat(value[:-1] + "+00:00")

    assert parsed(record["StartedAt"]) == started.replace(
        microsecond=started.microsecond // 1000 * 1000
    )
    assert parsed(record["FinishedAt"]) <= finished
    assert math.isclose(record["DurationMs"], span_ms, abs_tol=0.001)
    assert (record["Reference"], record["Message"], record["Attempts"]) == (text, text, attempts)


@WITH_FIXTURES
@given(valid_requests, st.sampled_from(["http", *MQ_FORMATS]), encodings)
def test_a_valid_request_comes_back_in_its_outcome(
    wababind_env: Any,
    context: Any,
    monkeypatch: Any,
    body: dict[str, Any],
    entry: str,
    how: str,
) -> None:
    monkeypatch.setenv("CALLBACK_ALLOWED_HOSTS", ",".join(ALLOWED_HOSTS))
    if entry == "http":
        text = json.dumps(body)
        status, outcome = http_response(http_event(text, signed_headers(text)), context)
        assert status == 200
    else:
        event = build_event(entry, [body], how)
        outcome = json.loads(mq_handler(json.dumps(event).encode(), context()))["Outcomes"][0]
    assert outcome["Status"] in ("bound", "duplicate")
    assert outcome["WabaId"] == digits_of(body["WabaId"])
    assert outcome["Reference"] == body.get("Reference")
    assert outcome["Source"] == {"http": "http", "mns-topic": "mns", "kafka-strings": "kafka"}.get(
        entry, "direct" if entry.startswith("direct") else entry
    )
