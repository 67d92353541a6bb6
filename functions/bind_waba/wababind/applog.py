"""Application log lines: JSON on stderr with `Kind: AppLog`, never mixed up with outcomes.

Outcome records go to stdout with `Kind: WabaBindOutcome`; a log query tells them apart by
`Kind` (and FC keeps the two streams apart too). Callers pass facts as fields, never secrets.
Every line carries the context its caller runs in: the FC request id (`FcRequestId`) and the
WabaId being bound, where there is one (`Scope`).
"""

from __future__ import annotations

import json
import sys
import threading
from contextlib import suppress
from datetime import datetime, timezone
from types import TracebackType

KIND = "AppLog"
_lock = threading.Lock()
# Per thread: a ThreadPoolExecutor worker starts with nothing of its submitter's, so a task that
# logs opens its own `Scope` (batch.py does, per message). A thread-local, not a ContextVar: no
# asyncio here, and `contextvars` would be one more import at cold start.
_local = threading.local()
_RAISED_IN = "_wababind_log_context"


def _fields() -> tuple[tuple[str, str], ...]:
    return getattr(_local, "fields", ())


class Scope:
    """`with applog.Scope(FcRequestId=..., WabaId=...):` every line logged inside, on this
    thread, carries these fields. Two attribute writes: cheap enough for every request."""

    __slots__ = ("_fields", "_outer")

    def __init__(self, **fields: str | None) -> None:
        self._fields = tuple((k, v) for k, v in fields.items() if v)
        self._outer: tuple[tuple[str, str], ...] = ()

    def __enter__(self) -> Scope:
        self._outer = _fields()
        _local.fields = self._outer + self._fields
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not hasattr(exc, _RAISED_IN):
            # the innermost scope it left: `unexpected` logs it with the WabaId it broke
            with suppress(AttributeError):
                setattr(exc, _RAISED_IN, _fields())
        _local.fields = self._outer


def log(level: str, message: str, **fields: object) -> None:
    """One JSON line: Kind, Level, Message, Time, the scope's fields, then the given fields."""
    record: dict[str, object] = {
        "Kind": KIND,
        "Level": level,
        "Message": message,
        "Time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
    record.update(_fields())
    for name, value in fields.items():
        record[name] = (
            value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        )
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    with _lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def unexpected(message: str, exc: BaseException) -> None:
    """One ERROR line for an exception no step expected: its type and the module and line that
    raised it, never its message (which may quote a secret: a URL, a token) nor a trace."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_globals.get('__name__', '?')}:{tb.tb_lineno}" if tb else "?"
    outer = _fields()
    _local.fields = getattr(exc, _RAISED_IN, outer)
    try:
        log("ERROR", message, Error=type(exc).__name__, At=where)
    finally:
        _local.fields = outer
