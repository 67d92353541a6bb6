"""Outcome records on the operator's side: the resumable outcome file and local outcomes."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from wababind_local.cli.rows import Row


def is_final(record: dict[str, Any]) -> bool:
    """Bound, duplicate or failed for good: a resume does not send the row again."""
    status = record.get("Status")
    return status in ("bound", "duplicate") or (status == "failed" and not record.get("Retryable"))


def local_outcome(row: Row, code: str, message: str, retryable: bool) -> dict[str, Any]:
    """An outcome record for a row the function gave none for (bad row, or still failing)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    request = row.request or {}
    return {
        "Kind": "WabaBindOutcome",
        "EventId": None,
        "Source": "direct",
        "WabaId": request.get("WabaId"),
        "Reference": request.get("Reference"),
        "Status": "failed",
        "CustSpaceId": None,
        "Code": code,
        "Message": message,
        "RequestId": None,
        "AccessDeniedDetail": None,
        "Retryable": retryable,
        "Attempts": 0,
        "StartedAt": now,
        "FinishedAt": now,
        "DurationMs": 0,
        "QuotaWaitMs": 0.0,
        "Lane": "bulk",  # only `wababind bulk` writes rows the function gave no outcome for
        "Ambiguous": False,
        "PhoneNumbers": None,
        "AfterBind": None,
    }


class OutcomeFile:
    """Append-only JSON Lines, one `{"Row": key, ...outcome}` per line, flushed per line."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.done = self._compact()
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def _compact(self) -> dict[str, dict[str, Any]]:
        """The final outcomes already written; the file is rewritten to hold only those."""
        if not self.path.exists():
            return {}
        latest: dict[str, dict[str, Any]] = {}
        lines = 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            lines += 1
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interruption
            if isinstance(record, dict) and isinstance(record.get("Row"), str):
                latest.pop(record["Row"], None)
                latest[record["Row"]] = record
        done = {key: r for key, r in latest.items() if is_final(r)}
        if len(done) != lines:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(_line(r) for r in done.values()), encoding="utf-8")
            os.replace(tmp, self.path)
        return done

    def write(self, row: Row, record: dict[str, Any]) -> dict[str, Any]:
        line = {"Row": row.key, **record}
        with self.lock:
            self._file.write(_line(line))
            self._file.flush()
        return line

    def close(self) -> None:
        with self.lock:
            self._file.close()


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
