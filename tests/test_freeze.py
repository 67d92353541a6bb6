"""Nothing waits for a thread that FC freezes (issue 16, item 6).

FC freezes an instance between invocations: every thread stops, sockets stay open, and the
parties on the other end go on. Here the instance is a real child process running the MQ
handler in a loop, frozen with SIGSTOP between invocations, while a real redis-server
(`timeout 1`) and the CAMS simulator (`idle_timeout_s`) close its idle connections. Once, Redis
is paused under the calls in flight, so the invocation ends with completions Redis missed, and
Redis comes back while the instance is frozen (its background sync thread cannot run then).
After SIGCONT the next invocations must bind as if nothing happened: one CAMS call per WabaId,
one outcome per message, and nothing left unsynced in Redis at the end of an invocation.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from typing import Any

import pytest
import redis

from index import mq_handler
from tests.fixtures.handlers import outcome_lines
from tests.test_duplicates import Child, child_env, rocketmq
from wababind.errors import RetryableBatchError
from wababind_local.cams_simulator import CamsSimulator

REDIS_IDLE_S = 1  # redis-server `timeout`: it closes a client connection idle this long
CAMS_IDLE_S = 0.5  # the simulator closes a keep-alive connection idle this long
FREEZE_S = 2.5  # longer than both: every connection the instance had is closed meanwhile
FN_TIMEOUT = 6
WAIT_S = 60.0


def worker() -> None:
    """In a child: one FC instance. Each stdin line is one MQ invocation (a list of
    [event id, WabaId]); after it, a RESULT line: whether it raised, and the store's writes
    that Redis has not taken yet."""
    from tests.fixtures.handlers import FakeContext, FakeFunction
    from wababind.runtime import get_runtime

    get_runtime()
    print("READY", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        batch = [rocketmq(event_id, waba_id) for event_id, waba_id in job["messages"]]
        context = FakeContext(function=FakeFunction(timeout=job["timeout"]))
        try:
            mq_handler(json.dumps(batch).encode(), context)
            raised = False
        except RetryableBatchError:
            raised = True
        unsynced = getattr(get_runtime().store, "unsynced", 0)
        print("RESULT " + json.dumps({"raised": raised, "unsynced": unsynced}), flush=True)


class Instance:
    """The child process as FC runs it: invoked, then frozen until the next invocation."""

    def __init__(self, env: dict[str, str]):
        self.child = Child({}, env, target="tests.test_freeze")
        self.child.wait_for("READY")

    def send(self, messages: list[tuple[str, str]]) -> int:
        start = len(self.child.lines)
        self.child.send(json.dumps({"messages": messages, "timeout": FN_TIMEOUT}))
        return start

    def result(self, start: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(the RESULT, outcome by EventId) of the invocation sent at `start`."""
        result = json.loads(self.child.wait_for("RESULT ", WAIT_S)[7:])
        records = outcome_lines("\n".join(self.child.lines[start:]))
        by_id = {r["EventId"]: r for r in records}
        assert len(by_id) == len(records), "an outcome was doubled"
        return result, by_id

    def invoke(
        self, messages: list[tuple[str, str]]
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        result, outcomes = self.result(self.send(messages))
        assert set(outcomes) == {e for e, _ in messages}, "an outcome was lost"
        return result, outcomes

    def freeze(self) -> None:
        self.child.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.child.proc.send_signal(signal.SIGCONT)


def others(client: redis.Redis) -> int:
    """Client connections Redis holds besides this test's own."""
    own = str(client.client_id())
    return sum(1 for c in client.client_list() if str(c["id"]) != own)


def wait_for_calls(sim: CamsSimulator, waba_ids: list[str]) -> None:
    for _ in range(2000):  # bounded: 20 s
        if all(sim.count(waba_id=w) for w in waba_ids):
            return
        time.sleep(0.01)
    raise AssertionError("the calls never reached CAMS")


@pytest.fixture
def cams() -> Any:
    sim = CamsSimulator(qps=None, idle_timeout_s=CAMS_IDLE_S).start()
    try:
        yield sim
    finally:
        sim.stop()


def test_an_instance_frozen_between_invocations_binds_on_once_thawed(
    wababind_env: CamsSimulator, cams: CamsSimulator, redis_server: Any
) -> None:
    sim = cams
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("timeout", REDIS_IDLE_S)
    env = child_env(
        REDIS_URL=redis_server.url,
        CAMS_ENDPOINT=sim.endpoint,
        CAMS_QPS="1000",
        CAMS_TIMEOUT_S="2",
    )
    instance = Instance(env)
    waba = [f"64{i:014d}" for i in range(14)]
    try:
        # 1: a plain invocation: the instance now holds pooled connections to Redis and CAMS
        first = [(f"ev-a{i}", waba[i]) for i in range(4)]
        result, outcomes = instance.invoke(first)
        assert (result, {r["Status"] for r in outcomes.values()}) == (
            {"raised": False, "unsynced": 0},
            {"bound"},
        )
        assert others(client) > 0, "the instance keeps no connection to Redis"

        # frozen past both idle limits: Redis and CAMS close every connection it had
        idle_before = sim.idle_closed()
        instance.freeze()
        time.sleep(FREEZE_S)
        assert others(client) == 0, "Redis did not close the frozen instance's connections"
        assert sim.idle_closed() > idle_before, "CAMS did not close an idle connection"
        instance.thaw()

        # 2: the redelivery of the first batch and new WabaIds, on dead pooled connections
        second = first + [(f"ev-b{i}", waba[i]) for i in range(4, 8)]
        result, outcomes = instance.invoke(second)
        assert result == {"raised": False, "unsynced": 0}, outcomes
        assert Counter(r["Status"] for r in outcomes.values()) == {"duplicate": 4, "bound": 4}

        # 3: Redis pauses under the calls in flight: the completions miss it
        sim.set_latency(0.6)
        third = [(f"ev-c{i}", waba[i]) for i in range(8, 12)]
        start = instance.send(third)
        wait_for_calls(sim, waba[8:12])
        redis_server.pause()
        try:
            result, outcomes = instance.result(start)
        finally:
            instance.freeze()  # the invocation ended with Redis away: now FC freezes it
            redis_server.resume()
        sim.set_latency(0)
        assert set(outcomes) == {e for e, _ in third}
        bound_then = [r["WabaId"] for r in outcomes.values() if r["Status"] == "bound"]
        assert bound_then and result["unsynced"] > 0, (result, outcomes)
        time.sleep(FREEZE_S)  # Redis is back, and closes the idle connections; nothing syncs
        for waba_id in bound_then:
            held = client.get("wababind:idem:" + waba_id)
            assert held is None or json.loads(held)["status"] != "COMPLETED", "synced frozen?"
        assert others(client) == 0
        instance.thaw()

        # 4: the next invocation: the redelivery and new WabaIds; Redis gets what it missed
        fourth = third + [(f"ev-d{i}", waba[i]) for i in range(12, 14)]
        result, outcomes = instance.invoke(fourth)
        codes = {e: (r["Status"], r["Code"], r["Message"]) for e, r in outcomes.items()}
        assert result == {"raised": False, "unsynced": 0}, (result, codes, instance.child.stderr)
        statuses = {e: r["Status"] for e, r in outcomes.items()}
        assert all(statuses[e] in ("bound", "duplicate") for e, _ in fourth), statuses
    finally:
        instance.thaw()
        instance.child.kill()
        redis_server.resume()

    bound = sim.bound()
    for waba_id in waba:
        assert sim.count(waba_id=waba_id) == 1, waba_id  # one CAMS call per WabaId
        record = json.loads(client.get("wababind:idem:" + waba_id))
        assert (record["status"], record["cust_space_id"]) == ("COMPLETED", bound[waba_id])
    client.close()
