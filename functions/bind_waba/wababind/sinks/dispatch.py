"""Send each outcome to every configured sink; one slow or failing sink never holds back another."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wababind.credentials import Credentials
from wababind.outcome import Outcome
from wababind.sinks.base import TOO_LATE, Sink, SinkError
from wababind.sinks.log import log_undelivered

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor


class Delivery:
    """One outcome on its way to one network sink; settled once, by the sink or by the clock.
    A plain class: a dataclass would add ~0.3 ms of cold start and nothing else here."""

    __slots__ = ("_lock", "_settled", "future", "outcome", "sink")

    def __init__(self, outcome: Outcome, sink: str) -> None:
        self.outcome, self.sink = outcome, sink
        self.future: Future[None] | None = None
        self._settled = False
        self._lock = threading.Lock()

    def settle(self, undelivered: str | None = None) -> None:
        """The first caller settles it: delivered (None), or undelivered for that reason, whose
        line is written under the lock, so that once the handler's `settle` has passed every
        delivery, every line is on the log (FC may freeze the instance the moment it returns).
        """
        with self._lock:
            first, self._settled = not self._settled, True
            if first and undelivered is not None:
                log_undelivered(self.outcome, self.sink, undelivered)


class Dispatcher:
    """The log sink writes inline (it cannot block); network sinks run side by side in a pool."""

    def __init__(self, sinks: Sequence[Sink], workers: int = 16):
        self._inline = [s for s in sinks if s.name == "log"]
        self._remote = [s for s in sinks if s.name != "log"]
        self._pool: ThreadPoolExecutor | None = None
        if self._remote:
            # Only network sinks need the pool: with the log sink alone (the usual webhook
            # setup) the HTTP function never loads concurrent.futures (cold start).
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(workers, "sink")
        self._pending: set[Future[None]] = set()  # sends under way, across invocations
        self._pending_lock = threading.Lock()

    def deliver(
        self, outcome: Outcome, credentials: Credentials | None, deadline: float | None = None
    ) -> list[Delivery]:
        """Start delivery; the handler passes the result to `settle` before it returns."""
        for sink in self._inline:
            sink.send(outcome, credentials)
        if self._pool is None:
            return []
        deliveries = []
        for sink in self._remote:
            delivery = Delivery(outcome, sink.name)
            delivery.future = self._pool.submit(_send, sink, delivery, credentials, deadline)
            with self._pending_lock:
                self._pending.add(delivery.future)
            delivery.future.add_done_callback(self._done)
            deliveries.append(delivery)
        return deliveries

    def _done(self, future: Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def flush(self, timeout_s: float) -> int:
        """FC's preStop: give the sends still under way (those that outlived their invocation's
        deadline, already logged as undelivered) up to `timeout_s` to finish, then stop the
        pool. Returns how many were still under way at the end."""
        if self._pool is None:  # no network sink: nothing was ever under way
            return 0
        with self._pending_lock:
            pending = list(self._pending)
        from concurrent.futures import wait

        wait(pending, timeout=max(0.0, timeout_s))
        self._pool.shutdown(wait=False, cancel_futures=True)
        return sum(1 for future in pending if not future.done())

    @staticmethod
    def settle(deliveries: Sequence[Delivery], deadline: float) -> None:
        """Wait for the deliveries until `deadline` (FC freezes or kills us after it); whatever
        is still under way then goes to the log as undelivered, so no outcome is lost."""
        if not deliveries:  # the log sink alone: nothing to wait for (wait() costs a lock)
            return
        from concurrent.futures import wait  # loaded with the pool that made the deliveries

        futures = [d.future for d in deliveries if d.future is not None]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for delivery in deliveries:  # a sender still writing its own line is waited for
            if delivery.future is not None and not delivery.future.done():
                delivery.settle(TOO_LATE)


def _send(
    sink: Sink, delivery: Delivery, credentials: Credentials | None, deadline: float | None
) -> None:
    try:
        sink.send(delivery.outcome, credentials, deadline)
    except SinkError as exc:
        delivery.settle(exc.reason)
        return
    except Exception as exc:  # a sink bug must not lose the outcome
        delivery.settle(f"unexpected {type(exc).__name__}")
        return
    delivery.settle()
