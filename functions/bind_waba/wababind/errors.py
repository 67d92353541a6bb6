"""Errors as values: a code, a message and whether a later try may succeed."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from wababind.redis_errors import RedisProblem


class BindError(NamedTuple):
    """Why a bind did not succeed; `code` is CAMS's own code or one of ours below. An immutable
    value (a NamedTuple: a frozen dataclass costs ~0.7 ms more at cold start)."""

    code: str
    message: str
    retryable: bool
    request_id: str | None = None
    access_denied_detail: str | None = None
    http_status: int | None = None
    ambiguous: bool = False  # the request went out and no readable answer came: CAMS may have bound


# The project's own codes (CAMS's codes pass through unchanged).
INVALID_MESSAGE = "InvalidMessage"  # a queue message that is not a valid bind request
BIND_IN_PROGRESS = "BindInProgress"  # another instance holds this WabaId right now
DEADLINE_EXCEEDED = "DeadlineExceeded"  # retries ran out of invocation time
CAMS_UNREACHABLE = "CamsUnreachable"  # the request never went out: refused, connect timeout
CAMS_NO_ANSWER = "CamsNoAnswer"  # it went out, no answer came (read timeout, dropped): ambiguous
CAMS_BAD_RESPONSE = "CamsBadResponse"  # an HTTP 2xx/3xx answer whose body is not CAMS's JSON
MISSING_CREDENTIALS = "MissingCredentials"  # neither context nor environment has a key
SHARED_STORE_UNAVAILABLE = "SharedStoreUnavailable"  # REDIS_URL is set and Redis does not answer


class WababindError(Exception):
    """Base of the exceptions this package raises on purpose."""


class ConfigError(WababindError):
    """A setting is missing or invalid; the message names it and never echoes a secret."""


class EventFormatError(WababindError):
    """A trigger event that fits none of the formats we accept."""


class SharedStoreUnavailable(WababindError):
    """REDIS_URL is set and Redis does not answer (ON_REDIS_OUTAGE=wait) or refuses: nothing may
    bind on this instance's memory alone. Raised by the shared limiter and idempotency store,
    with Redis's `problem` (wababind.redis_errors) where there is one."""

    def __init__(self, message: str, problem: RedisProblem | None = None):
        super().__init__(message)
        self.problem = problem

    @property
    def lasting(self) -> bool:
        """Redis refused with an error no wait mends (WRONGTYPE, a password, a script error):
        an operator must act, so a bind does not wait for it."""
        return self.problem is not None and not self.problem.away and not self.problem.retryable


class RetryableBatchError(WababindError):
    """Raised by the MQ handler so the trigger redelivers a batch with retryable failures."""


class InternalError(WababindError):
    """Something no step expected failed; raised by the MQ handler so the trigger redelivers the
    batch. The message holds the FC request id only; the app log has the exception's type and
    the line that raised it (`applog.unexpected`)."""
