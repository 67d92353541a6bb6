"""QuotaWaitMs and Lane: on every outcome record, on every path, validation failures included."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from index import http_handler, mq_handler
from tests.fixtures.handlers import OUTCOME_FIELDS, outcome_lines, signed_event
from wababind.ratelimit import Decision, Lane, RateLimiter
from wababind.runtime import get_runtime
from wababind_local.cams_simulator import Fault
from wababind_local.cli import Row, local_outcome

EVENTS = Path(__file__).resolve().parent.parent / "events"


@dataclass(frozen=True)
class Case:
    name: str
    function: str  # "http" or "mq"
    payload: Any
    lane: str
    waits: bool  # the record went through the limiter (QuotaWaitMs may be > 0)


PATHS = [
    Case("webhook bound", "http", {"WabaId": "6100000000000001"}, "interactive", True),
    Case("single direct object", "mq", {"WabaId": "6100000000000002"}, "interactive", True),
    Case("single invalid object", "mq", {"WabaId": "x"}, "interactive", False),
    Case("array of direct requests", "mq", [{"WabaId": "6100000000000003"}], "bulk", True),
    Case("invalid element in an array", "mq", [{"WabaId": "y"}], "bulk", False),
    Case(
        "single queue event object",
        "mq",
        (EVENTS / "rocketmq-event.json").read_bytes(),
        "bulk",
        True,
    ),
    Case(
        "undecodable queue body",
        "mq",
        (EVENTS / "mns-queue-invalid-body.json").read_bytes(),
        "bulk",
        False,
    ),
]


def records_of(case: Case, context: Any, capsys: Any) -> list[dict[str, Any]]:
    if case.function == "http":
        http_handler(signed_event(case.payload), context())
    else:
        raw = case.payload if isinstance(case.payload, bytes) else json.dumps(case.payload)
        mq_handler(raw if isinstance(raw, bytes) else raw.encode(), context())
    return outcome_lines(capsys.readouterr().out)


@pytest.mark.parametrize("case", PATHS, ids=[p.name for p in PATHS])
def test_every_record_has_a_lane_and_a_quota_wait(case, wababind_env, context, capsys):
    records = records_of(case, context, capsys)
    assert records
    for record in records:
        assert record["Lane"] == case.lane
        assert isinstance(record["QuotaWaitMs"], float) and record["QuotaWaitMs"] >= 0
        assert record["QuotaWaitMs"] <= record["DurationMs"]
        if not case.waits:
            assert (record["Status"], record["Attempts"], record["QuotaWaitMs"]) == ("failed", 0, 0)


def test_a_duplicate_waits_for_no_slot(wababind_env, context, capsys):
    for _ in range(2):
        http_handler(signed_event({"WabaId": "6100000000000009"}), context())
    first, second = outcome_lines(capsys.readouterr().out)
    assert second["Status"] == "duplicate" and second["QuotaWaitMs"] == 0
    assert (first["Lane"], second["Lane"]) == ("interactive", "interactive")


class Recording(RateLimiter):
    """The instance's limiter, remembering how long each decision made the caller wait."""

    def __init__(self, inner: RateLimiter):
        super().__init__()
        self.inner, self.waits = inner, []  # type: ignore[var-annotated]

    def decide(self, lane: Lane, ticket: float, deadline: float) -> Decision | None:
        decision = self.inner.decide(lane, ticket, deadline)
        if decision is not None:
            self.waits.append(decision.wait_s)
        return decision

    def throttled(self) -> None:
        self.inner.throttled()


def test_quota_wait_adds_up_the_slots_of_all_attempts(wababind_env, context, capsys, monkeypatch):
    monkeypatch.setenv("CAMS_QPS", "5")
    binder = get_runtime().binder
    recording = Recording(binder._limiter)
    monkeypatch.setattr(binder, "_limiter", recording)
    for _ in range(3):  # book the next slots, so the bind's first one lies ahead
        assert recording.inner.decide("interactive", 0, float("inf")) is not None
    wababind_env.set_fault("6100000000000010", Fault.error("System.LimitControl", 400, "x", 1))
    http_handler(signed_event({"WabaId": "6100000000000010"}), context())
    (record,) = outcome_lines(capsys.readouterr().out)
    assert record["Status"] == "bound" and record["Attempts"] == 2
    assert len(recording.waits) >= 2 and recording.waits[0] > 0
    # each decision's wait is a lower bound of the sleep it caused (on the limiter's own clock)
    assert record["QuotaWaitMs"] >= sum(recording.waits) * 1000
    assert record["QuotaWaitMs"] <= record["DurationMs"]


def test_a_row_the_cli_writes_itself_has_every_field_in_the_bulk_lane():
    row = Row("3:", None, "the line is not a JSON object")
    record = local_outcome(row, "InvalidRow", row.problem or "", False)
    assert set(record) == OUTCOME_FIELDS
    assert (record["Lane"], record["QuotaWaitMs"], record["Attempts"]) == ("bulk", 0, 0)
