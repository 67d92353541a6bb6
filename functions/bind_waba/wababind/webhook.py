"""The HTTP function: FC 3.0 HTTP trigger event in, one JSON response out (SPEC "HTTP webhook")."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from typing import Any

from pydantic_core import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from wababind import applog
from wababind.errors import SHARED_STORE_UNAVAILABLE, ConfigError
from wababind.models import FieldProblem, HttpTriggerEvent, parse_bind_request
from wababind.outcome import Outcome
from wababind.runtime import Runtime, fc_request_id, get_runtime, start_invocation

MAX_BODY = 64 * 1024
RETRY_AFTER_S = "2"
STORE_RETRY_AFTER_S = "5"  # Redis away: a failover takes seconds (fallback.RETRY_AFTER_S)
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_VERIFY_RULES = {
    "Message timestamp too old": ("webhook-timestamp", "stale"),
    "Message timestamp too new": ("webhook-timestamp", "future"),
    "Invalid Signature Headers": ("webhook-timestamp", "format"),
    "No matching signature found": ("webhook-signature", "mismatch"),
}
_warned_unconfigured = False


class Reject(Exception):
    """A request we answer with a 4xx/5xx error body instead of an outcome."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *problems: FieldProblem,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems, self.headers = problems, headers or {}


def http_handler(event: bytes | str, context: Any) -> dict[str, Any]:
    """Every answer is JSON: a rejection, an outcome, or, for anything unexpected, 500
    `InternalError` with the FC request id (logged once, no trace; FC would answer a raised
    exception with its own body and a stackTrace)."""
    started = time.monotonic()
    request_id = fc_request_id(context)
    with applog.Scope(FcRequestId=request_id):
        try:
            return _handle(event, context, started)
        except Reject as rej:
            body = {
                "Code": rej.code,
                "Message": rej.message,
                "Errors": [p.to_json() for p in rej.problems],
            }
            return respond(rej.status, body, rej.headers)
        except Exception as exc:
            applog.unexpected("unexpected error in the HTTP function", exc)
            message = "something unexpected failed; retry (the app log has it by FcRequestId)"
            body = {"Code": "InternalError", "Message": message, "Errors": []}
            return respond(500, {**body, "RequestId": request_id})


def respond(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return _json_response(
        status, json.dumps(body, ensure_ascii=False, separators=(",", ":")), headers
    )


def _json_response(status: int, text: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": text,
        "isBase64Encoded": False,
    }


def _handle(event: bytes | str, context: Any, started: float) -> dict[str, Any]:
    try:
        request = HttpTriggerEvent.model_validate_json(event)
    except ValidationError:
        raise Reject(
            400,
            "InvalidEvent",
            "the event is not an FC HTTP trigger event",
            FieldProblem("event", "fc-http-trigger", "not an FC 3.0 HTTP trigger event"),
        ) from None
    if request.method != "POST":
        raise Reject(
            405,
            "MethodNotAllowed",
            "only POST is accepted",
            FieldProblem("method", "POST", f"{request.method} is not allowed"),
            headers={"Allow": "POST"},
        )
    raw = _raw_body(request)
    _check_content_type(request.headers.get("content-type", ""))
    try:
        runtime = get_runtime()
    except ConfigError as exc:
        raise Reject(500, "ConfigurationError", str(exc)) from None
    text = raw if isinstance(raw, str) else _utf8(raw)
    webhook_id = _authenticate(runtime, text, request.headers)
    body = _json_object(text)
    bind_request, problems = parse_bind_request(body, runtime.policy)
    if bind_request is None:
        raise Reject(422, "InvalidRequest", "the bind request breaks a rule", *problems)

    inv = start_invocation(context, "interactive", started)
    with applog.Scope(WabaId=bind_request.waba_id):
        outcome = runtime.binder.bind(
            bind_request, event_id=webhook_id or inv.request_id, source="http", inv=inv
        )
        deliveries = runtime.dispatcher.deliver(outcome, inv.credentials, inv.finish_by)
        runtime.dispatcher.settle(deliveries, inv.finish_by)
    runtime.store.flush_pending()  # FC freezes every thread once this returns
    return _answer(outcome)


def _answer(outcome: Outcome) -> dict[str, Any]:
    """The outcome record is the body, serialized once (`respond`'s JSON form)."""
    if outcome.status != "failed":
        return _json_response(200, outcome.to_json())
    if not outcome.retryable:
        return _json_response(502, outcome.to_json())
    retry_after = STORE_RETRY_AFTER_S if outcome.code == SHARED_STORE_UNAVAILABLE else RETRY_AFTER_S
    return _json_response(503, outcome.to_json(), {"Retry-After": retry_after})


def _raw_body(request: HttpTriggerEvent) -> bytes | str:
    """The body's bytes, or the text itself when it is ASCII (a plain body nearly always is:
    its bytes would only be decoded back into the same text)."""
    if len(request.body) > MAX_BODY * 4 // 3 + 4:
        raise _too_large()
    raw: bytes | str
    if request.is_base64_encoded:
        try:
            raw = base64.b64decode(request.body, validate=True)
        except (binascii.Error, ValueError):
            raise Reject(
                400,
                "InvalidBody",
                "the body is not valid base64",
                FieldProblem(
                    "body", "base64", "isBase64Encoded is true but the body is not base64"
                ),
            ) from None
    elif request.body.isascii():
        raw = request.body  # as many bytes as characters
    else:
        raw = request.body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY:
        raise _too_large()
    return raw


def _too_large() -> Reject:
    return Reject(
        413,
        "PayloadTooLarge",
        "the body is over 64 KiB",
        FieldProblem("body", "max-size", f"at most {MAX_BODY} bytes"),
    )


def _check_content_type(value: str) -> None:
    """application/json, in UTF-8 if a charset is named. RFC 9110 section 8.3.1:
    `type "/" subtype *( OWS ";" OWS parameter )`, parameter `name "=" (token / quoted-string)`.
    Parsed by hand: the `email` package costs more CPU than the rest of the request check."""
    if value == "application/json":  # what nearly every sender sends
        return
    media, _, params = value.partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        name, equals, raw = param.partition("=")
        if equals and name.strip().lower() == "charset":
            charset = raw.strip().strip('"')
    if media.strip().lower() != "application/json" or charset.lower() not in ("utf-8", "utf8"):
        raise Reject(
            415,
            "UnsupportedMediaType",
            "Content-Type must be application/json",
            FieldProblem("content-type", "application/json", "send Content-Type: application/json"),
        )


@functools.lru_cache(maxsize=4)
def _verifier(secret: str) -> Webhook:
    """One verifier per secret: building it decodes the secret's base64 at every request."""
    return Webhook(secret)


def _authenticate(runtime: Runtime, raw: str, headers: dict[str, str]) -> str | None:
    """Standard Webhooks verification; returns the webhook-id.

    The timestamp tolerance is the replay defence; a `webhook-id` seen before is not refused:
    senders resend a message with the same id (new timestamp and signature) when they got no
    answer. The id is the resend's EventId, and the bind is keyed by its WabaId, so a resend
    meets the first bind's record (binder: claim → IN_PROGRESS → COMPLETED/FAILED) and gets
    its answer: `duplicate`, the remembered failure, or the first bind's result while it runs."""
    global _warned_unconfigured
    settings = runtime.settings
    webhook_id = headers.get("webhook-id") or None
    if settings.webhook_secret is None:
        if settings.webhook_auth_none:
            return webhook_id
        if not _warned_unconfigured:
            _warned_unconfigured = True
            applog.log("ERROR", "configuration error", Reason="WEBHOOK_SECRET is not set")
        raise Reject(
            500,
            "ConfigurationError",
            "WEBHOOK_SECRET is not set (or set WEBHOOK_AUTH=none for trigger-level auth)",
        )
    for name in SIGNATURE_HEADERS:
        if not headers.get(name):
            raise _unauthorized(name, "missing", f"the {name} header is required")
    # One well-formed `version,signature` entry is enough; a malformed one is no match.
    entries = [e for e in headers["webhook-signature"].split(" ") if e.count(",") == 1]
    if not entries:
        raise _unauthorized("webhook-signature", "format", "malformed signature")
    headers = {**headers, "webhook-signature": " ".join(entries)}
    try:
        _verifier(settings.webhook_secret).verify(raw, headers, json_parse=False)
    except WebhookVerificationError as exc:
        field, rule = _VERIFY_RULES.get(str(exc), ("webhook-signature", "mismatch"))
        raise _unauthorized(field, rule, str(exc)) from None
    except ValueError:  # a malformed signature entry (binascii.Error is a ValueError)
        raise _unauthorized("webhook-signature", "format", "malformed signature") from None
    return webhook_id


def _unauthorized(field: str, rule: str, message: str) -> Reject:
    return Reject(
        401, "Unauthorized", "webhook signature check failed", FieldProblem(field, rule, message)
    )


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject(
            400,
            "InvalidBody",
            "the body is not UTF-8",
            FieldProblem("body", "utf-8", "the body must be UTF-8 JSON"),
        ) from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# json.loads(text, parse_constant=...) would build this decoder (and its scanner) per request.
_BODY_DECODER = json.JSONDecoder(parse_constant=_not_json)


def _json_object(text: str) -> dict[str, Any]:
    try:
        body = _BODY_DECODER.decode(text)
    except (ValueError, RecursionError):
        raise Reject(
            400,
            "InvalidBody",
            "the body is not JSON",
            FieldProblem("body", "json", "the body must be a JSON object"),
        ) from None
    if not isinstance(body, dict):
        raise Reject(
            400,
            "InvalidBody",
            "the body is not a JSON object",
            FieldProblem("body", "object", "the body must be a JSON object"),
        ) from None
    return body
