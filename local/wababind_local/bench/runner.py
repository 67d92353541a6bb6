"""`make bench`: run the scenarios in order, print the tables, write the results file."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Sequence

from wababind_local.bench.charts import write_quota_chart
from wababind_local.bench.cold_start import ImportProbeError, measure_cold_start, measure_package
from wababind_local.bench.config import parse_args
from wababind_local.bench.handler import waba_ids
from wababind_local.bench.one_process import run_one_process
from wababind_local.bench.redis_pause import render_redis_pause, run_redis_pause
from wababind_local.bench.render import render
from wababind_local.bench.results import ColdStart, Run
from wababind_local.bench.shared_redis import run_processes
from wababind_local.bench.stats import _pct, _ratio
from wababind_local.bench.targets import evaluate


def main(argv: Sequence[str] | None = None) -> int:
    """Run everything, print the table, write the results file; 0 when the bench ran."""
    config = parse_args(argv)
    began = time.monotonic()
    prefix = f"{random.randrange(10**8, 10**9)}"
    cells = [(lat, batch) for lat in config.latencies_ms for batch in config.batches]
    print(
        f"bench: quota {config.qps:g} calls/s; {len(cells)} one-process loads, then "
        f"{config.processes} processes on Redis, then cold start",
        flush=True,
    )
    matrix: list[Run] = []
    for number, (latency, batch) in enumerate(cells, 1):
        ids = waba_ids(prefix, number, batch + 1)
        run = run_one_process(config.qps, latency, batch, ids)
        matrix.append(run)
        print(
            f"[{number}/{len(cells)}] {latency:g} ms, {batch} binds: "
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
        )
        print(
            f"[shared] {config.processes} x {config.process_batch} binds: "
            f"{_ratio(shared.binds_per_s / config.qps)} quota, max {shared.max_window} calls "
            f"in a 1-s window, {shared.wall_s:.1f} s",
            flush=True,
        )
    except RuntimeError as exc:
        shared_problem = str(exc)
        print(f"[shared] not run: {shared_problem}", flush=True)

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

    targets = evaluate(config, matrix, shared, cold)
    text = render(
        config, matrix, shared, shared_problem, cold, targets, time.monotonic() - began, package
    )
    text += "\n" + render_redis_pause(pause, pause_problem)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(text, encoding="utf-8")
    print()
    print(text, end="")
    print(f"\nwritten to {config.out}")
    print(write_quota_chart(config, matrix, shared))
    return 0
