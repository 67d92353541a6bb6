"""Cold instances: spawned processes bind a batch each, sharing one simulator (and, for more
than one, one redis-server). Scenario 2, and the one-process runs too (one instance, no Redis)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import Counter
from collections.abc import Iterator
from typing import Any

from wababind_local.bench.handler import product_env, waba_ids
from wababind_local.bench.processes import _collect, _wait_ready, join_all, process_worker
from wababind_local.bench.redis_server import redis_server
from wababind_local.bench.results import Run
from wababind_local.cams_simulator import (
    ACTION,
    QUOTA_CODE,
    CallRecord,
    CamsSimulator,
    max_in_window,
)


@contextlib.contextmanager
def _maybe_redis(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    with redis_server() as url:
        yield url


def redis_counts(url: str | None) -> tuple[int, int]:
    """(every command Redis has run, of which script calls) from INFO commandstats: a Lua
    script's own commands count in the first (Redis counts them), the EVALSHA in both."""
    if url is None:
        return 0, 0
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    scripts = sum(calls.get(c, 0) for c in ("evalsha", "eval", "evalsha_ro", "eval_ro"))
    return sum(n for c, n in calls.items() if c not in ("info", "ping", "script")), scripts


def run_processes(
    qps: float,
    latency_ms: float,
    processes: int,
    batch: int,
    prefix: str,
    tag: int,
    jitter_ms: float = 0.0,
    shared: bool = True,
    extra_env: dict[str, str] | None = None,
    calls_out: list[CallRecord] | None = None,
) -> Run:
    """`processes` fresh instances (no warm-up) start together against one simulator; with
    `shared`, through one redis-server. Each batch is timed from invocation to return.
    `extra_env`: more of the function's settings; `calls_out` gets every CAMS call."""
    ctx = multiprocessing.get_context("spawn")
    with (
        _maybe_redis(shared) as redis_url,
        CamsSimulator(qps=qps, latency_s=latency_ms / 1000, jitter_s=jitter_ms / 1000) as sim,
    ):
        env = {**product_env(sim.endpoint, qps, redis_url), **(extra_env or {})}
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(
                target=process_worker,  # spawn pickles it by its module's name
                args=(n, env, None, waba_ids(prefix, tag + n, batch), ready, go, results),
                daemon=True,
            )
            for n in range(processes)
        ]
        for proc in procs:
            proc.start()
        try:
            _wait_ready(ready, results, procs)
            before = redis_counts(redis_url)
            go.set()
            reports = _collect(results, processes, batch * processes * 1.1 / qps + 120)
            after = redis_counts(redis_url)
        finally:
            join_all(procs)
        calls = sim.calls()
    if calls_out is not None:
        calls_out.extend(calls)
    calls = [c for c in calls if c.action == ACTION]  # the bind's quota; steps have their own
    run = run_of(reports, calls, latency_ms, batch, jitter_ms)
    if shared:
        run.redis_commands, run.redis_scripts = after[0] - before[0], after[1] - before[1]
    return run


def run_of(
    reports: list[dict[str, Any]],
    calls: list[CallRecord],
    latency_ms: float,
    batch: int,
    jitter_ms: float,
) -> Run:
    """The instances' reports and the simulator's calls as one Run (RuntimeError if an
    instance failed); its wall time is from the first invocation to the last return."""
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError("; ".join(errors))
    sent = sorted(t for r in reports for t in r.get("sent", []))
    statuses: Counter[str] = Counter()
    for report in reports:
        statuses.update(report["statuses"])
    return Run(
        latency_ms=latency_ms,
        batch=batch,
        processes=len(reports),
        wall_s=max(r["finished"] for r in reports) - min(r["started"] for r in reports),
        statuses=statuses,
        durations_s=[d for r in reports for d in r["durations"]],
        calls=len(calls),
        throttled=sum(1 for c in calls if c.code == QUOTA_CODE),
        call_times=[(c.at, c.code == QUOTA_CODE) for c in calls],
        max_window=max_in_window([c.at for c in calls]),
        raised=[r["raised"] for r in reports if r["raised"]],
        warnings=sum(r["warnings"] for r in reports),
        jitter_ms=jitter_ms,
        instance_s=sum(r["finished"] - r["started"] for r in reports),
        sent_times=sent,
        max_sent_window=max_in_window(sent),
    )


__all__ = ["redis_counts", "run_of", "run_processes", "waba_ids"]
