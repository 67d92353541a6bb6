"""Input rows for bulk: CSV with a header row, or JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wababind_local.cli.base import CliError

REQUEST_FIELDS = ("WabaId", "Reference", "CallbackUrl")


@dataclass(frozen=True)
class Row:
    """One input row: its key (line number + WabaId) is written into its outcome line."""

    key: str
    request: dict[str, Any] | None
    problem: str | None = None


def read_rows(path: Path) -> list[Row]:
    """CSV with a header row (WabaId[,Reference,CallbackUrl]) or JSON Lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    first = text.lstrip()[:1]
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or first == "{":
        return list(_jsonl_rows(text))
    return list(_csv_rows(text))


def _pick(fields: dict[str, Any]) -> dict[str, Any]:
    by_lower = {str(k).strip().lower(): v for k, v in fields.items() if k is not None}
    picked: dict[str, Any] = {}
    for name in REQUEST_FIELDS:
        value = by_lower.get(name.lower())
        if isinstance(value, str):
            value = value.strip()
        if value not in (None, ""):
            picked[name] = value
    return picked


def _csv_rows(text: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text))
    if not any((f or "").strip().lower() == "wabaid" for f in reader.fieldnames or []):
        raise CliError("the CSV needs a header row with a WabaId column")
    for fields in reader:
        request = _pick(fields)
        if not any((v or "").strip() for v in fields.values() if isinstance(v, str)):
            continue
        yield Row(f"{reader.line_num}:{request.get('WabaId', '')}", request)


def _jsonl_rows(text: str) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            yield Row(f"{number}:", None, "the line is not a JSON object")
            continue
        request = _pick(doc)
        yield Row(f"{number}:{request.get('WabaId', '')}", request)
