"""Scenario 2: several spawned processes share one redis-server and one simulator."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

from wababind_local.bench.config import WINDOW_GAP_S
from wababind_local.bench.handler import product_env, waba_ids
from wababind_local.bench.processes import _collect, _wait_ready, join_all, process_worker
from wababind_local.bench.redis_server import redis_server
from wababind_local.bench.results import Run
from wababind_local.cams_simulator import (
    QUOTA_CODE,
    CamsSimulator,
    max_in_window,
)


def run_processes(
    qps: float, latency_ms: float, processes: int, batch: int, prefix: str, tag: int
) -> Run:
    """`processes` spawned instances, one redis-server, one simulator; they start together."""
    ctx = multiprocessing.get_context("spawn")
    with redis_server() as redis_url, CamsSimulator(qps=qps, latency_s=latency_ms / 1000) as sim:
        env = product_env(sim.endpoint, qps, redis_url)
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(
                target=process_worker,  # spawn pickles it by its module's name
                args=(
                    n,
                    env,
                    waba_ids(prefix, tag + 100 + n, 1)[0],
                    waba_ids(prefix, tag + n, batch),
                    ready,
                    go,
                    results,
                ),
                daemon=True,
            )
            for n in range(processes)
        ]
        for proc in procs:
            proc.start()
        try:
            _wait_ready(ready, results, procs)
            time.sleep(WINDOW_GAP_S)
            first = len(sim.calls())
            go.set()
            reports = _collect(results, processes, batch * processes * 1.02 / qps + 120)
        finally:
            join_all(procs)
        calls = sim.calls()
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError("; ".join(errors))
    load = calls[first:]
    statuses: Counter[str] = Counter()
    for report in reports:
        statuses.update(report["statuses"])
    return Run(
        latency_ms=latency_ms,
        batch=batch,
        processes=processes,
        wall_s=max(r["finished"] for r in reports) - min(r["started"] for r in reports),
        statuses=statuses,
        durations_s=[d for r in reports for d in r["durations"]],
        calls=len(load),
        throttled=sum(1 for c in load if c.code == QUOTA_CODE),
        call_times=[(c.at, c.code == QUOTA_CODE) for c in load],
        max_window=max_in_window([c.at for c in calls]),
        raised=[r["raised"] for r in reports if r["raised"]],
        warnings=sum(r["warnings"] for r in reports),
    )
