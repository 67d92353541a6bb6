"""The log sink: one JSON line per outcome on stdout, which FC's logConfig ships to SLS."""

from __future__ import annotations

import json
import sys
import threading

from wababind.credentials import Credentials
from wababind.outcome import Outcome

UNDELIVERED_KIND = "WabaBindOutcomeUndelivered"
_write_lock = threading.Lock()


def write_line(line: str) -> None:
    """Whole lines only: batches are bound from many threads at once."""
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class LogSink:
    name = "log"

    def send(
        self, outcome: Outcome, credentials: Credentials | None, deadline: float | None = None
    ) -> None:
        write_line(outcome.to_json())


def log_undelivered(outcome: Outcome, sink: str, reason: str) -> None:
    """A sink failed: the outcome still reaches the log, with why (a Kind of its own)."""
    record = {
        "Kind": UNDELIVERED_KIND,
        "Sink": sink,
        "Reason": reason,
        "Outcome": outcome.to_record(),
    }
    write_line(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
