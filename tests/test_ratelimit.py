"""The quota: never more than CAMS_QPS grants in any 1-s window, across threads and processes."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from typing import Any

import pytest

from wababind import ratelimit
from wababind.errors import SharedStoreUnavailable
from wababind.ratelimit import (
    LocalRateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
    redis_client,
    wait_for,
)
from wababind_local.cams_simulator import max_in_window


def grant_times(limiter: Any, threads: int, per_thread: int) -> list[float]:
    """Start times of the slots granted to callers that take them as `acquire` does.

    The times are the limiter's own (Redis's clock for the shared one), not when each thread
    woke up: scheduler jitter on a busy machine bunches wake-ups, not grants. Arrival at CAMS,
    jitter included, is what `make bench` measures at the simulator.
    """
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(per_thread):
            slot = limiter.reserve(time.monotonic() + 30)
            assert wait_for(slot) and slot is not None
            with lock:
                times.append(slot.at)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    return times


def test_the_window_counter_counts_half_open_windows():
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([]) == 0


def test_local_limiter_never_grants_more_than_the_quota_to_many_threads():
    qps = 40
    times = grant_times(LocalRateLimiter(qps), threads=24, per_thread=5)
    assert len(times) == 120
    assert max_in_window(times) <= qps


def test_a_caller_that_cannot_get_a_slot_before_its_deadline_takes_none():
    limiter = LocalRateLimiter(2)  # one slot every 0.51 s
    assert limiter.acquire(time.monotonic() + 5)
    assert not limiter.acquire(time.monotonic() + 0.05)
    # the refused caller took no slot: the next one is still the one 0.51 s after the first
    assert limiter.acquire(time.monotonic() + 0.8)


def test_a_throttle_answer_pushes_the_next_slot_out():
    limiter = LocalRateLimiter(2)
    assert limiter.acquire(time.monotonic() + 5)
    limiter.penalize()
    assert not limiter.acquire(time.monotonic() + 0.8)


def test_make_rate_limiter_picks_redis_only_with_a_client(redis_url):
    assert isinstance(make_rate_limiter(10, None), LocalRateLimiter)
    assert isinstance(make_rate_limiter(10, redis_client(redis_url)), RedisRateLimiter)


def test_redis_limiter_never_grants_more_than_the_quota_to_many_threads(redis_url):
    qps = 40
    limiter = RedisRateLimiter(redis_client(redis_url), qps)
    times = grant_times(limiter, threads=24, per_thread=5)
    assert len(times) == 120 and not limiter.degraded
    assert max_in_window(times) <= qps


def _process_grants(url: str, qps: float, threads: int, per_thread: int, start: Any, out: Any):
    limiter = RedisRateLimiter(redis_client(url), qps)
    start.wait(30)
    out.put(json.dumps(grant_times(limiter, threads, per_thread)))


def test_redis_limiter_shares_the_quota_across_processes(redis_url):
    qps, processes = 40, 4
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_process_grants, args=(redis_url, qps, 8, 5, start, out))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    time.sleep(1.0)  # let every process import and connect before the race starts
    start.set()
    times = [t for _ in workers for t in json.loads(out.get(timeout=60))]
    for w in workers:
        w.join(30)
    assert len(times) == processes * 8 * 5
    assert max_in_window(times) <= qps


def test_redis_limiter_degrades_when_redis_stops_and_recovers(redis_server, monkeypatch, capsys):
    limiter = RedisRateLimiter(redis_client(redis_server.url), qps=100)
    limiter.health.retry_after_s = 0.2
    assert limiter.acquire(time.monotonic() + 5) and not limiter.degraded

    redis_server.stop()
    for _ in range(5):
        assert limiter.acquire(time.monotonic() + 5)
        limiter.penalize()
    assert limiter.degraded

    redis_server.start()
    time.sleep(0.3)
    assert limiter.acquire(time.monotonic() + 5)
    assert not limiter.degraded

    logs = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    ours = [(r["Level"], r["Component"]) for r in logs if r.get("Component") == "ratelimit"]
    assert ours == [("WARNING", "ratelimit"), ("INFO", "ratelimit")]


@pytest.mark.parametrize(
    ("on_outage", "while_stopped"),
    [("wait", "raises SharedStoreUnavailable"), ("local", "grants from a local share")],
)
def test_on_outage_decides_what_a_redis_failure_means(redis_server, on_outage, while_stopped):
    limiter = make_rate_limiter(100, redis_client(redis_server.url), on_outage=on_outage)
    assert isinstance(limiter, RedisRateLimiter)
    limiter.health.retry_after_s = 60.0  # "wait" must try Redis again anyway, at every reserve
    assert limiter.acquire(time.monotonic() + 5)

    redis_server.stop()
    for _ in range(3):
        if while_stopped.startswith("raises"):
            with pytest.raises(SharedStoreUnavailable):
                limiter.reserve(time.monotonic() + 5)
        else:
            assert limiter.acquire(time.monotonic() + 5)
        limiter.penalize()  # never raises: the next reserve() meets the outage
    assert limiter.degraded

    redis_server.start()
    if on_outage == "wait":  # no pause: the first reserve after Redis is back uses it
        slot = limiter.reserve(time.monotonic() + 5)
        assert slot is not None and not limiter.degraded


def test_binds_continue_when_redis_stops_with_on_redis_outage_local(
    wababind_env, context, redis_server, monkeypatch, capsys
):
    """The availability choice; the default (wait) is tested in test_redis_outage.py."""
    from index import http_handler
    from tests.fixtures.handlers import signed_event

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("ON_REDIS_OUTAGE", "local")
    first = http_handler(signed_event({"WabaId": "5100000000000001"}), context())
    assert first["statusCode"] == 200

    redis_server.stop()
    for waba_id in ("5100000000000002", "5100000000000003"):
        response = http_handler(signed_event({"WabaId": waba_id}), context())
        assert response["statusCode"] == 200, response["body"]
        assert json.loads(response["body"])["Status"] == "bound"
    assert wababind_env.count() == 3

    err = capsys.readouterr().err
    warnings = [json.loads(line) for line in err.splitlines() if '"WARNING"' in line]
    assert [w["Component"] for w in warnings] == ["shared-store"]  # said once, for both
    assert "Traceback" not in err


@pytest.mark.parametrize("qps", [1, 10, 100])
def test_slots_are_spaced_a_little_wider_than_the_quota(qps):
    assert LocalRateLimiter(qps).interval == pytest.approx(ratelimit.SAFETY / qps)
