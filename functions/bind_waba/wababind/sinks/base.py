"""The interface every outcome sink implements."""

from __future__ import annotations

from typing import Protocol

from wababind.credentials import Credentials
from wababind.outcome import Outcome

TOO_LATE = "not delivered before the function timeout"


class SinkError(Exception):
    """A sink could not deliver an outcome; `reason` is safe to log (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sink(Protocol):
    name: str

    def send(
        self, outcome: Outcome, credentials: Credentials | None, deadline: float | None = None
    ) -> None:
        """Deliver one outcome, or raise SinkError; give up by `deadline` (monotonic), if given."""
        ...
