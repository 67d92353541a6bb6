"""The edge formats: the bind request and the FC 3.0 HTTP trigger event (see wababind.edge)."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from pydantic_core import PydanticCustomError, ValidationError, core_schema

from wababind.edge import Edge, field, optional

WABA_ID_RE = re.compile(r"[0-9]{1,32}")
MAX_REFERENCE = 128


class FieldProblem(NamedTuple):
    """One broken rule, as a 422 body lists it (an immutable value)."""

    field: str
    rule: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"Field": self.field, "Rule": self.rule, "Message": self.message}


class CallbackPolicy:
    """What a request's CallbackUrl may be; passed as validation context. A plain class: a
    @dataclass execs its generated __init__ at import (~0.3 ms of every cold start)."""

    def __init__(self, allowed_hosts: tuple[str, ...] = (), allow_insecure: bool = False) -> None:
        self.allowed_hosts = allowed_hosts
        self.allow_insecure = allow_insecure


class BindRequest(Edge):
    """The webhook body and every queue message body (SPEC.md "Bind request")."""

    waba_id: str
    reference: str | None
    callback_url: str | None


def _waba_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise PydanticCustomError("digits", "WabaId must not be negative")
        value = str(value)
    if not isinstance(value, str):
        raise PydanticCustomError("type", "WabaId must be a string of digits or an integer")
    if not value:
        raise PydanticCustomError("length", "WabaId must not be empty")
    if len(value) > 32:
        raise PydanticCustomError("length", "WabaId must have at most 32 digits")
    if not WABA_ID_RE.fullmatch(value):
        raise PydanticCustomError("digits", "WabaId must be ASCII digits 0-9 only")
    return value


def _reference(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("type", "Reference must be a string")
    if len(value) > MAX_REFERENCE:
        raise PydanticCustomError("length", "Reference must have at most 128 characters")
    if not value.isprintable():
        raise PydanticCustomError("printable", "Reference must hold printable characters only")
    return value


def _callback_url(value: Any, info: core_schema.ValidationInfo) -> str | None:
    if value is None:  # most requests: no CallbackUrl, no import statement to run
        return None
    from wababind.ssrf import callback_url_problem

    if not isinstance(value, str):
        raise PydanticCustomError("type", "CallbackUrl must be a string")
    policy = info.context if isinstance(info.context, CallbackPolicy) else CallbackPolicy()
    problem = callback_url_problem(
        value, policy.allowed_hosts, allow_insecure=policy.allow_insecure
    )
    if problem is not None:
        rule, message = problem
        raise PydanticCustomError(rule, "CallbackUrl: {detail}", {"detail": message})
    return value


# Each rule is a plain "before" function over any JSON value; the request's CallbackPolicy
# rides in as the validation context.
_ANY = core_schema.any_schema()
BindRequest.compile(
    {
        "waba_id": field(core_schema.no_info_before_validator_function(_waba_id, _ANY), "WabaId"),
        "reference": field(
            core_schema.no_info_before_validator_function(_reference, _ANY),
            "Reference",
            default=None,
        ),
        "callback_url": field(
            core_schema.with_info_before_validator_function(_callback_url, _ANY),
            "CallbackUrl",
            default=None,
        ),
    }
)


def parse_bind_request(
    body: object, policy: CallbackPolicy
) -> tuple[BindRequest | None, list[FieldProblem]]:
    """A bind request, or every problem with it (never an exception)."""
    if not isinstance(body, dict):
        return None, [FieldProblem("$", "object", "the bind request must be a JSON object")]
    try:
        return BindRequest.model_validate(body, context=policy), []
    except ValidationError as exc:
        return None, [_problem(err) for err in exc.errors(include_url=False, include_input=False)]


_ALIASES = {"waba_id": "WabaId", "reference": "Reference", "callback_url": "CallbackUrl"}


def _problem(err: Any) -> FieldProblem:
    loc = err.get("loc") or ("$",)
    field = _ALIASES.get(str(loc[0]), str(loc[0]))
    rule = "required" if err["type"] == "missing" else err["type"]
    message = f"{field} is required" if rule == "required" else err["msg"]
    return FieldProblem(field, rule, message)


# FC 3.0 HTTP trigger event for built-in runtimes. Mirrors the documented request struct:
# https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/user-guide/http-trigger-invoking-function
_STR = core_schema.str_schema()
_STR_MAP = core_schema.dict_schema(_STR, _STR)


class HttpInfo(Edge):
    method: str
    path: str
    protocol: str
    source_ip: str
    user_agent: str


HttpInfo.compile(
    {
        "method": field(_STR),
        "path": field(_STR, default="/"),
        "protocol": field(_STR, default="HTTP/1.1"),
        "source_ip": field(_STR, "sourceIp", default=""),
        "user_agent": field(_STR, "userAgent", default=""),
    }
)


class RequestContext(Edge):
    http: HttpInfo
    account_id: str
    request_id: str


RequestContext.compile(
    {
        "account_id": field(_STR, "accountId", default=""),
        "request_id": field(_STR, "requestId", default=""),
        "http": field(HttpInfo.schema),
    }
)


class HttpTriggerEvent(Edge):
    request_context: RequestContext
    version: str
    raw_path: str
    body: str
    is_base64_encoded: bool
    headers: dict[str, str]
    query_parameters: dict[str, str]

    @property
    def method(self) -> str:
        return self.request_context.http.method.upper()


def _lower_case_names(values: dict[str, Any]) -> dict[str, Any]:
    """Header names are case-insensitive; FC may send them in any case. A null body is an
    empty one (here, not in a validator of its own: one Python call per event, not two)."""
    values["headers"] = {k.lower(): v for k, v in values["headers"].items()}
    if values["body"] is None:
        values["body"] = ""
    return values


HttpTriggerEvent.compile(
    {
        "version": field(_STR, default="v1"),
        "raw_path": field(_STR, "rawPath", default="/"),
        "body": field(optional(_STR), default=""),  # null: made "" by _lower_case_names
        "is_base64_encoded": field(core_schema.bool_schema(), "isBase64Encoded", default=False),
        "headers": field(_STR_MAP, default_factory=dict),
        "query_parameters": field(_STR_MAP, "queryParameters", default_factory=dict),
        "request_context": field(RequestContext.schema, "requestContext"),
    },
    adjust=_lower_case_names,
)
