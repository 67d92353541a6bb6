"""Application log lines: JSON on stderr with `Kind: AppLog`, never mixed up with outcomes.

Outcome records go to stdout with `Kind: WabaBindOutcome`; a log query tells them apart by
`Kind` (and FC keeps the two streams apart too). Callers pass facts as fields, never secrets.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone

KIND = "AppLog"
_lock = threading.Lock()


def log(level: str, message: str, **fields: object) -> None:
    """One JSON line: Kind, Level, Message, Time, then the given fields."""
    record: dict[str, object] = {
        "Kind": KIND,
        "Level": level,
        "Message": message,
        "Time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
    for name, value in fields.items():
        record[name] = (
            value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        )
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    with _lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
