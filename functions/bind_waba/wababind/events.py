"""MQ function events: tell the trigger formats apart by shape and cut them into queue messages.

Accepted (SPEC.md "MQ invocations"; the formats, with sources: reference/function-compute.md §3):
- EventBridge CloudEvents from RocketMQ, MNS queue and Kafka: one object (event-driven mode) or
  an array (event streaming / batch window); Kafka arrays may hold JSON strings of CloudEvents;
  with eventSchema RawData, the bare `data` objects (recognised by their keys).
- the classic MNS topic trigger: JSON notify format, and STREAM format with message attributes.
  STREAM *without* attributes delivers the raw message body, which cannot be told apart from a
  direct invoke: a JSON bind request arriving that way is treated as direct.
- a direct invoke: one bind request object (it has `WabaId`), or an array of them.

Bodies that cannot be decoded become messages with `error` set, never exceptions, so each message
gets exactly one outcome. Only an event that fits no format raises EventFormatError.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic_core import ValidationError, core_schema

from wababind.edge import Edge, field, optional
from wababind.errors import EventFormatError

MessageSource = Literal["rocketmq", "mns", "kafka", "direct"]


class QueueMessage:
    """One message of an invocation: `body` is its decoded JSON value, or `error` says why not.
    A plain class: a @dataclass execs its generated __init__ at import (~0.3 ms of every cold
    start)."""

    def __init__(
        self, event_id: str, source: MessageSource, body: object | None, error: str | None = None
    ) -> None:
        self.event_id = event_id
        self.source = source
        self.body = body
        self.error = error


# ---- documented shapes (field names as the docs spell them) ----------------------------------


# Each shape: a frozen dataclass for its fields, then its schema (unknown keys ignored).
_ANY = core_schema.any_schema()
_STR = core_schema.str_schema()
_OPT_STR = optional(_STR)
_OPT_INT = optional(core_schema.int_schema())
_MAP = core_schema.dict_schema(_STR, _ANY)


# RocketMQ `data`: https://www.alibabacloud.com/help/en/eventbridge/user-guide/create-a-custom-event-source-of-the-message-queue-for-apache-rocketmq-type
# (`msgId` appears instead of systemProperties on older instances, per awesome-fc samples.)
class RocketMQData(Edge):
    body: Any
    topic: str | None
    systemProperties: dict[str, Any]
    userProperties: dict[str, Any]
    msgId: str | None


RocketMQData.compile(
    {
        "topic": field(_OPT_STR, default=None),
        "systemProperties": field(_MAP, default_factory=dict),
        "userProperties": field(_MAP, default_factory=dict),
        "msgId": field(_OPT_STR, default=None),
        "body": field(_ANY),
    }
)


# MNS queue `data`: https://www.alibabacloud.com/help/en/eventbridge/latest/create-a-custom-event-source-of-the-mns-type
class MnsQueueData(Edge):
    messageBody: Any
    requestId: str | None
    messageId: str | None


MnsQueueData.compile(
    {
        "requestId": field(_OPT_STR, default=None),
        "messageId": field(_OPT_STR, default=None),
        "messageBody": field(_ANY),
    }
)


# Kafka `data`: https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/formats-of-event-for-different-triggers-1
# (`value` is an object with the Json value format, a string with Text, base64 with Binary.)
class KafkaData(Edge):
    value: Any
    topic: str | None
    partition: int | None
    offset: int | None
    key: Any


KafkaData.compile(
    {
        "topic": field(_OPT_STR, default=None),
        "partition": field(_OPT_INT, default=None),
        "offset": field(_OPT_INT, default=None),
        "key": field(_ANY, default=None),
        "value": field(_ANY),
    }
)


# The CloudEvents envelope EventBridge wraps around each `data`; same page as above.
class CloudEvent(Edge):
    type: str
    data: Any
    id: str | None
    source: str | None
    specversion: str | None


CloudEvent.compile(
    {
        "id": field(_OPT_STR, default=None),
        "type": field(_STR),
        "source": field(_OPT_STR, default=None),
        "specversion": field(_OPT_STR, default=None),
        "data": field(_ANY),
    }
)


# MNS topic trigger, JSON notify format (attributes ride along as extra top-level keys):
# https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/formats-of-event-for-different-triggers-1
class MnsTopicNotification(Edge):
    Message: Any
    TopicOwner: str | None
    Subscriber: str | None
    PublishTime: int | None
    SubscriptionName: str | None
    MessageMD5: str | None
    TopicName: str | None
    MessageId: str | None


MnsTopicNotification.compile(
    {
        "TopicOwner": field(_OPT_STR, default=None),
        "Message": field(_ANY),
        "Subscriber": field(_OPT_STR, default=None),
        "PublishTime": field(_OPT_INT, default=None),
        "SubscriptionName": field(_OPT_STR, default=None),
        "MessageMD5": field(_OPT_STR, default=None),
        "TopicName": field(_OPT_STR, default=None),
        "MessageId": field(_OPT_STR, default=None),
    }
)


# MNS topic trigger, STREAM format with message attributes; same page as above.
class MnsTopicStream(Edge):
    body: Any
    attrs: dict[str, Any]


MnsTopicStream.compile({"body": field(_ANY), "attrs": field(_MAP)})


# ---- public entry point ---------------------------------------------------------------------

Shape = Literal[
    "cloudevent", "raw_rocketmq", "raw_mns", "raw_kafka", "mns_topic", "mns_stream", "direct"
]
_CLOUD_EVENT_SOURCES: dict[str, MessageSource] = {
    "mq:Topic:SendMessage": "rocketmq",
    "mns:Queue:SendMessage": "mns",
    "alikafka:Topic:Message": "kafka",
}
_RAW_SOURCES: dict[str, MessageSource] = {
    "raw_rocketmq": "rocketmq",
    "raw_mns": "mns",
    "raw_kafka": "kafka",
}


def parse_mq_event(event: bytes | str, request_id: str) -> list[QueueMessage]:
    """The messages of one MQ invocation, in order; EventFormatError when it fits no format."""
    value = _load_event(event)
    if isinstance(value, list):
        return _parse_batch(value, request_id)
    if isinstance(value, dict):
        return [_parse_single(value, request_id)]
    raise EventFormatError(
        f"the event is a JSON {_json_type(value)}; expected a trigger event object, "
        "a bind request object, or an array of them"
    )


def _load_event(event: object) -> object:
    if isinstance(event, bytes | bytearray | memoryview):
        try:
            event = bytes(event).decode("utf-8")
        except UnicodeDecodeError:
            raise EventFormatError("the event is not UTF-8 text") from None
    if not isinstance(event, str):
        raise EventFormatError("the event must be bytes or text")
    try:
        return json.loads(event.lstrip("\ufeff"))
    except RecursionError:
        raise EventFormatError("the event is JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise EventFormatError(
            f"the event is not JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:
        raise EventFormatError("the event is not JSON") from None


def _parse_single(obj: dict[str, Any], request_id: str) -> QueueMessage:
    shape = _shape(obj)
    if shape is None:
        raise EventFormatError(f"the event object fits no known format ({_describe_keys(obj)})")
    if shape == "cloudevent" and _cloud_event_source(obj) is None:
        raise EventFormatError("the event is a CloudEvent of a type this function does not handle")
    return _parse_element(shape, obj, request_id, 0, "direct")


def _parse_batch(items: list[Any], request_id: str) -> list[QueueMessage]:
    """A batch keeps its length and order: an element that does not fit becomes an error message."""
    elements = [_unwrap_json_string(item) for item in items]
    shapes = [_shape(e) if isinstance(e, dict) else None for e in elements]
    kind, fallback = _batch_kind(elements, shapes)
    if kind is None:
        if not items:
            return []
        raise EventFormatError(
            "no element of the event array is a supported CloudEvent, queue record or bind request"
        )
    messages = []
    for index, (item, element, shape) in enumerate(zip(items, elements, shapes, strict=True)):
        if kind == "direct" and isinstance(element, dict):
            shape = "direct"
        if shape == kind and isinstance(element, dict):
            messages.append(_parse_element(kind, element, request_id, index, fallback))
        else:
            why = f"element {index} is {_describe(item, element)}, not {_KIND_NAMES[kind]}"
            messages.append(_failed(element, request_id, index, fallback, why))
    return messages


_KIND_NAMES: dict[Shape, str] = {
    "cloudevent": "a CloudEvent",
    "raw_rocketmq": "a RocketMQ record",
    "raw_mns": "an MNS queue record",
    "raw_kafka": "a Kafka record",
    "mns_topic": "an MNS topic notification",
    "mns_stream": "an MNS topic STREAM message",
    "direct": "a bind request object",
}


def _batch_kind(
    elements: list[Any], shapes: list[Shape | None]
) -> tuple[Shape | None, MessageSource]:
    """The batch's kind is that of its first recognisable element (MNS topic never batches)."""
    for element, shape in zip(elements, shapes, strict=True):
        if shape == "cloudevent":
            source = _cloud_event_source(element)
            if source is not None:
                return "cloudevent", source
        elif shape in _RAW_SOURCES:
            return shape, _RAW_SOURCES[shape]
        elif shape == "direct":
            return "direct", "direct"
    return None, "direct"


def _unwrap_json_string(item: Any) -> Any:
    """Kafka batches were seen carrying each CloudEvent as a JSON string; unwrap those."""
    if isinstance(item, str):
        try:
            return json.loads(item)
        except (ValueError, RecursionError):
            return item
    return item


def _shape(obj: dict[str, Any]) -> Shape | None:
    keys = obj.keys()
    if "specversion" in keys or _cloud_event_source(obj) is not None:
        return "cloudevent"
    if {"Message", "MessageId", "TopicName"} <= keys:
        return "mns_topic"  # before WabaId: message attributes sit beside the documented keys
    if "WabaId" in keys:
        return "direct"
    if {"body", "attrs"} <= keys:
        return "mns_stream"
    if {"messageBody", "messageId"} <= keys:
        return "raw_mns"
    if {"topic", "partition", "offset"} <= keys:
        return "raw_kafka"
    if "body" in keys and keys & {"systemProperties", "userProperties", "msgId", "topic"}:
        return "raw_rocketmq"
    return None


def _cloud_event_source(obj: dict[str, Any]) -> MessageSource | None:
    kind = obj.get("type")
    return _CLOUD_EVENT_SOURCES.get(kind) if isinstance(kind, str) else None


# ---- one element -----------------------------------------------------------------------------


def _parse_element(
    shape: Shape, obj: dict[str, Any], request_id: str, index: int, fallback: MessageSource
) -> QueueMessage:
    default_id = f"{request_id}#{index}"
    if shape == "direct":
        return QueueMessage(default_id, "direct", obj)
    if shape == "cloudevent":
        source = _cloud_event_source(obj)
        if source is None:
            return _failed(obj, request_id, index, fallback, "CloudEvent type not handled here")
        try:
            envelope = CloudEvent.model_validate(obj)
        except ValidationError as exc:
            return _failed(obj, request_id, index, source, _first_problem(exc))
        event_id = envelope.id or default_id
        parse_data = _DATA_PARSERS[source]
        return parse_data(envelope.data, "data.", envelope.id, event_id)
    if shape in _RAW_SOURCES:
        return _DATA_PARSERS[_RAW_SOURCES[shape]](obj, "", None, default_id)
    if shape == "mns_topic":
        try:
            note = MnsTopicNotification.model_validate(obj)
        except ValidationError as exc:
            return _failed(obj, request_id, index, "mns", _first_problem(exc))
        return _message(note.MessageId or default_id, "mns", note.Message, "Message")
    try:
        stream = MnsTopicStream.model_validate(obj)
    except ValidationError as exc:
        return _failed(obj, request_id, index, "mns", _first_problem(exc))
    return _message(default_id, "mns", stream.body, "body")


def _rocketmq(data: Any, prefix: str, cloud_id: str | None, default_id: str) -> QueueMessage:
    try:
        record = RocketMQData.model_validate(data)
    except ValidationError as exc:
        return QueueMessage(cloud_id or default_id, "rocketmq", None, _first_problem(exc, prefix))
    uniq_key = record.systemProperties.get("UNIQ_KEY")
    event_id = (uniq_key if isinstance(uniq_key, str) and uniq_key else None) or record.msgId
    return _message(event_id or cloud_id or default_id, "rocketmq", record.body, prefix + "body")


def _mns_queue(data: Any, prefix: str, cloud_id: str | None, default_id: str) -> QueueMessage:
    try:
        record = MnsQueueData.model_validate(data)
    except ValidationError as exc:
        return QueueMessage(cloud_id or default_id, "mns", None, _first_problem(exc, prefix))
    event_id = record.messageId or cloud_id or default_id
    return _message(event_id, "mns", record.messageBody, prefix + "messageBody")


def _kafka(data: Any, prefix: str, cloud_id: str | None, default_id: str) -> QueueMessage:
    try:
        record = KafkaData.model_validate(data)
    except ValidationError as exc:
        return QueueMessage(cloud_id or default_id, "kafka", None, _first_problem(exc, prefix))
    position = None
    if record.topic and record.partition is not None and record.offset is not None:
        position = f"{record.topic}-{record.partition}-{record.offset}"
    return _message(cloud_id or position or default_id, "kafka", record.value, prefix + "value")


_DATA_PARSERS: dict[MessageSource, Callable[[Any, str, str | None, str], QueueMessage]] = {
    "rocketmq": _rocketmq,
    "mns": _mns_queue,
    "kafka": _kafka,
}


def _message(event_id: str, source: MessageSource, raw: Any, field: str) -> QueueMessage:
    body, error = decode_body(raw, field)
    return QueueMessage(event_id, source, body, error)


def _failed(
    element: Any, request_id: str, index: int, source: MessageSource, why: str
) -> QueueMessage:
    """An element that is no valid record still gets an outcome, under its own id if it has one."""
    own_id = element.get("id") if isinstance(element, dict) else None
    event_id = own_id if isinstance(own_id, str) and own_id else f"{request_id}#{index}"
    return QueueMessage(event_id, source, None, why)


# ---- message bodies --------------------------------------------------------------------------


def decode_body(raw: Any, field: str) -> tuple[object | None, str | None]:
    """(the JSON value, None) or (None, why not). JSON text, base64 of UTF-8 JSON, or a value.

    A string that decodes to another JSON string is decoded once more (producers that serialise
    twice); a body that still ends as a string cannot be a bind request and is an error.
    """
    if raw is None:
        return None, f"{field}: missing or null"
    if not isinstance(raw, str):
        return raw, None
    value = _decode_text(raw)
    if isinstance(value, str):
        value = _decode_text(value)
        if value is _UNDECODABLE or isinstance(value, str):
            return None, f"{field}: a JSON string, not a JSON object"
    if value is _UNDECODABLE:
        return None, f"{field}: neither JSON text nor strict base64 of UTF-8 JSON"
    if value is None:
        return None, f"{field}: decodes to JSON null"
    return value, None


_UNDECODABLE = object()


def _decode_text(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return json.loads(base64.b64decode(text, validate=True).decode("utf-8"))
    except (ValueError, RecursionError):
        return _UNDECODABLE


# ---- small helpers ---------------------------------------------------------------------------


def _first_problem(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = (prefix + ".".join(str(part) for part in err["loc"])).rstrip(".") or "$"
    return f"{where}: {err['msg']}"[:160]


def _describe(item: object, element: object) -> str:
    if isinstance(item, str) and not isinstance(element, dict):
        return "a string that holds no JSON object"
    if isinstance(element, dict):
        return "an object of another kind"
    kind = _json_type(element)
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe_keys(obj: dict[str, Any]) -> str:
    if not obj:
        return "it is empty"
    names = ", ".join(repr(key[:32]) for key in list(obj)[:6])
    more = ", ..." if len(obj) > 6 else ""
    return f"keys {names}{more}; a bind request needs 'WabaId'"
