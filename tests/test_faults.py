"""Fault suite: CAMS 5xx and throttling storms, dropped connections, answers slower than the
deadline, Redis paused (the 1,050-message run: mid-batch, and frozen between two deliveries to
one instance while it closes that instance's idle connections) and stopped and restarted
mid-batch, a callback receiver that hangs.

Every batch is redelivered until it settles (the trigger's behaviour when the handler raises),
often on a fresh instance, and checked on every delivery: each message gets exactly one outcome,
every failure that may succeed later says `Retryable: true` and makes the handler raise, and in
the end every message is bound (once) or failed for good. A message that failed for good is
called once for its event id, however often its batch is redelivered; another message for the
same WabaId (a new event id) is called once more.

A "double bind" is a second OK answer from CAMS for a WabaId that wababind could have seen.
The simulator binds a `slow` call when it arrives and answers late, after the read timeout: that
call is ambiguous (its outcome says `Ambiguous: true`), and the next call for the WabaId is the
deliberate re-check the spec asks for, so those unanswered OK calls are counted apart and
excluded. No call is cut short by the deadline: one starts only with its whole read timeout left.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from index import mq_handler
from tests.fixtures.handlers import outcome_lines
from wababind.errors import RetryableBatchError
from wababind.runtime import get_runtime, reset_runtime
from wababind_local.cams_simulator import DOCUMENTED_ERRORS, QUOTA_CODE, CamsSimulator, Fault

REPO = Path(__file__).resolve().parent.parent
CHILD_PATH = os.pathsep.join(str(p) for p in (REPO / "functions/bind_waba", REPO / "local", REPO))
CALLBACK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
READ_TIMEOUT_S = "0.5"  # CAMS_TIMEOUT_S: a slow answer (1 s and more) is always abandoned
FN_TIMEOUT = 2  # FC function timeout of each delivery: 1 s of binding, 1 s of reserve
STORM_FN_TIMEOUT = 3  # the mixed storm: room for three backed-off retries inside one delivery
MAX_ROUNDS = 10
REDIS_PAUSE_S = 3.0  # Redis paused mid-batch: longer than one Redis call's 2-s give-up
REDIS_IDLE_S = 1  # redis-server `timeout` in the freeze batch: idle connections are closed
REDIS_FREEZE_S = 1.5  # Redis frozen between two deliveries: past REDIS_IDLE_S when it resumes
TERMINAL_CODES = (
    "Ram.PermissionDeny",
    "Product.Unsubscript",
    "Unknown.ResourceOwnerId",
    "ERR-OPERATION-MAAP-0060",
    "999999",
)


# ---- queue messages -------------------------------------------------------------------------


def queue_message(source: str, event_id: str, body: str) -> dict[str, Any]:
    """One EventBridge CloudEvent whose outcome EventId is `event_id` on every delivery."""
    envelope: dict[str, Any] = {"specversion": "1.0", "source": f"{source}-bind-waba"}
    if source == "rocketmq":
        data: dict[str, Any] = {
            "topic": "waba-bind",
            "systemProperties": {"UNIQ_KEY": event_id},
            "userProperties": {},
            "body": body,
        }
        return {**envelope, "id": f"ce-{event_id}", "type": "mq:Topic:SendMessage", "data": data}
    if source == "mns":
        data = {
            "requestId": f"req-{event_id}",
            "messageId": event_id,
            "messageBody": base64.b64encode(body.encode()).decode(),
        }
        return {**envelope, "id": f"ce-{event_id}", "type": "mns:Queue:SendMessage", "data": data}
    data = {"topic": "waba-bind", "partition": 0, "offset": 0, "key": "bind", "value": body}
    return {**envelope, "id": event_id, "type": "alikafka:Topic:Message", "data": data}


@dataclass
class Plan:
    """What one WabaId meets at CAMS and how it must end."""

    waba_id: str
    kind: str
    fault: Fault | None = None
    calls: int | None = None  # exact CAMS calls expected, when the fault makes it knowable
    abandoned: int = 0  # OK answers that came after wababind stopped waiting (slow faults)
    terminal: str | None = None  # the code it must fail with for good
    event_ids: set[str] = field(default_factory=set)  # the messages that carried it

    @property
    def storm(self) -> bool:
        """A fault on every call until the test says CAMS has recovered."""
        return self.kind == "storm"


@dataclass
class Message:
    event_id: str
    plan: Plan | None  # None: not a valid bind request
    body: str


def one_message_each(plans: list[Plan], prefix: str) -> list[Message]:
    messages = [
        Message(f"{prefix}-{i}", p, json.dumps({"WabaId": p.waba_id})) for i, p in enumerate(plans)
    ]
    for message in messages:
        assert message.plan is not None
        message.plan.event_ids.add(message.event_id)
    return messages


@dataclass
class Delivery:
    raised: bool
    summary: dict[str, Any] | None
    records: list[dict[str, Any]]
    applog: str = ""


@dataclass
class Ledger:
    """Every delivery of every batch, for the checks that span them."""

    sim: CamsSimulator
    deliveries: list[Delivery] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [r for d in self.deliveries for r in d.records]


def deliver(
    batch: list[dict[str, Any]], context: Any, capsys: pytest.CaptureFixture[str], timeout: int
) -> Delivery:
    capsys.readouterr()
    try:
        summary = json.loads(mq_handler(json.dumps(batch).encode(), context(timeout=timeout)))
        raised = False
    except RetryableBatchError:
        summary, raised = None, True
    captured = capsys.readouterr()
    return Delivery(raised, summary, outcome_lines(captured.out), captured.err)


def check_delivery(delivery: Delivery, messages: list[Message]) -> None:
    """One outcome per message; retryable means Retryable true, and then the handler raised."""
    assert Counter(r["EventId"] for r in delivery.records) == Counter(
        m.event_id for m in messages
    ), "an outcome was lost or doubled"
    terminal = {m.plan.terminal for m in messages if m.plan is not None and m.plan.terminal}
    retryable = []
    for record in delivery.records:
        if record["Status"] != "failed":
            assert record["CustSpaceId"] and record["Code"] == "OK", record
            continue
        final = record["Code"] in terminal or record["Code"] == "InvalidMessage"
        assert record["Retryable"] is not final, record
        if record["Retryable"]:
            retryable.append(record)
    assert delivery.raised == bool(retryable)
    if delivery.summary is not None:
        summary = delivery.summary
        assert summary["Total"] == len(messages) and summary["Retryable"] == 0
        assert summary["Bound"] + summary["Duplicate"] + summary["Failed"] == len(messages)


def settle(
    ledger: Ledger,
    messages: list[Message],
    batch: list[dict[str, Any]],
    context: Any,
    capsys: pytest.CaptureFixture[str],
    *,
    fresh_instances: bool = True,
    after_first: Callable[[], None] | None = None,
    timeout: int = FN_TIMEOUT,
) -> list[Delivery]:
    """Deliver until the handler stops raising, as the trigger would; bounded in rounds."""
    rounds: list[Delivery] = []
    for number in range(MAX_ROUNDS):
        if fresh_instances and number:
            reset_runtime()  # the redelivery lands on another instance; only Redis is shared
        delivery = deliver(batch, context, capsys, timeout)
        check_delivery(delivery, messages)
        rounds.append(delivery)
        ledger.deliveries.append(delivery)
        if number == 0 and after_first is not None:
            after_first()
        if not delivery.raised:
            return rounds
    pytest.fail(f"the batch still failed retryably after {MAX_ROUNDS} deliveries")


def clear_storms(sim: CamsSimulator, plans: list[Plan]) -> None:
    """CAMS recovers. Between deliveries nothing is calling, so every call so far is known."""
    for plan in plans:
        if plan.storm:
            assert plan.fault is not None
            if plan.fault.kind == "slow":
                plan.abandoned = sim.count(waba_id=plan.waba_id)
            sim.set_fault(plan.waba_id, None)


def trail(ledger: Ledger, waba_id: str) -> str:
    """What CAMS answered and what wababind reported for one WabaId, for a failure message."""
    calls = [f"{c.at:.3f} {c.code}" for c in ledger.sim.calls() if c.waba_id == waba_id]
    records = [
        f"{r['EventId']} {r['Status']} {r['Code']} attempts={r['Attempts']}"
        for r in ledger.records()
        if r["WabaId"] == waba_id
    ]
    return f"CAMS calls: {calls}; outcomes: {records}"


def check_final(ledger: Ledger, messages: list[Message], last: Delivery) -> None:
    """Bound once or failed for good, per message and per WabaId, on both sides of the wire."""
    sim = ledger.sim
    bound = sim.bound()
    final = {r["EventId"]: r for r in last.records}
    for message in messages:
        record = final[message.event_id]
        plan = message.plan
        if plan is None:
            assert (record["Status"], record["Code"]) == ("failed", "InvalidMessage"), record
        elif plan.terminal is not None:
            assert (record["Status"], record["Code"], record["Retryable"]) == (
                "failed",
                plan.terminal,
                False,
            ), record
        else:
            assert record["Status"] in ("bound", "duplicate"), record
            assert record["CustSpaceId"] == bound[plan.waba_id], record

    plans = {m.plan.waba_id: m.plan for m in messages if m.plan is not None}
    bound_outcomes = Counter(r["WabaId"] for r in ledger.records() if r["Status"] == "bound")
    for waba_id, plan in plans.items():
        ok_seen = sim.count(waba_id=waba_id, code="OK") - plan.abandoned
        calls = sim.count(waba_id=waba_id)
        if plan.terminal is not None:
            # one call per message (event id) that carried it, none for a redelivery
            assert (ok_seen, calls, bound_outcomes[waba_id]) == (0, len(plan.event_ids), 0), plan
            called = Counter(
                r["EventId"] for r in ledger.records() if r["WabaId"] == waba_id and r["Attempts"]
            )
            assert called == Counter(plan.event_ids), f"{plan}; {trail(ledger, waba_id)}"
            continue
        assert ok_seen == 1, f"bound {ok_seen} times: {plan}; {trail(ledger, waba_id)}"
        assert bound_outcomes[waba_id] == 1, f"{plan}; {trail(ledger, waba_id)}"
        if plan.calls is not None:
            assert calls == plan.calls, f"each retryable answer is retried: {plan}"


def check_redelivery_is_free(
    ledger: Ledger,
    messages: list[Message],
    batch: list[dict[str, Any]],
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The trigger delivers a settled batch once more: answers from memory, no CAMS call."""
    before = ledger.sim.count()
    reset_runtime()
    again = deliver(batch, context, capsys, FN_TIMEOUT)
    check_delivery(again, messages)
    ledger.deliveries.append(again)
    assert not again.raised
    for message, record in zip(messages, sorted_like(again.records, messages), strict=True):
        if message.plan is None:
            assert record["Code"] == "InvalidMessage"
        elif message.plan.terminal is not None:
            assert (record["Code"], record["Attempts"]) == (message.plan.terminal, 0)
        else:
            assert (record["Status"], record["Attempts"]) == ("duplicate", 0), record
    assert ledger.sim.count() == before


def sorted_like(records: list[dict[str, Any]], messages: list[Message]) -> list[dict[str, Any]]:
    by_id = {r["EventId"]: r for r in records}
    return [by_id[m.event_id] for m in messages]


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def faults_env(wababind_env: CamsSimulator, monkeypatch: pytest.MonkeyPatch) -> CamsSimulator:
    """The functions against the simulator without its quota (not the subject here)."""
    wababind_env.set_qps(None)
    monkeypatch.setenv("CAMS_QPS", "1000")
    monkeypatch.setenv("CAMS_TIMEOUT_S", READ_TIMEOUT_S)
    return wababind_env


@pytest.fixture
def shared_redis(faults_env: CamsSimulator, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REDIS_URL", redis_url)
    return redis_url


# ---- the mixed storm: over a thousand messages ---------------------------------------------

KIND_WEIGHTS = {
    "clean": 36,
    "5xx": 12,
    "throttled": 10,
    "dropped": 8,
    "slow": 6,
    "garbage": 4,
    "storm": 8,
    "terminal": 8,
}


def transient_fault(kind: str, rng: random.Random) -> Fault:
    if kind == "5xx":
        return rng.choice(
            [
                Fault.http_status(rng.choice([500, 502, 503, 504]), times=rng.randint(1, 3)),
                Fault.error("ServiceUnavailable", 503, "unavailable", times=rng.randint(1, 3)),
                Fault.error("InternalError", 500, "internal", times=rng.randint(1, 3)),
            ]
        )
    if kind == "throttled":
        code = rng.choice(["System.LimitControl", "Throttling.User", "Throttling.Api"])
        return Fault.error(code, *DOCUMENTED_ERRORS[code], times=rng.randint(1, 3))
    if kind == "dropped":
        return Fault.drop(times=rng.randint(1, 2))
    if kind == "slow":
        return Fault.slow(1.0, times=1)
    return Fault.garbage(times=rng.randint(1, 2))


def storm_fault(rng: random.Random) -> Fault:
    """A fault that outlasts the delivery: only a redelivery after CAMS recovers can bind."""
    return rng.choice(
        [
            Fault.http_status(503),
            Fault.drop(),
            Fault.slow(3.0),
            Fault.error("Throttling.User", *DOCUMENTED_ERRORS["Throttling.User"]),
        ]
    )


def make_plan(waba_id: str, rng: random.Random) -> Plan:
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    if kind == "clean":
        return Plan(waba_id, kind, calls=1)
    if kind == "storm":
        return Plan(waba_id, kind, storm_fault(rng))
    if kind == "terminal":
        if rng.random() < 0.2:
            fault = Fault.success_false("ERR-FB-001", "Graph API refused the WABA")
            return Plan(waba_id, kind, fault, calls=1, terminal="ERR-FB-001")
        code = rng.choice(TERMINAL_CODES)
        return Plan(waba_id, kind, Fault.error(code, *DOCUMENTED_ERRORS[code]), 1, terminal=code)
    fault = transient_fault(kind, rng)
    assert fault.times is not None
    return Plan(waba_id, kind, fault, fault.times + 1, 1 if kind == "slow" else 0)


def make_batch(
    number: int, size: int, rng: random.Random, earlier: list[Plan]
) -> tuple[list[Message], list[Plan]]:
    """`size` messages: mostly new WabaIds with planned faults, some repeats, some invalid."""
    messages: list[Message] = []
    new: list[Plan] = []
    for index in range(size):
        event_id = f"storm-{number}-{index}"
        roll = rng.random()
        if roll < 0.03:
            body = rng.choice(['{"WabaId":"12ab"}', "not json at all", '{"Reference":"no id"}'])
            messages.append(Message(event_id, None, body))
            continue
        if roll < 0.10 and (earlier or new):
            plan = rng.choice(earlier + new)  # the same WabaId again: this batch or an earlier one
        else:
            plan = make_plan(f"8{number:03d}{index:012d}", rng)
            new.append(plan)
        body = json.dumps({"WabaId": plan.waba_id, "Reference": event_id})
        messages.append(Message(event_id, plan, body))
        plan.event_ids.add(event_id)
    return messages, new


class RedisPause(threading.Thread):
    """Pauses Redis (SIGSTOP, as in a failover) for REDIS_PAUSE_S once CAMS has seen
    `after_calls` more calls, then resumes it; `paused_at` is the call count then."""

    def __init__(self, redis_server: Any, sim: CamsSimulator, after_calls: int):
        super().__init__(daemon=True)
        self.redis_server, self.sim = redis_server, sim
        self.target_count = sim.count() + after_calls
        self.paused_at: int | None = None

    def run(self) -> None:
        for _ in range(4000):  # bounded: 20 s for the batch to reach that many calls
            if self.sim.count() >= self.target_count:
                break
            time.sleep(0.005)
        self.redis_server.pause()
        self.paused_at = self.sim.count()
        time.sleep(REDIS_PAUSE_S)
        self.redis_server.resume()


def others(client: Any) -> int:
    """Client connections Redis holds besides `client`'s own. Each look opens a new connection:
    the test's own one idles through the freeze too, and Redis's idle sweep may close it at
    any moment after the resume (a `Connection reset by peer` that is not the instance's)."""
    client.connection_pool.disconnect()
    own = str(client.client_id())
    return sum(1 for c in client.client_list() if str(c["id"]) != own)


def freeze_between_deliveries(redis_server: Any, client: Any) -> None:
    """The freeze batch, between its first delivery and the redelivery to the same instance:
    Redis is frozen (SIGSTOP) past its idle `timeout`, and on resuming closes every connection
    the instance kept; the redelivery must reconnect, not see an outage or lose a write."""
    assert others(client) > 0, "the instance keeps no connection to Redis"
    redis_server.pause()
    time.sleep(REDIS_FREEZE_S)
    redis_server.resume()
    for _ in range(300):  # bounded: 3 s for Redis's idle sweep
        if others(client) == 0:
            return
        time.sleep(0.01)
    raise AssertionError("Redis did not close the instance's idle connections")


def test_a_mixed_fault_storm_over_a_thousand_messages_loses_nothing_and_binds_once(
    faults_env: CamsSimulator,
    redis_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Five batches of 210 messages with planned CAMS faults; in the middle of the third
    batch's first delivery Redis pauses for a few seconds; the fourth batch is redelivered to
    the same instance after Redis froze and closed its idle connections."""
    import redis

    sim = faults_env
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    rng = random.Random(20261125)
    ledger = Ledger(sim)
    earlier: list[Plan] = []
    sources = ["rocketmq", "mns", "kafka", "rocketmq", "mns"]
    total = 0
    for number, source in enumerate(sources):
        messages, new = make_batch(number, 210, rng, earlier)
        for plan in new:
            if plan.fault is not None:
                sim.set_fault(plan.waba_id, plan.fault)
        batch = [queue_message(source, m.event_id, m.body) for m in messages]
        recover = functools.partial(clear_storms, sim, new)
        frozen = number == 3
        if frozen:
            client.config_set("timeout", REDIS_IDLE_S)
            recover = functools.partial(
                lambda clear: (clear(), freeze_between_deliveries(redis_server, client)), recover
            )
        chaos = RedisPause(redis_server, sim, after_calls=40) if number == 2 else None
        if chaos is not None:
            chaos.start()
        try:
            rounds = settle(
                ledger,
                messages,
                batch,
                context,
                capsys,
                fresh_instances=not frozen,
                after_first=recover,
                timeout=STORM_FN_TIMEOUT,
            )
        finally:
            if chaos is not None:
                chaos.join(30)
            redis_server.resume()
            client.config_set("timeout", 0)
        assert len(rounds) >= 2, "the storm should have forced at least one redelivery"
        if chaos is not None:
            assert chaos.paused_at is not None, "Redis was never paused"
            met = [r for d in rounds for r in d.records if r["Code"] == "SharedStoreUnavailable"]
            assert met and "Redis unreachable" in rounds[0].applog, "the pause reached no bind"
        check_final(ledger, messages, rounds[-1])
        assert getattr(get_runtime().store, "unsynced", 0) == 0, "a write never reached Redis"
        check_redelivery_is_free(ledger, messages, batch, context, capsys)
        earlier += new
        total += len(messages)

    assert total >= 1000
    kinds = Counter(p.kind for p in earlier)
    assert all(kinds[k] >= 10 for k in KIND_WEIGHTS), kinds
    codes = Counter(c.code for c in sim.calls())
    assert {"OK", "Dropped", "Garbage", "HTTP503", "Throttling.User"} <= set(codes), codes
    client.close()


# ---- one kind of storm for every WabaId at once -------------------------------------------

STORMS: dict[str, Callable[[], Fault]] = {
    "5xx": lambda: Fault.http_status(503),
    "InternalError": lambda: Fault.error("InternalError", *DOCUMENTED_ERRORS["InternalError"]),
    "throttling": lambda: Fault.error("System.LimitControl", *DOCUMENTED_ERRORS[QUOTA_CODE]),
    "dropped connections": Fault.drop,
    "slow past the read timeout": lambda: Fault.slow(2.0),
}  # no call runs past the deadline: one starts only with its whole read timeout left
# (tests/test_no_abandoned_calls.py)


@pytest.mark.parametrize("storm", list(STORMS))
def test_a_storm_on_every_waba_is_redelivered_until_cams_recovers(
    storm: str,
    faults_env: CamsSimulator,
    shared_redis: str,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = faults_env
    plans = [Plan(f"81{i:014d}", storm, STORMS[storm]()) for i in range(60)]
    messages = one_message_each(plans, storm)
    batch = [queue_message("kafka", m.event_id, m.body) for m in messages]
    ledger = Ledger(sim)
    sim.set_default_fault(STORMS[storm]())

    first = deliver(batch, context, capsys, FN_TIMEOUT)
    check_delivery(first, messages)
    ledger.deliveries.append(first)
    assert first.raised
    assert {r["Status"] for r in first.records} == {"failed"}
    if plans[0].fault is not None and plans[0].fault.kind == "slow":
        for plan in plans:
            plan.abandoned = sim.count(waba_id=plan.waba_id)
    assert sum(sim.count(waba_id=p.waba_id, code="OK") - p.abandoned for p in plans) == 0
    sim.set_default_fault(None)

    rounds = settle(ledger, messages, batch, context, capsys)
    check_final(ledger, messages, rounds[-1])
    check_redelivery_is_free(ledger, messages, batch, context, capsys)


def test_a_throttling_storm_from_the_real_quota_binds_every_waba_once(
    faults_env: CamsSimulator,
    shared_redis: str,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """wababind is told the quota is 3x what CAMS allows: CAMS throttles, wababind backs off."""
    sim = faults_env
    sim.set_qps(10)
    monkeypatch.setenv("CAMS_QPS", "30")
    plans = [Plan(f"82{i:014d}", "quota") for i in range(30)]
    messages = one_message_each(plans, "quota")
    batch = [queue_message("rocketmq", m.event_id, m.body) for m in messages]
    ledger = Ledger(sim)
    rounds = settle(ledger, messages, batch, context, capsys, timeout=4)
    assert sim.count(code="System.LimitControl") > 0, "CAMS never throttled: no storm happened"
    check_final(ledger, messages, rounds[-1])


# ---- Redis stopped and restarted in the middle of a batch ----------------------------------


def test_redis_stopped_and_restarted_mid_batch_binds_each_waba_once(
    faults_env: CamsSimulator,
    redis_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Copies of each WabaId wait on the first one's claim when Redis goes away under them;
    Redis comes back empty, and the instance gives it back what it knows."""
    sim = faults_env
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    sim.set_latency(0.3)
    plans = [
        Plan(f"83{i:014d}", "5xx", Fault.http_status(503, times=1), calls=2)
        if i % 4 == 0
        else Plan(f"83{i:014d}", "clean", calls=1)
        for i in range(60)
    ]
    for plan in plans:
        if plan.fault is not None:
            sim.set_fault(plan.waba_id, plan.fault)
    messages = [
        Message(f"redis-{i}-{copy}", p, json.dumps({"WabaId": p.waba_id}))
        for i, p in enumerate(plans)
        for copy in range(3)
    ]
    batch = [queue_message("mns", m.event_id, m.body) for m in messages]
    ledger = Ledger(sim)
    marks: dict[str, int] = {}

    def outage() -> None:
        for _ in range(2000):  # stop once the first claims are held and their calls in flight
            if sim.count() >= 5:
                break
            time.sleep(0.005)
        marks["stopped"] = sim.count()
        redis_server.stop()
        time.sleep(REDIS_PAUSE_S)  # binds end retryable meanwhile; calls in flight finish
        marks["restarted"] = sim.count()
        redis_server.start()  # empty: what it holds next is what the instance replays

    chaos = threading.Thread(target=outage, daemon=True)
    chaos.start()
    try:
        first = deliver(batch, context, capsys, timeout=10)
    finally:
        chaos.join(30)
    check_delivery(first, messages)
    ledger.deliveries.append(first)
    assert "Redis unreachable" in first.applog, "the outage did not reach wababind"
    assert 0 < marks["stopped"] <= marks["restarted"] <= sim.count()
    assert any(r["Code"] == "SharedStoreUnavailable" for r in first.records)

    rounds = settle(ledger, messages, batch, context, capsys, fresh_instances=False, timeout=10)
    check_final(ledger, messages, rounds[-1])
    again = deliver(batch, context, capsys, FN_TIMEOUT)
    check_delivery(again, messages)
    assert {r["Status"] for r in again.records} == {"duplicate"}


# ---- a callback receiver that hangs --------------------------------------------------------


@pytest.fixture
def hanging_receiver() -> Iterator[str]:
    """Accepts connections, reads nothing, answers nothing; closes them all at the end."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hooks/wababind"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def callback_worker() -> None:
    """In a child: one MQ invocation of `size` messages, as FC would run it."""
    from tests.fixtures.handlers import FakeContext, FakeFunction
    from wababind.runtime import get_runtime

    job = json.loads(sys.argv[1])
    get_runtime()
    batch = [
        queue_message("rocketmq", f"hang-{i}", json.dumps({"WabaId": f"84{i:014d}"}))
        for i in range(job["size"])
    ]
    context = FakeContext(function=FakeFunction(timeout=job["timeout"]))
    # whole lines, as the sinks write theirs: a print() is two writes, and a sink thread's line
    # could land between them
    from wababind.sinks.log import write_line

    write_line("START")
    try:
        summary = json.loads(mq_handler(json.dumps(batch).encode(), context))
        write_line("RETURNED " + json.dumps({k: v for k, v in summary.items() if k != "Outcomes"}))
    except RetryableBatchError:
        write_line("RAISED")


@pytest.mark.parametrize("sinks", ["callback", "log,callback"])
def test_a_callback_receiver_that_hangs_loses_no_outcome_and_the_invocation_ends_in_time(
    sinks: str, faults_env: CamsSimulator, hanging_receiver: str
) -> None:
    """FC stops an invocation at its function timeout: this runs the handler in a process of its
    own and stops it there, as FC would. By then every outcome must be on the log, delivered or
    marked undelivered, and the handler must have returned."""
    fn_timeout, size = 4, 12
    env = dict(os.environ)
    env.update(
        PYTHONPATH=CHILD_PATH,
        PYTHONUNBUFFERED="1",
        OUTCOME_SINKS=sinks,
        CALLBACK_URL=hanging_receiver,
        CALLBACK_SECRET=CALLBACK_SECRET,
        WABABIND_UNSAFE_TEST_CALLBACKS="allow-http-and-loopback",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests.test_faults import callback_worker; callback_worker()",
            json.dumps({"size": size, "timeout": fn_timeout}),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    try:
        while True:  # the child's start-up (imports) is not the invocation's time
            line = lines.get(timeout=60)
            assert line is not None, "the worker died before starting"
            out.append(line)
            if line == "START":
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(fn_timeout + 1)  # one second of grace past FC's limit
    finally:
        if proc.poll() is None:
            proc.kill()  # FC's timeout: whatever was not written by now is gone
        proc.wait(30)
    while (line := lines.get(timeout=30)) is not None:
        out.append(line)

    text = "\n".join(out)
    logged = Counter(r["EventId"] for r in outcome_lines(text))
    undelivered = Counter(
        json.loads(line)["Outcome"]["EventId"]
        for line in out
        if line.startswith('{"Kind":"WabaBindOutcomeUndelivered"')
    )
    expected = Counter(f"hang-{i}" for i in range(size))
    assert any(line.startswith("RETURNED ") for line in out), "FC stopped the invocation first"
    if "log" in sinks.split(","):
        assert logged == expected
    assert undelivered == expected, "an outcome the callback could not take was not logged"
    assert faults_env.count() == size
