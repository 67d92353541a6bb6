"""When Redis fails: use the in-process fallback for a while, say so once, say when it's back."""

from __future__ import annotations

import threading
import time

from wababind import applog

RETRY_AFTER_S = 5.0  # after a Redis error, stay on the fallback this long before trying again


class RedisFallback:
    """Tracks one component's Redis health; never raises, logs each change of state once."""

    def __init__(self, component: str, degraded: str, recovered: str):
        self._component = component
        self._degraded_message = degraded
        self._recovered_message = recovered
        self._lock = threading.Lock()
        self._until: float | None = None
        self.retry_after_s = RETRY_AFTER_S

    @property
    def degraded(self) -> bool:
        return self._until is not None

    def active(self) -> bool:
        """True while Redis should not be tried (the pause after a failure)."""
        with self._lock:
            return self._until is not None and time.monotonic() < self._until

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self._until is None
            self._until = time.monotonic() + self.retry_after_s
        if first:
            applog.log(
                "WARNING",
                self._degraded_message,
                Component=self._component,
                Error=type(exc).__name__,
            )

    def succeeded(self) -> None:
        with self._lock:
            if self._until is None:
                return
            self._until = None
        applog.log("INFO", self._recovered_message, Component=self._component)
