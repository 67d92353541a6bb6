"""Pydantic models at the edges: the bind request and the FC 3.0 HTTP trigger event."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

WABA_ID_RE = re.compile(r"[0-9]{1,32}")
MAX_REFERENCE = 128


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule, as a 422 body lists it."""

    field: str
    rule: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"Field": self.field, "Rule": self.rule, "Message": self.message}


@dataclass(frozen=True)
class CallbackPolicy:
    """What a request's CallbackUrl may be; passed as validation context."""

    allowed_hosts: tuple[str, ...] = ()
    allow_insecure: bool = False


class BindRequest(BaseModel):
    """The webhook body and every queue message body (SPEC.md "Bind request")."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    waba_id: str = Field(alias="WabaId")
    reference: str | None = Field(default=None, alias="Reference")
    callback_url: str | None = Field(default=None, alias="CallbackUrl")

    @field_validator("waba_id", mode="before")
    @classmethod
    def _waba_id(cls, value: Any) -> str:
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

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise PydanticCustomError("type", "Reference must be a string")
        if len(value) > MAX_REFERENCE:
            raise PydanticCustomError("length", "Reference must have at most 128 characters")
        if not value.isprintable():
            raise PydanticCustomError("printable", "Reference must hold printable characters only")
        return value

    @field_validator("callback_url", mode="before")
    @classmethod
    def _callback_url(cls, value: Any, info: ValidationInfo) -> str | None:
        from wababind.ssrf import callback_url_problem

        if value is None:
            return None
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
class HttpInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    method: str
    path: str = "/"
    protocol: str = "HTTP/1.1"
    source_ip: str = Field(default="", alias="sourceIp")
    user_agent: str = Field(default="", alias="userAgent")


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="ignore")

    account_id: str = Field(default="", alias="accountId")
    request_id: str = Field(default="", alias="requestId")
    http: HttpInfo


class HttpTriggerEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str = "v1"
    raw_path: str = Field(default="/", alias="rawPath")
    body: str = ""
    is_base64_encoded: bool = Field(default=False, alias="isBase64Encoded")
    headers: dict[str, str] = Field(default_factory=dict)
    query_parameters: dict[str, str] = Field(default_factory=dict, alias="queryParameters")
    request_context: RequestContext = Field(alias="requestContext")

    @field_validator("headers", mode="after")
    @classmethod
    def _lower_case_names(cls, value: dict[str, str]) -> dict[str, str]:
        """Header names are case-insensitive; FC may send them in any case."""
        return {k.lower(): v for k, v in value.items()}

    @field_validator("body", mode="before")
    @classmethod
    def _null_body(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def method(self) -> str:
        return self.request_context.http.method.upper()
