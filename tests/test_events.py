"""The MQ event parser: every sample in events/, rejected shapes, per-message errors, fuzzing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wababind.errors import EventFormatError
from wababind.events import (
    CloudEvent,
    KafkaData,
    MnsQueueData,
    MnsTopicNotification,
    MnsTopicStream,
    QueueMessage,
    RocketMQData,
    parse_mq_event,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"
REQ = "req-1"


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def parse(event: Any) -> list[QueueMessage]:
    return parse_mq_event(event if isinstance(event, str | bytes) else json.dumps(event), REQ)


def check_invariants(messages: list[QueueMessage]) -> None:
    for m in messages:
        assert isinstance(m.event_id, str) and m.event_id
        assert m.source in ("rocketmq", "mns", "kafka", "direct")
        assert (m.error is None) == (m.body is not None)


# ---- sample events ---------------------------------------------------------------------------

# file -> (source, event ids, WabaIds of the bodies; None where the message carries an error)
SAMPLES: dict[str, tuple[str, list[str], list[Any]]] = {
    "rocketmq-event.json": ("rocketmq", ["AC14C305069E1B28CDFA3181CDA20001"], ["1234567890123457"]),
    "rocketmq-batch.json": (
        "rocketmq",
        [f"AC14C305069E1B28CDFA3181CDA2001{i}" for i in range(3)],
        ["1234567890123460", "1234567890123461", "1234567890123462"],
    ),
    "mns-queue-event.json": ("mns", ["C6DB60D1574661357FA2272774450001"], ["1234567890123470"]),
    "mns-queue-batch.json": (
        "mns",
        ["C6DB60D1574661357FA2272774450010", "C6DB60D1574661357FA2272774450011"],
        ["1234567890123471", "1234567890123472"],
    ),
    "mns-queue-invalid-body.json": ("mns", ["0FFF111D2A6B444B7FE46AE200000001"], [None]),
    "kafka-batch.json": (
        "kafka",
        ["8e215af8-ca18-4249-8645-f96c10260000", "8e215af8-ca18-4249-8645-f96c10260001"],
        ["1234567890123480", "1234567890123481"],
    ),
    "kafka-json-strings-batch.json": (
        "kafka",
        ["8e215af8-ca18-4249-8645-f96c10260010", "8e215af8-ca18-4249-8645-f96c10260011"],
        ["1234567890123485", "1234567890123486"],
    ),
    "kafka-rawdata-batch.json": (
        "kafka",
        ["waba-bind-1-40", "waba-bind-1-41"],
        ["1234567890123490", "1234567890123491"],
    ),
    "mns-topic-json.json": ("mns", ["2F5B3C082B923D4EAC694B76D9280001"], ["1234567890123495"]),
    "mns-topic-stream-attrs.json": ("mns", [f"{REQ}#0"], ["1234567890123496"]),
    "direct-single.json": ("direct", [f"{REQ}#0"], ["1234567890123500"]),
    "direct-batch.json": (
        "direct",
        [f"{REQ}#{i}" for i in range(3)],
        ["1234567890123501", "1234567890123502", 1234567890123503],
    ),
    "direct-demo-failures.json": (
        "direct",
        [f"{REQ}#{i}" for i in range(5)],
        ["900000000000001", "900000000000002", "900000000000003", "900000000000004", "12ab"],
    ),
    "direct-duplicate.json": ("direct", [f"{REQ}#0"], ["1234567890123501"]),
}
HTTP_SAMPLES = {"http-bind.json"}


def test_every_sample_file_is_covered() -> None:
    assert {p.name for p in EVENTS.glob("*.json")} == set(SAMPLES) | HTTP_SAMPLES


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_parses(name: str) -> None:
    source, ids, waba_ids = SAMPLES[name]
    messages = parse_mq_event((EVENTS / name).read_bytes(), REQ)
    check_invariants(messages)
    assert [m.source for m in messages] == [source] * len(ids)
    assert [m.event_id for m in messages] == ids
    got = [m.body["WabaId"] if isinstance(m.body, dict) else None for m in messages]
    assert got == waba_ids
    for m, waba_id in zip(messages, waba_ids, strict=True):
        assert (m.error is not None) == (waba_id is None)


def test_good_waba_ids_are_distinct_across_samples() -> None:
    seen: dict[str, str] = {"1234567890123456": "http-bind.json"}
    for name, (_, _, waba_ids) in SAMPLES.items():
        if "duplicate" in name or "failures" in name:
            continue
        for waba_id in waba_ids:
            if waba_id is not None:
                assert str(waba_id) not in seen, (name, seen.get(str(waba_id)))
                seen[str(waba_id)] = name


def test_http_sample_is_an_http_post_with_a_bind_request() -> None:
    event = json.loads((EVENTS / "http-bind.json").read_text())
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["headers"]["Content-Type"] == "application/json"
    assert not any(k.lower().startswith("webhook-") for k in event["headers"])
    assert json.loads(event["body"])["WabaId"] == "1234567890123456"
    with pytest.raises(EventFormatError):  # sent to the MQ function, it fits no MQ format
        parse_mq_event((EVENTS / "http-bind.json").read_bytes(), REQ)


# ---- shapes that are rejected ----------------------------------------------------------------

ROCKETMQ_DATA = {"topic": "t", "systemProperties": {}, "userProperties": {}, "body": "{}"}
OSS_EVENT = {"specversion": "1.0", "id": "x", "type": "oss:ObjectCreated:PutObject", "data": {}}

REJECTED: list[tuple[str, Any]] = [
    ("empty bytes", b""),
    ("not json", b"hello topic"),  # MNS topic STREAM without attributes, plain text body
    ("not utf-8", b"\xff\xfe\x00"),
    ("json number", "42"),
    ("json string", '"{\\"WabaId\\": \\"1\\"}"'),
    ("json null", "null"),
    ("json true", "true"),
    ("empty object", {}),
    ("unknown object", {"foo": 1}),
    ("bind request without WabaId", {"Reference": "r"}),
    ("lone CloudEvent of another type", OSS_EVENT),
    ("array of numbers", [1, 2, 3]),
    ("array of unknown objects", [{"foo": 1}, {"bar": 2}]),
    ("array of unparseable strings", ["not json", "{"]),
    ("array of CloudEvents of another type", [OSS_EVENT, OSS_EVENT]),
    ("array of nulls", [None]),
    ("deeply nested", "[" * 100_000 + "]" * 100_000),
    ("not bytes or text", 12345),
]


@pytest.mark.parametrize(("case", "event"), REJECTED, ids=[c for c, _ in REJECTED])
def test_rejected(case: str, event: Any) -> None:
    raw = event if isinstance(event, str | bytes | int) else json.dumps(event)
    with pytest.raises(EventFormatError) as info:
        parse_mq_event(raw, REQ)  # type: ignore[arg-type]
    assert "Traceback" not in str(info.value)


def test_empty_array_is_an_empty_batch() -> None:
    assert parse("[]") == []


# ---- messages that carry an error instead of a body ------------------------------------------


def rocketmq(data: Any, ce_id: Any = "ce-1", **extra: Any) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": ce_id, "type": "mq:Topic:SendMessage", **extra}
    if data is not ...:
        event["data"] = data
    return event


def mns(body: Any, ce_id: str = "ce-m", message_id: str | None = "mid-1") -> dict[str, Any]:
    data: dict[str, Any] = {"requestId": "r"}
    if body is not ...:
        data["messageBody"] = body
    if message_id is not None:
        data["messageId"] = message_id
    return {"specversion": "1.0", "id": ce_id, "type": "mns:Queue:SendMessage", "data": data}


def kafka(value: Any, ce_id: str | None = "ce-k", **data: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "type": "alikafka:Topic:Message",
        "data": {"topic": "t", "partition": 1, "offset": 9, "value": value, **data},
    }
    if ce_id is not None:
        event["id"] = ce_id
    return event


GOOD = {"WabaId": "1"}
R0, R1 = f"{REQ}#0", f"{REQ}#1"


def raw64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# case: (event, index of the failing message, its event id, its source, a part of its error)
MESSAGE_ERRORS: dict[str, tuple[Any, int, str, str, str]] = {
    "bad base64": (mns("eyJXYWJh!!"), 0, "mid-1", "mns", "data.messageBody: neither JSON"),
    "base64 of non-UTF-8": (mns(raw64(b"\xff\xfe{")), 0, "mid-1", "mns", "base64"),
    "base64 of plain text": (mns(raw64(b"hi there")), 0, "mid-1", "mns", "base64"),
    "JSON string of garbage": (mns('"garbage"'), 0, "mid-1", "mns", "a JSON string"),
    "plain garbage": (mns("garbage"), 0, "mid-1", "mns", "neither JSON"),
    "empty body": (mns(""), 0, "mid-1", "mns", "neither JSON"),
    "null body": (mns(None), 0, "mid-1", "mns", "missing or null"),
    "body decodes to null": (mns("null"), 0, "mid-1", "mns", "JSON null"),
    "no messageBody": (mns(...), 0, "ce-m", "mns", "data.messageBody: Field required"),
    "CloudEvent without data": (rocketmq(...), 0, "ce-1", "rocketmq", "data: Field required"),
    "data not an object": (rocketmq("oops"), 0, "ce-1", "rocketmq", "data: Input should"),
    "RocketMQ without body": (rocketmq({"topic": "t"}), 0, "ce-1", "rocketmq", "data.body"),
    "id not a string": (rocketmq(ROCKETMQ_DATA, ce_id=7), 0, R0, "rocketmq", "id: Input"),
    "number in an array": ([kafka(GOOD), 5], 1, R1, "kafka", "1 is a number, not a CloudEvent"),
    "bad string in an array": ([json.dumps(kafka(GOOD)), "{x"], 1, R1, "kafka", "holds no JSON"),
    "Kafka without value": ([kafka(None)], 0, "ce-k", "kafka", "data.value: missing or null"),
    "other type in a batch": ([mns(b64(GOOD)), OSS_EVENT], 1, "x", "mns", "not handled"),
    "request in a CloudEvent batch": ([mns(b64(GOOD)), GOOD], 1, R1, "mns", "not a CloudEvent"),
    "array in a direct batch": ([GOOD, [1]], 1, R1, "direct", "an array, not a bind request"),
    "null in a direct batch": ([GOOD, None], 1, R1, "direct", "a null, not a bind request"),
    "null topic Message": (
        {"Message": None, "TopicName": "t", "MessageId": "m-1"},
        0,
        "m-1",
        "mns",
        "Message: missing or null",
    ),
    "bad PublishTime": (
        {"Message": "{}", "TopicName": "t", "MessageId": "m", "PublishTime": "x"},
        0,
        R0,
        "mns",
        "PublishTime: Input should",
    ),
    "STREAM attrs not an object": ({"body": "{}", "attrs": "x"}, 0, R0, "mns", "attrs: Input"),
    "raw MNS bad body": ([{"messageId": "r-1", "messageBody": "%%"}], 0, "r-1", "mns", "neither"),
}


@pytest.mark.parametrize("case", MESSAGE_ERRORS)
def test_message_error(case: str) -> None:
    event, index, event_id, source, error = MESSAGE_ERRORS[case]
    messages = parse(event)
    check_invariants(messages)
    expected_len = len(event) if isinstance(event, list) else 1
    assert len(messages) == expected_len
    failed = messages[index]
    assert (failed.event_id, failed.source, failed.body) == (event_id, source, None)
    assert failed.error is not None and error in failed.error
    assert len(failed.error) <= 160
    for i, other in enumerate(messages):
        if i != index:
            assert other.error is None and other.body == GOOD


# ---- bodies and ids that decode --------------------------------------------------------------

UNIQ = {"systemProperties": {"UNIQ_KEY": "U1"}, "msgId": "M1", "body": json.dumps(GOOD)}
TOPIC_WITH_WABA_ID_ATTR = {"Message": b64(GOOD), "TopicName": "t", "MessageId": "m", "WabaId": "9"}
# case: (event, the event id, the decoded body)
DECODED: dict[str, tuple[Any, str, Any]] = {
    "Kafka Json value is already an object": ([kafka(GOOD)], "ce-k", GOOD),
    "Kafka Text value": ([kafka(json.dumps(GOOD))], "ce-k", GOOD),
    "Kafka Binary value": ([kafka(b64(GOOD))], "ce-k", GOOD),
    "Kafka without id": ([kafka(GOOD, ce_id=None)], "t-1-9", GOOD),
    "lone Kafka CloudEvent": (kafka(GOOD), "ce-k", GOOD),
    "number body passes through": ([kafka(7)], "ce-k", 7),
    "JSON text of a number": ([kafka("7")], "ce-k", 7),
    "twice-serialised JSON": (mns(json.dumps(json.dumps(GOOD))), "mid-1", GOOD),
    "base64 of a JSON string of JSON": (mns(b64(json.dumps(GOOD))), "mid-1", GOOD),
    "MNS without messageId": (mns(b64(GOOD), message_id=None), "ce-m", GOOD),
    "RocketMQ UNIQ_KEY first": (rocketmq(UNIQ), "U1", GOOD),
    "RocketMQ msgId": (rocketmq({"msgId": "M1", "body": json.dumps(GOOD)}), "M1", GOOD),
    "RocketMQ CloudEvent id": (rocketmq({"topic": "t", "body": GOOD}), "ce-1", GOOD),
    "RocketMQ RawData": ([{**UNIQ, "body": b64(GOOD)}], "U1", GOOD),
    "RocketMQ RawData without ids": ([{"topic": "t", "body": json.dumps(GOOD)}], R0, GOOD),
    "MNS RawData single": (
        {"requestId": "r", "messageId": "m", "messageBody": b64(GOOD)},
        "m",
        GOOD,
    ),
    "MNS topic attribute named WabaId": (TOPIC_WITH_WABA_ID_ATTR, "m", GOOD),
    "direct request with unknown fields": ({**GOOD, "Extra": 1}, R0, {**GOOD, "Extra": 1}),
    "direct request with queue-like fields": ({**GOOD, "topic": "t", "body": "x"}, R0, None),
    "direct request with a BOM": ("\ufeff" + json.dumps(GOOD), R0, GOOD),
}


@pytest.mark.parametrize("case", DECODED)
def test_decoded(case: str) -> None:
    event, event_id, body = DECODED[case]
    body = event if body is None else body
    messages = parse(event)
    check_invariants(messages)
    assert [(m.event_id, m.body, m.error) for m in messages] == [(event_id, body, None)]


def test_direct_batch_keeps_requests_without_waba_id_for_the_handler() -> None:
    messages = parse([GOOD, {"Reference": "no id"}, {"WabaId": "12ab"}])
    assert [m.body for m in messages] == [GOOD, {"Reference": "no id"}, {"WabaId": "12ab"}]
    assert [m.error for m in messages] == [None, None, None]


def test_mixed_cloud_event_sources_keep_their_own_source() -> None:
    messages = parse([mns(b64(GOOD)), kafka(GOOD), rocketmq({"body": GOOD})])
    assert [m.source for m in messages] == ["mns", "kafka", "rocketmq"]


# ---- property tests --------------------------------------------------------------------------

# the keys of the documented shapes, so that generated objects often come close to a real one
SHAPE_KEYS = sorted(
    {"WabaId"}.union(
        *(
            model.model_fields
            for model in (
                CloudEvent,
                RocketMQData,
                MnsQueueData,
                KafkaData,
                MnsTopicNotification,
                MnsTopicStream,
            )
        )
    )
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(SHAPE_KEYS) | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
event_types = st.sampled_from(
    ["mq:Topic:SendMessage", "mns:Queue:SendMessage", "alikafka:Topic:Message", "other"]
)
cloud_events = st.builds(
    lambda t, i, d: {"specversion": "1.0", "type": t, "id": i, "data": d},
    event_types,
    json_values,
    json_values,
)


def parse_or_reject(event: bytes | str) -> None:
    try:
        messages = parse_mq_event(event, REQ)
    except EventFormatError:
        return
    assert isinstance(messages, list)
    check_invariants(messages)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_reject(event: bytes) -> None:
    parse_or_reject(event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values | cloud_events | st.lists(cloud_events | json_values, max_size=5))
def test_arbitrary_json_parse_or_reject(value: Any) -> None:
    parse_or_reject(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(st.lists(cloud_events, min_size=1, max_size=5))
def test_a_cloud_event_batch_keeps_every_element(batch: list[dict[str, Any]]) -> None:
    try:
        messages = parse_mq_event(json.dumps(batch), REQ)
    except EventFormatError:
        assert all(e["type"] == "other" for e in batch)
        return
    assert len(messages) == len(batch)
    check_invariants(messages)


bind_requests = st.lists(
    st.fixed_dictionaries(
        {"WabaId": st.from_regex(r"[0-9]{1,32}", fullmatch=True)},
        optional={
            "Reference": st.text(max_size=20),
            "CallbackUrl": st.just("https://hooks.example.com/x"),
        },
    ),
    min_size=1,
    max_size=6,
)
ids = st.lists(
    st.text(st.characters(codec="ascii"), min_size=1, max_size=12),
    min_size=6,
    max_size=6,
    unique=True,
)


def text_of(value: Any) -> str:
    return json.dumps(value)


def build(fmt: str, reqs: list[dict[str, Any]], keys: list[str]) -> tuple[Any, list[str]]:
    """The event of format `fmt` carrying `reqs`, and the event ids the parser must give."""
    n = range(len(reqs))
    if fmt == "rocketmq":
        return [
            rocketmq({"systemProperties": {"UNIQ_KEY": keys[i]}, "body": text_of(reqs[i])})
            for i in n
        ], keys[: len(reqs)]
    if fmt == "rocketmq-single":
        return rocketmq({"msgId": keys[0], "body": text_of(reqs[0])}), keys[:1]
    if fmt == "mns":
        return [mns(b64(reqs[i]), message_id=keys[i]) for i in n], keys[: len(reqs)]
    if fmt == "kafka-strings":
        return [text_of(kafka(b64(reqs[i]), ce_id=keys[i])) for i in n], keys[: len(reqs)]
    if fmt == "kafka-raw":
        return [{"topic": "t", "partition": 0, "offset": i, "value": reqs[i]} for i in n], [
            f"t-0-{i}" for i in n
        ]
    if fmt == "mns-raw":
        return [{"messageId": keys[i], "messageBody": text_of(reqs[i])} for i in n], keys[
            : len(reqs)
        ]
    if fmt == "mns-topic":
        event = {"TopicOwner": "1", "Message": b64(reqs[0]), "TopicName": "t", "MessageId": keys[0]}
        return event, keys[:1]
    if fmt == "mns-stream":
        return {"body": text_of(reqs[0]), "attrs": {"k": "v"}}, [f"{REQ}#0"]
    if fmt == "direct-single":
        return reqs[0], [f"{REQ}#0"]
    return reqs, [f"{REQ}#{i}" for i in n]


FORMATS = [
    "rocketmq",
    "rocketmq-single",
    "mns",
    "kafka-strings",
    "kafka-raw",
    "mns-raw",
    "mns-topic",
    "mns-stream",
    "direct-single",
    "direct",
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FORMATS), bind_requests, ids)
def test_round_trip(fmt: str, reqs: list[dict[str, Any]], keys: list[str]) -> None:
    event, expected_ids = build(fmt, reqs, keys)
    messages = parse(event)
    assert [m.error for m in messages] == [None] * len(expected_ids)
    assert [m.event_id for m in messages] == expected_ids
    assert [m.body for m in messages] == reqs[: len(expected_ids)]
