"""Redelivery does not repeat terminal calls (issue 16, item 7).

The trigger redelivers a whole batch while any of its messages failed retryably, for up to a
day (EventBridge exponential decay retry). A message that failed for good keeps its outcome for
that long: each redelivery of it (the same event id) is answered from the FAILED record without
a CAMS call; a new request for the WabaId (a new event id: the operator fixed the WABA and sends
it again) calls CAMS again. On the in-process store (every delivery on one instance) and on a
real redis-server (every delivery on a fresh instance: only Redis is shared).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis

from index import mq_handler
from tests.fixtures.handlers import outcome_lines
from tests.test_duplicates import rocketmq
from wababind.binder import FAILURE_MEMORY_S, REDELIVERY_HORIZON_S
from wababind.errors import RetryableBatchError
from wababind.idempotency import (
    IdempotencyRecord,
    IdempotencyStore,
    RecordStatus,
)
from wababind.runtime import get_runtime, reset_runtime
from wababind_local.cams_simulator import DOCUMENTED_ERRORS, Fault

TERMINAL = "Product.Unsubscript"
REDELIVERIES = 5
FN_TIMEOUT = 3


class Trigger:
    """Delivers batches as EventBridge does; `shared` (Redis): each on a fresh instance."""

    def __init__(self, shared: bool, context: Any, capsys: pytest.CaptureFixture[str]):
        self.shared, self.context, self.capsys = shared, context, capsys

    def deliver(self, batch: list[dict[str, Any]]) -> tuple[bool, dict[str, dict[str, Any]]]:
        """(raised, outcome by EventId)."""
        if self.shared:
            reset_runtime()  # another instance; only Redis is shared
        self.capsys.readouterr()
        try:
            mq_handler(json.dumps(batch).encode(), self.context(timeout=FN_TIMEOUT))
            raised = False
        except RetryableBatchError:
            raised = True
        records = outcome_lines(self.capsys.readouterr().out)
        assert len(records) == len(batch), "an outcome was lost or doubled"
        return raised, {r["EventId"]: r for r in records}


@pytest.fixture(params=["memory", "redis"])
def trigger(
    request: pytest.FixtureRequest,
    wababind_env: Any,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> Trigger:
    shared = request.param == "redis"
    if shared:
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    monkeypatch.setenv("CAMS_TIMEOUT_S", "0.5")
    return Trigger(shared, context, capsys)


def terminal_fault() -> Fault:
    return Fault.error(TERMINAL, *DOCUMENTED_ERRORS[TERMINAL])


def test_the_memory_outlasts_the_triggers_redelivery_horizon() -> None:
    assert REDELIVERY_HORIZON_S == 86400  # s.yaml: MaximumEventAgeInSeconds
    assert FAILURE_MEMORY_S > REDELIVERY_HORIZON_S


def test_a_redelivered_batch_calls_cams_once_for_its_terminal_message(
    trigger: Trigger, wababind_env: Any
) -> None:
    sim = wababind_env
    sim.set_fault("3100000000000001", terminal_fault())
    sim.set_fault("3100000000000002", Fault.http_status(503))  # retryable all along
    batch = [rocketmq("ev-terminal", "3100000000000001"), rocketmq("ev-retry", "3100000000000002")]
    for delivery in range(1 + REDELIVERIES):
        raised, outcomes = trigger.deliver(batch)
        assert raised, "the retryable message makes the trigger redeliver"
        terminal = outcomes["ev-terminal"]
        assert (terminal["Status"], terminal["Code"], terminal["Retryable"]) == (
            "failed",
            TERMINAL,
            False,
        )
        assert terminal["Attempts"] == (1 if delivery == 0 else 0), terminal
        assert outcomes["ev-retry"]["Retryable"] is True
    assert sim.count(waba_id="3100000000000001") == 1
    assert sim.count(waba_id="3100000000000002") > REDELIVERIES  # it was tried every time


def test_a_new_request_for_the_waba_id_calls_again_and_both_are_remembered(
    trigger: Trigger, wababind_env: Any
) -> None:
    sim, waba_id = wababind_env, "3100000000000003"
    sim.set_fault(waba_id, terminal_fault())
    first = [rocketmq("ev-first", waba_id)]
    assert trigger.deliver(first)[1]["ev-first"]["Attempts"] == 1
    assert trigger.deliver(first)[1]["ev-first"]["Attempts"] == 0
    assert sim.count(waba_id=waba_id) == 1

    # the operator fixed nothing yet and sends it again: a new event id, a new call
    _, outcomes = trigger.deliver([rocketmq("ev-again", waba_id)])
    assert (outcomes["ev-again"]["Code"], outcomes["ev-again"]["Attempts"]) == (TERMINAL, 1)
    assert sim.count(waba_id=waba_id) == 2
    both = [rocketmq("ev-first", waba_id), rocketmq("ev-again", waba_id)]
    for _ in range(REDELIVERIES):
        _, outcomes = trigger.deliver(both)
        assert {r["Attempts"] for r in outcomes.values()} == {0}
        assert {r["Code"] for r in outcomes.values()} == {TERMINAL}
    assert sim.count(waba_id=waba_id) == 2

    # now fixed: the next new request binds, and a redelivery of an old one is a duplicate
    sim.set_fault(waba_id, None)
    _, outcomes = trigger.deliver([rocketmq("ev-fixed", waba_id)])
    assert outcomes["ev-fixed"]["Status"] == "bound"
    _, outcomes = trigger.deliver([rocketmq("ev-first", waba_id)])
    assert outcomes["ev-first"]["Status"] == "duplicate"
    assert sim.count(waba_id=waba_id) == 3


def test_copies_of_a_waba_id_in_one_batch_call_once_each_however_often_redelivered(
    trigger: Trigger, wababind_env: Any
) -> None:
    sim, waba_id = wababind_env, "3100000000000004"
    sim.set_fault(waba_id, terminal_fault())
    sim.set_fault("3100000000000005", Fault.http_status(503))
    batch = [
        rocketmq("ev-copy-1", waba_id),
        rocketmq("ev-copy-2", waba_id),
        rocketmq("ev-copy-3", waba_id),
        rocketmq("ev-keeps-failing", "3100000000000005"),
    ]
    for _ in range(1 + REDELIVERIES):
        raised, outcomes = trigger.deliver(batch)
        assert raised
        copies = [outcomes[f"ev-copy-{i}"] for i in (1, 2, 3)]
        assert all(r["Code"] in (TERMINAL, "BindInProgress") for r in copies), copies
    attempts = sum(
        r["Attempts"] for r in trigger.deliver(batch)[1].values() if r["WabaId"] == waba_id
    )
    assert attempts == 0
    assert sim.count(waba_id=waba_id) == 3  # one per event id, none per redelivery


def test_a_new_request_that_fails_retryably_leaves_the_earlier_failure_remembered(
    trigger: Trigger, wababind_env: Any
) -> None:
    sim, waba_id = wababind_env, "3100000000000006"
    sim.set_fault(waba_id, terminal_fault())
    assert trigger.deliver([rocketmq("ev-old", waba_id)])[1]["ev-old"]["Attempts"] == 1
    sim.set_fault(waba_id, Fault.http_status(503))  # CAMS is down when the new one comes
    raised, outcomes = trigger.deliver([rocketmq("ev-new", waba_id)])
    assert raised and outcomes["ev-new"]["Retryable"] is True
    calls = sim.count(waba_id=waba_id)
    assert calls >= 2
    _, outcomes = trigger.deliver([rocketmq("ev-old", waba_id)])
    assert (outcomes["ev-old"]["Code"], outcomes["ev-old"]["Attempts"]) == (TERMINAL, 0)
    assert sim.count(waba_id=waba_id) == calls


# ---- records an older version wrote (no event ids): read, answering every request ----------

OLD_FAILED = {  # the FAILED record as the version before event ids wrote it
    "key": "3100000000000007",
    "status": "FAILED",
    "owner": "req-old/0123456789ab",
    "cust_space_id": None,
    "request_id": None,
    "code": TERMINAL,
    "message": "not subscribed",
}


def test_an_old_record_without_event_ids_reads_and_answers_every_request() -> None:
    record = IdempotencyRecord.from_json(json.dumps(OLD_FAILED))
    assert (record.status, record.code, record.event_ids) == (RecordStatus.FAILED, TERMINAL, ())
    assert record.answers("any-event") and record.answers("another-event")
    new = record._replace(event_ids=("ev-1",))
    assert IdempotencyRecord.from_json(new.to_json()) == new
    assert new.answers("ev-1") and not new.answers("ev-2")


def test_an_old_failed_record_on_redis_still_answers_as_it_did(
    wababind_env: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, context: Any, capsys: Any
) -> None:
    """During a rolling deploy Redis holds what the old version wrote (for its 60 s)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    client.set("wababind:idem:" + OLD_FAILED["key"], json.dumps(OLD_FAILED), px=60_000)
    client.close()
    trigger = Trigger(True, context, capsys)
    _, outcomes = trigger.deliver([rocketmq("ev-after-deploy", OLD_FAILED["key"])])
    assert (outcomes["ev-after-deploy"]["Code"], outcomes["ev-after-deploy"]["Attempts"]) == (
        TERMINAL,
        0,
    )
    assert wababind_env.count(waba_id=OLD_FAILED["key"]) == 0


def test_an_old_failed_record_in_memory_still_answers_as_it_did(
    wababind_env: Any, context: Any, capsys: Any
) -> None:
    store = get_runtime().store
    assert store.claim(OLD_FAILED["key"], "old", 30) is None
    store.fail(OLD_FAILED["key"], "old", code=TERMINAL, message="old", ttl_s=60)  # no event ids
    _, outcomes = Trigger(False, context, capsys).deliver([rocketmq("ev-x", OLD_FAILED["key"])])
    assert (outcomes["ev-x"]["Code"], outcomes["ev-x"]["Attempts"]) == (TERMINAL, 0)
    assert wababind_env.count(waba_id=OLD_FAILED["key"]) == 0


def test_the_failed_record_on_redis_carries_the_event_ids(
    wababind_env: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, context: Any, capsys: Any
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    waba_id = "3100000000000008"
    wababind_env.set_fault(waba_id, terminal_fault())
    Trigger(True, context, capsys).deliver([rocketmq("ev-carried", waba_id)])
    client = redis.Redis.from_url(redis_url)
    raw, ttl_ms = client.get("wababind:idem:" + waba_id), client.pttl("wababind:idem:" + waba_id)
    client.close()
    doc = json.loads(raw)
    assert (doc["status"], doc["code"], doc["event_ids"]) == ("FAILED", TERMINAL, ["ev-carried"])
    assert REDELIVERY_HORIZON_S * 1000 < ttl_ms <= FAILURE_MEMORY_S * 1000


# ---- the store's take-over, on its own ------------------------------------------------------


def test_take_over_replaces_only_the_failure_it_saw(store: IdempotencyStore) -> None:
    assert store.claim("w1", "a", 30) is None
    store.fail("w1", "a", code="X", message="no", ttl_s=60, event_ids=("ev-a",))
    failed = store.get("w1")
    assert failed is not None and failed.event_ids == ("ev-a",)
    assert store.take_over("w1", "b", failed, 30)
    assert store.get("w1").owner == "b"  # type: ignore[union-attr]
    assert not store.take_over("w1", "c", failed, 30), "b's claim is not a failure to replace"
    store.fail("w1", "b", code="X", message="no", ttl_s=60, event_ids=("ev-a", "ev-b"))
    assert store.get("w1").event_ids == ("ev-a", "ev-b")  # type: ignore[union-attr]
    assert not store.take_over("w1", "c", failed, 30), "a newer failure is not the one seen"


def test_concurrent_take_overs_have_exactly_one_winner(store: IdempotencyStore) -> None:
    assert store.claim("w1", "a", 30) is None
    store.fail("w1", "a", code="X", message="no", ttl_s=60, event_ids=("ev-a",))
    failed = store.get("w1")
    assert failed is not None
    winners: list[int] = []
    barrier = threading.Barrier(20)

    def worker(i: int) -> None:
        barrier.wait(10)
        if store.take_over("w1", f"o{i}", failed, 30):
            winners.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1
