"""Send each outcome to every configured sink; one slow or failing sink never holds back another."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from wababind.credentials import Credentials
from wababind.outcome import Outcome
from wababind.sinks.base import Sink, SinkError
from wababind.sinks.log import log_undelivered


class Dispatcher:
    """The log sink writes inline (it cannot block); network sinks run side by side in a pool."""

    def __init__(self, sinks: Sequence[Sink], workers: int = 16):
        self._inline = [s for s in sinks if s.name == "log"]
        self._remote = [s for s in sinks if s.name != "log"]
        self._pool = ThreadPoolExecutor(workers, "sink") if self._remote else None

    def deliver(self, outcome: Outcome, credentials: Credentials | None) -> list[Future[None]]:
        """Start delivery; the caller waits on the futures before the invocation returns."""
        for sink in self._inline:
            sink.send(outcome, credentials)
        if self._pool is None:
            return []
        return [self._pool.submit(_send, s, outcome, credentials) for s in self._remote]


def _send(sink: Sink, outcome: Outcome, credentials: Credentials | None) -> None:
    try:
        sink.send(outcome, credentials)
    except SinkError as exc:
        log_undelivered(outcome, sink.name, exc.reason)
    except Exception as exc:  # a sink bug must not lose the outcome
        log_undelivered(outcome, sink.name, f"unexpected {type(exc).__name__}")
