"""Each WabaId reaches CAMS once: redelivered batches, repeats inside one batch, four processes
racing on one shared redis-server, and an instance killed in the middle of a bind."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from index import mq_handler
from tests.fixtures.handlers import outcome_lines
from wababind.errors import RetryableBatchError
from wababind.runtime import reset_runtime
from wababind_local.cams_simulator import Fault

REPO = Path(__file__).resolve().parent.parent
CHILD_PATH = os.pathsep.join(
    str(p) for p in (REPO / "functions" / "bind_waba", REPO / "local", REPO)
)
WAIT_S = 60.0  # an upper bound on anything a child does; reached only when something hangs


def rocketmq(event_id: str, waba_id: str, reference: str | None = None) -> dict[str, Any]:
    """A RocketMQ CloudEvent; its UNIQ_KEY is the outcome's EventId on every delivery."""
    body: dict[str, str] = {"WabaId": waba_id}
    if reference is not None:
        body["Reference"] = reference
    return {
        "id": f"ce-{event_id}",
        "source": "RocketMQ-bind-waba",
        "specversion": "1.0",
        "type": "mq:Topic:SendMessage",
        "data": {
            "topic": "waba-bind",
            "systemProperties": {"UNIQ_KEY": event_id, "KEYS": waba_id},
            "userProperties": {},
            "body": json.dumps(body),
        },
    }


def deliver(batch: list[dict[str, Any]], context: Any, timeout: int = 30) -> tuple[bool, Any]:
    """(raised RetryableBatchError, summary or None) for one delivery of `batch`."""
    try:
        return False, json.loads(mq_handler(json.dumps(batch).encode(), context(timeout=timeout)))
    except RetryableBatchError:
        return True, None


@pytest.fixture(params=["memory", "redis"])
def store(
    request: pytest.FixtureRequest, wababind_env: Any, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The idempotency store under test: this instance's memory, or the shared redis-server."""
    monkeypatch.setenv("CAMS_QPS", "1000")
    wababind_env.set_qps(None)
    if request.param == "redis":
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    return str(request.param)


def test_a_batch_delivered_twice_is_all_duplicate_with_one_call_per_waba(
    store: str, wababind_env: Any, context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    waba_ids = [f"60{i:014d}" for i in range(40)]
    batch = [rocketmq(f"dup-twice-{i}", w, f"ref-{i}") for i, w in enumerate(waba_ids)]
    raised, first = deliver(batch, context)
    assert not raised and (first["Total"], first["Bound"]) == (40, 40)
    if store == "redis":
        reset_runtime()  # the redelivery lands on another instance: only Redis remembers
    raised, second = deliver(batch, context)
    assert not raised
    assert (second["Total"], second["Duplicate"], second["Bound"], second["Failed"]) == (
        40,
        40,
        0,
        0,
    )

    bound = wababind_env.bound()
    for i, (one, two) in enumerate(zip(first["Outcomes"], second["Outcomes"], strict=True)):
        assert one["EventId"] == two["EventId"] == f"dup-twice-{i}"
        assert one["CustSpaceId"] == two["CustSpaceId"] == bound[waba_ids[i]]
        assert (two["Status"], two["Code"], two["Attempts"], two["Reference"]) == (
            "duplicate",
            "OK",
            0,
            f"ref-{i}",
        )
    assert {w: wababind_env.count(waba_id=w) for w in waba_ids} == dict.fromkeys(waba_ids, 1)
    records = outcome_lines(capsys.readouterr().out)
    assert Counter(r["EventId"] for r in records) == Counter(
        {f"dup-twice-{i}": 2 for i in range(40)}
    )


def test_the_same_waba_several_times_in_one_batch_makes_one_call(
    store: str, wababind_env: Any, context: Any
) -> None:
    """The copies run at the same time; CAMS is slow, so all but one find the claim taken."""
    repeated = [f"61{i:014d}" for i in range(5)]
    unique = [f"61{100 + i:014d}" for i in range(10)]
    order = [w for _ in range(4) for w in repeated] + unique
    batch = [rocketmq(f"dup-inbatch-{i}", w) for i, w in enumerate(order)]
    wababind_env.set_latency(0.3)
    try:
        raised, summary = deliver(batch, context)
    finally:
        wababind_env.set_latency(0)
    assert not raised
    assert (summary["Total"], summary["Bound"], summary["Duplicate"]) == (30, 15, 15)

    bound = wababind_env.bound()
    by_waba: dict[str, list[dict[str, Any]]] = {}
    for outcome in summary["Outcomes"]:
        by_waba.setdefault(outcome["WabaId"], []).append(outcome)
    for waba_id in repeated:
        statuses = Counter(o["Status"] for o in by_waba[waba_id])
        assert statuses == Counter({"bound": 1, "duplicate": 3}), waba_id
        assert {o["CustSpaceId"] for o in by_waba[waba_id]} == {bound[waba_id]}
        assert sum(o["Attempts"] for o in by_waba[waba_id]) == 1
    for waba_id in repeated + unique:
        assert wababind_env.count(waba_id=waba_id) == 1, waba_id


# ---- many processes, one WabaId ------------------------------------------------------------


class Child:
    """A worker subprocess whose stdout lines are read as they come (no pipe ever fills)."""

    def __init__(
        self, job: dict[str, Any], env: dict[str, str], target: str = "tests.test_duplicates"
    ):
        """Runs `worker()` of the module `target` with `job` as its argument."""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from {target} import worker; worker()", json.dumps(job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._err.extend(self.proc.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self._err)[-2000:]

    def wait_for(self, prefix: str, timeout: float = WAIT_S) -> str:
        """The first line from now on that starts with `prefix`."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"child sent no {prefix!r} line: {self.stderr}") from None
            if line is None:
                raise AssertionError(f"child ended before {prefix!r}: {self.stderr}")
            if line.startswith(prefix):
                return line

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)


def child_env(**extra: str) -> dict[str, str]:
    """This test's environment (simulator endpoint, key, secrets) plus the code paths."""
    env = dict(os.environ)
    env.update(PYTHONPATH=CHILD_PATH, PYTHONUNBUFFERED="1", **extra)
    return env


def worker() -> None:
    """In a child: one FC instance. `race`: on 'go', `requests` concurrent binds of one WabaId,
    alternating the HTTP and MQ functions. `hold`: one MQ bind, left to be killed."""
    from index import http_handler
    from tests.fixtures.handlers import FakeContext, FakeFunction, signed_event
    from wababind.runtime import get_runtime

    job = json.loads(sys.argv[1])
    get_runtime()  # build the instance (Redis connection, clients) before the race starts
    waba_id = job["waba_id"]

    def context() -> FakeContext:
        return FakeContext(function=FakeFunction(timeout=job["timeout"]))

    if job["mode"] == "hold":
        print("READY", flush=True)
        mq_handler(json.dumps([rocketmq(job["event_id"], waba_id)]).encode(), context())
        print("FINISHED", flush=True)
        return

    gate = threading.Event()

    def one(index: int) -> dict[str, Any]:
        gate.wait(WAIT_S)
        if index % 2:
            summary = json.loads(mq_handler(json.dumps([{"WabaId": waba_id}]).encode(), context()))
            return {"Via": "mq", "Outcome": summary["Outcomes"][0]}
        response = http_handler(signed_event({"WabaId": waba_id}), context())
        return {
            "Via": "http",
            "Status": response["statusCode"],
            "Outcome": json.loads(response["body"]),
        }

    with ThreadPoolExecutor(job["requests"]) as pool:
        futures = [pool.submit(one, i) for i in range(job["requests"])]
        print("READY", flush=True)
        sys.stdin.readline()
        gate.set()
        results = [f.result() for f in futures]
    print("RESULT " + json.dumps(results), flush=True)


def test_fifty_concurrent_requests_across_four_processes_make_one_cams_call(
    wababind_env: Any, redis_url: str
) -> None:
    waba_id = "6200000000000001"
    wababind_env.set_qps(None)
    wababind_env.set_latency(0.3)  # the winner's call is still in flight when the rest arrive
    env = child_env(REDIS_URL=redis_url, CAMS_QPS="1000")
    shares = [13, 13, 12, 12]
    children = [
        Child({"mode": "race", "waba_id": waba_id, "requests": n, "timeout": 30}, env)
        for n in shares
    ]
    try:
        for child in children:
            child.wait_for("READY")
        for child in children:  # every thread of every process is parked on its gate now
            child.send("go")
        results = [r for child in children for r in json.loads(child.wait_for("RESULT ")[7:])]
        for child in children:
            assert child.proc.wait(WAIT_S) == 0, child.stderr
    finally:
        wababind_env.set_latency(0)
        for child in children:
            child.kill()

    assert len(results) == 50
    outcomes = [r["Outcome"] for r in results]
    assert Counter(o["Status"] for o in outcomes) == Counter({"bound": 1, "duplicate": 49})
    assert {r["Status"] for r in results if r["Via"] == "http"} == {200}
    assert {o["CustSpaceId"] for o in outcomes} == {wababind_env.bound()[waba_id]}
    assert wababind_env.count(waba_id=waba_id) == 1
    logged = [r for child in children for r in outcome_lines("\n".join(child.lines))]
    assert len(logged) == 50  # one outcome record per request, none lost, none doubled


def test_an_instance_killed_mid_bind_frees_the_waba_after_the_in_progress_expiry(
    wababind_env: Any,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The claim of a dead instance blocks its WabaId until the claim's own expiry (the dead
    invocation's deadline + a margin), then a redelivery binds it."""
    import redis

    from wababind.idempotency import RecordStatus, RedisStore

    waba_id = "6300000000000001"
    wababind_env.set_qps(None)
    wababind_env.set_fault(waba_id, Fault.slow(20, times=1))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CAMS_QPS", "1000")
    store = RedisStore(redis.Redis.from_url(redis_url))

    held = Child(
        {"mode": "hold", "waba_id": waba_id, "event_id": "killed-1", "timeout": 3},
        # a read timeout that fits its 3-s function timeout; CAMS answers long after it
        child_env(REDIS_URL=redis_url, CAMS_QPS="1000", CAMS_TIMEOUT_S="1.5"),
    )
    try:
        held.wait_for("READY")
        for _ in range(int(WAIT_S / 0.01)):  # its call reached CAMS, which answers 20 s late
            if wababind_env.count(waba_id=waba_id) or held.proc.poll() is not None:
                break
            time.sleep(0.01)
    finally:
        held.kill()  # SIGKILL: no release, no outcome; only the claim's expiry can free it
    record = store.get(waba_id)
    assert record is not None and record.status is RecordStatus.IN_PROGRESS
    assert "FINISHED" not in held.lines
    assert wababind_env.count(waba_id=waba_id) == 1

    batch = [rocketmq("after-kill-1", waba_id)]
    blocked = 0
    for _ in range(30):  # each delivery waits at most its own 1 s deadline
        raised, _summary = deliver(batch, context, timeout=2)
        [outcome] = outcome_lines(capsys.readouterr().out)
        if outcome["Code"] != "BindInProgress":
            break
        assert raised and outcome["Retryable"] is True
        assert wababind_env.count(waba_id=waba_id) == 1, "called CAMS while the claim was held"
        blocked += 1
    assert blocked, "the dead instance's claim should have blocked the first redelivery"
    for _ in range(5):  # the claim expired; a call cut short by the deadline is retried too
        if not raised:
            break
        raised, _summary = deliver(batch, context, timeout=2)
        [outcome] = outcome_lines(capsys.readouterr().out)
    assert not raised
    assert (outcome["Status"], outcome["Code"]) == ("bound", "OK"), outcome
    assert outcome["CustSpaceId"] == wababind_env.bound()[waba_id]
    answered = {c.request_id for c in wababind_env.calls() if c.code == "OK"}
    assert outcome["RequestId"] in answered


def test_a_blocked_redelivery_answers_bind_in_progress_without_calling_cams(
    wababind_env: Any,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """While another instance holds the claim, a delivery fails retryably and calls nobody."""
    import redis

    from wababind.idempotency import RedisStore

    waba_id = "6300000000000002"
    monkeypatch.setenv("REDIS_URL", redis_url)
    other = RedisStore(redis.Redis.from_url(redis_url))
    assert other.claim(waba_id, "other-instance/1", 30.0) is None

    raised, _ = deliver([rocketmq("blocked-1", waba_id)], context, timeout=2)
    assert raised
    [record] = outcome_lines(capsys.readouterr().out)
    assert (record["Status"], record["Code"], record["Retryable"], record["Attempts"]) == (
        "failed",
        "BindInProgress",
        True,
        0,
    )
    assert wababind_env.count(waba_id=waba_id) == 0

    other.release(waba_id, "other-instance/1")
    raised, summary = deliver([rocketmq("blocked-1", waba_id)], context, timeout=2)
    assert not raised and summary["Outcomes"][0]["Status"] == "bound"
    assert wababind_env.count(waba_id=waba_id) == 1
