"""What a failed Redis call means, in one place: away, reload, or refused (an error value).

Redis answers an error with a code, the reply's first word (`READONLY You can't write…`);
redis-py turns the known codes into exception classes and cuts the code off the text, so the
code is read from the class first and from the text otherwise. No answer at all (refused or
dropped connection, timeout) has no code: `Error` names the exception type then.

- **away**: no answer (a refused or dropped connection, a timeout), or a failover or restart
  under way (`READONLY`, `LOADING`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, `BUSY`): it passes
  by itself. The outage rules apply (ON_REDIS_OUTAGE, `fallback.RedisHealth`): `wait` ends
  the bind retryable without a CAMS call (a webhook waits to its deadline, then 503); `local`
  binds on this instance's memory. Logged WARNING once per outage, with the code.
- **reload**: `NOSCRIPT` (a `SCRIPT FLUSH`, a failover to a node without the script). The call
  is made once more and the retry loads the script (redis-py's Script reloads a plain call by
  itself; a pipeline's load_scripts only before it runs). Twice in a row: refused.
- **refused**: Redis is there and said no: `OOM` (full, noeviction), `WRONGTYPE` (a foreign
  key at one of our names), a script error (`ERR`), `NOAUTH`, `WRONGPASS`, `NOPERM`, any other
  error reply, or a record that is not our JSON. Not an outage, in either ON_REDIS_OUTAGE
  mode: Redis still holds the records, so nothing binds on memory. A claim or a quota
  decision refused ends the bind retryable (SharedStoreUnavailable) without a CAMS call; a
  completion refused is kept and replayed (never lost). Logged ERROR with the code, once a
  minute per code.

`retryable` says whether the same command may succeed without an operator (`away`, `OOM`:
memory frees as records expire; `NOSCRIPT`); a bind ends retryable whatever the kind, since a
retry succeeds once an operator fixes the rest. `message` is ours, never Redis's text or the
exception's (a connection error may name the URL).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, NamedTuple, TypeVar

T = TypeVar("T")
Kind = Literal["away", "reload", "refused"]

# Redis is switching roles or starting: the state passes by itself, like an outage.
AWAY_CODES = frozenset({"READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY"})
RETRYABLE_REFUSALS = frozenset({"OOM", "NOSCRIPT"})
_SAID: dict[str, str] = {
    "READONLY": "Redis is a read-only replica (a failover under way)",
    "LOADING": "Redis is loading its data set",
    "MASTERDOWN": "the replica lost its primary",
    "TRYAGAIN": "the cluster is moving the key",
    "CLUSTERDOWN": "the cluster is down",
    "BUSY": "Redis is busy running a script",
    "NOSCRIPT": "Redis does not know the script (flushed)",
    "OOM": "Redis is out of memory (maxmemory, noeviction): it refuses writes",
    "WRONGTYPE": "a key of ours holds another kind of value",
    "ERR": "Redis refused the command or the script failed",
    "NOAUTH": "Redis asks for a password REDIS_URL does not give",
    "WRONGPASS": "Redis refused the user or password in REDIS_URL",
    "NOPERM": "the Redis user in REDIS_URL may not run this command",
}
# redis-py's exception classes for error replies it cuts the code from (redis/_parsers/base.py)
_CLASS_CODES: tuple[tuple[str, str], ...] = (
    ("ReadOnlyError", "READONLY"),
    ("BusyLoadingError", "LOADING"),
    ("MasterDownError", "MASTERDOWN"),
    ("ClusterDownError", "CLUSTERDOWN"),
    ("TryAgainError", "TRYAGAIN"),
    ("NoScriptError", "NOSCRIPT"),
    ("OutOfMemoryError", "OOM"),
    ("NoPermissionError", "NOPERM"),
)
# Patterns, compiled (and cached by `re`) at the first error reply, not at every cold start.
_CODE = r"[A-Z][A-Z_]+"
# Redis < 7 wraps an error inside a script: "ERR Error running script (…): @user_script:1: OOM …"
_INNER = r"user_script:\d+: ([A-Z][A-Z_]+) "


class RedisProblem(NamedTuple):
    """Why a Redis call gave no answer to use: an error value (see the module's table).
    Immutable, compared by value: a NamedTuple, because a frozen dataclass execs six generated
    methods at import (~1 ms of every cold start, Redis or not)."""

    kind: Kind
    code: str | None  # Redis's error code; None when Redis gave no answer
    error: str  # the exception's type, for the log
    message: str
    retryable: bool

    @property
    def away(self) -> bool:
        return self.kind == "away"


def classify(exc: BaseException) -> RedisProblem:
    """The one reading of a failed Redis call (or of a record that is not ours to read)."""
    import redis.exceptions as rx

    error = type(exc).__name__
    if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError):
        return _refused(_auth_code(str(exc)), error)
    if isinstance(exc, rx.ResponseError):
        code = _reply_code(exc)
        if code in AWAY_CODES:
            return RedisProblem("away", code, error, _SAID[code], True)
        if code == "NOSCRIPT":
            return RedisProblem("reload", code, error, _SAID[code], True)
        return _refused(code, error)
    if isinstance(exc, rx.BusyLoadingError):  # a ConnectionError in redis-py, but an answer
        return RedisProblem("away", "LOADING", error, _SAID["LOADING"], True)
    if isinstance(exc, rx.ConnectionError | rx.TimeoutError | rx.InvalidResponse | OSError):
        return RedisProblem("away", None, error, "Redis does not answer", True)
    if isinstance(exc, ValueError | KeyError | TypeError) and not isinstance(exc, rx.RedisError):
        return RedisProblem("refused", None, error, "a Redis record is not ours to read", False)
    return RedisProblem("refused", None, error, "a Redis call failed unexpectedly", False)


def call(fn: Callable[[], T]) -> T | RedisProblem:
    """`fn()`'s answer, or its problem. NOSCRIPT is tried once more (the retry loads the
    script); a second NOSCRIPT is refused."""
    answer = _attempt(fn)
    if not isinstance(answer, RedisProblem) or answer.kind != "reload":
        return answer
    again = _attempt(fn)
    if isinstance(again, RedisProblem) and again.kind == "reload":
        return RedisProblem("refused", again.code, again.error, "NOSCRIPT after a reload", False)
    return again


def _attempt(fn: Callable[[], T]) -> T | RedisProblem:
    try:
        return fn()
    except Exception as exc:  # classified: the caller acts on the kind
        return classify(exc)


def _reply_code(exc: BaseException) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    for name, code in _CLASS_CODES:
        if name in names:
            return code
    text = str(exc)
    inner = re.search(_INNER, text)
    if inner:
        return inner.group(1)
    first = text.split(" ", 1)[0]
    return first if re.fullmatch(_CODE, first) else "ERR"  # redis-py cuts a plain "ERR " off


def _auth_code(text: str) -> str:
    if text.startswith("Authentication required"):
        return "NOAUTH"
    return "WRONGPASS" if "invalid" in text or "WRONGPASS" in text else "ERR"


def _refused(code: str, error: str) -> RedisProblem:
    said = _SAID.get(code, "Redis refused the command")
    return RedisProblem("refused", code, error, said, code in RETRYABLE_REFUSALS)
