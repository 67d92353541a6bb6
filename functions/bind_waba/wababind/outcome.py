"""The outcome record: exactly one per bind request, on every path."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

Status = Literal["bound", "duplicate", "failed"]
Source = Literal["http", "rocketmq", "mns", "kafka", "direct"]
Lane = Literal["interactive", "bulk"]  # which side of the shared quota a request waits on

RECORD_KIND = "WabaBindOutcome"
# Built once, not per line; the record holds no cycles (PhoneNumbers and AfterBind are fresh).
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime) -> str:
    if ts.tzinfo is not timezone.utc:  # utcnow's are; others are converted first
        ts = ts.astimezone(timezone.utc)
    # isoformat(timespec="milliseconds") with the "+00:00" as "Z", at about half its CPU
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - % is the fastest here
        ts.year,
        ts.month,
        ts.day,
        ts.hour,
        ts.minute,
        ts.second,
        ts.microsecond // 1000,
    )


@dataclass(repr=False, eq=False)  # one outcome per request: identity, not value
class Outcome:
    """What happened to one bind request. `callback_url` routes it; it is not part of the record."""

    event_id: str
    source: Source
    waba_id: str | None
    reference: str | None
    status: Status
    code: str
    message: str
    retryable: bool = False
    attempts: int = 0
    cust_space_id: str | None = None
    request_id: str | None = None
    access_denied_detail: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime = field(default_factory=utcnow)
    quota_wait_ms: float = 0.0  # waiting for quota slots, all attempts together
    lane: Lane = "bulk"
    ambiguous: bool = False  # a call's answer never came and no later call settled it: may be bound
    callback_url: str | None = None
    # AFTER_BIND (wababind.after_bind): the numbers when synced, each step's {Code, Retryable}
    phone_numbers: list[dict[str, str | None]] | None = None
    after_bind: dict[str, dict[str, Any]] | None = None
    _json: str | None = field(default=None, init=False, repr=False, compare=False)

    def steps_due(self) -> bool:
        """Bound (or duplicate) with an AFTER_BIND step that failed retryably: the next
        delivery runs it (wababind.after_bind)."""
        return self.status != "failed" and any(
            step.get("Retryable") and step.get("Code") != "OK"
            for step in (self.after_bind or {}).values()
        )

    def to_record(self) -> dict[str, Any]:
        """The record as SPEC.md names it; every field is present, null when it does not apply."""
        return {
            "Kind": RECORD_KIND,
            "EventId": self.event_id,
            "Source": self.source,
            "WabaId": self.waba_id,
            "Reference": self.reference,
            "Status": self.status,
            "CustSpaceId": self.cust_space_id,
            "Code": self.code,
            "Message": self.message,
            "RequestId": self.request_id,
            "AccessDeniedDetail": self.access_denied_detail,
            "Retryable": self.retryable,
            "Attempts": self.attempts,
            "StartedAt": iso(self.started_at),
            "FinishedAt": iso(self.finished_at),
            "DurationMs": round((self.finished_at - self.started_at).total_seconds() * 1000, 3),
            "QuotaWaitMs": round(self.quota_wait_ms, 3),
            "Lane": self.lane,
            "Ambiguous": self.ambiguous,
            "PhoneNumbers": self.phone_numbers,
            "AfterBind": self.after_bind,
        }

    def to_json(self) -> str:
        """The record as one JSON line, made once: an outcome is final when the binder hands it
        over, and the log sink and the webhook's answer both send this same text."""
        if self._json is None:
            self._json = _ENCODER.encode(self.to_record())
        return self._json
