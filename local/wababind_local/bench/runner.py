"""`make bench`: run the scenarios in order, print the tables, write the results file."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Sequence

from wababind_local.bench.charts import write_quota_chart
from wababind_local.bench.cold_start import ImportProbeError, measure_cold_start, measure_package
from wababind_local.bench.config import parse_args
from wababind_local.bench.one_process import run_one_process
from wababind_local.bench.overhead import measure_overhead
from wababind_local.bench.priority import run_priority
from wababind_local.bench.redis_pause import render_redis_pause, run_redis_pause
from wababind_local.bench.render import render
from wababind_local.bench.results import ColdStart, Run
from wababind_local.bench.shared_redis import run_processes
from wababind_local.bench.stats import _pct, _ratio
from wababind_local.bench.targets import evaluate

IDLE_WEBHOOK_BINDS = 15


def main(argv: Sequence[str] | None = None) -> int:
    """Run everything, print the table, write the results file; 0 when the bench ran."""
    config = parse_args(argv)
    began = time.monotonic()
    prefix = f"{random.randrange(10**8, 10**9)}"
    cells = config.cells
    print(
        f"bench: quota {config.qps:g} calls/s, every instance cold; {len(cells)} one-process "
        f"loads, {config.processes} instances on Redis, the priority table, the webhook's "
        "overhead, then cold start",
        flush=True,
    )
    matrix: list[Run] = []
    for number, (latency, batch, jitter) in enumerate(cells, 1):
        run = run_one_process(config.qps, latency, batch, prefix, number, jitter)
        matrix.append(run)
        print(
            f"[{number}/{len(cells)}] {latency:g} ms, {jitter:g} ms jitter, {batch} binds: "
            f"{_ratio(run.binds_per_s / config.qps)} quota, {_pct(run.throttled_share)} "
            f"throttled, {run.wall_s:.1f} s",
            flush=True,
        )

    shared, shared_problem = None, None
    try:
        shared = run_processes(
            config.qps,
            config.process_latency_ms,
            config.processes,
            config.process_batch,
            prefix,
            tag=200,
            jitter_ms=config.process_jitter_ms,
        )
        print(
            f"[shared] {config.processes} x {config.process_batch} binds: "
            f"{_ratio(shared.binds_per_s / config.qps)} quota, {_pct(shared.throttled_share)} "
            f"throttled, {shared.wall_s:.1f} s",
            flush=True,
        )
    except RuntimeError as exc:
        shared_problem = str(exc)
        print(f"[shared] not run: {shared_problem}", flush=True)

    priority, priority_problem = None, None
    try:
        priority = run_priority(
            config.qps,
            config.process_latency_ms,
            config.process_jitter_ms,
            config.processes,
            config.bulk_binds,
            IDLE_WEBHOOK_BINDS,
            prefix,
            tag=600,
        )
        print(
            f"[priority] webhook p95 {_ratio(priority.ratio)} its idle median, bulk "
            f"{_ratio(priority.bulk_share)} of the free quota",
            flush=True,
        )
    except RuntimeError as exc:
        priority_problem = str(exc)
        print(f"[priority] not run: {priority_problem}", flush=True)

    overhead = measure_overhead(config.overhead_pairs, prefix)
    print(f"[overhead] webhook / bare SDK call CPU: {_ratio(overhead.cpu_ratio)}", flush=True)

    pause, pause_problem = None, None
    try:
        pause = run_redis_pause(config, prefix, tag=400)
        print(
            f"[redis pause] {pause.paused.pause_s:g}-s pause: p95 answered "
            f"{pause.extra_wait_s(95):.1f} s later, "
            f"{len(pause.paused.bound_twice)} WabaIds bound twice",
            flush=True,
        )
    except RuntimeError as exc:
        pause_problem = str(exc)
        print(f"[redis pause] not run: {pause_problem}", flush=True)

    cold: ColdStart | None = None
    try:
        cold = measure_cold_start(config.cold_reps, config.install)
        print(
            f"[cold start] ready to serve / Tea SDK import: {_ratio(cold.tea_ratio)}, "
            f"/ import floor: {_ratio(cold.floor_ratio)}",
            flush=True,
        )
    except (ImportProbeError, subprocess.TimeoutExpired) as exc:
        print(f"[cold start] not measured: {exc}", flush=True)
    package = measure_package(config.install)
    print(f"[package] code root / Tea SDK: {_ratio(package.ratio)}", flush=True)

    targets = evaluate(config, matrix, shared, cold, priority, overhead)
    text = render(
        config,
        matrix,
        shared,
        shared_problem,
        cold,
        targets,
        time.monotonic() - began,
        package,
        priority=priority,
        priority_problem=priority_problem,
        overhead=overhead,
    )
    text += "\n" + render_redis_pause(pause, pause_problem)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(text, encoding="utf-8")
    print()
    print(text, end="")
    print(f"\nwritten to {config.out}")
    print(write_quota_chart(config, matrix, shared))
    return 0
