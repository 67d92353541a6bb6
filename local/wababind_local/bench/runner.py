"""`make bench`: run the scenarios in order, print the tables, write the results file."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from wababind_local.bench.after_bind import render_after_bind, run_after_bind
from wababind_local.bench.bulk_cost import render_bulk_cost, run_bulk_cost
from wababind_local.bench.charts import write_quota_chart
from wababind_local.bench.cold_start import ImportProbeError, measure_cold_start, measure_package
from wababind_local.bench.config import parse_args
from wababind_local.bench.fc_cold_start import measure_fc_cold_start
from wababind_local.bench.one_process import run_one_process
from wababind_local.bench.overhead import measure_overhead
from wababind_local.bench.priority import run_priority
from wababind_local.bench.redis_pause import render_redis_pause, run_redis_pause
from wababind_local.bench.render import render
from wababind_local.bench.results import Run
from wababind_local.bench.shared_redis import run_processes
from wababind_local.bench.stats import _pct, _ratio
from wababind_local.bench.targets import evaluate

IDLE_WEBHOOK_BINDS = 15
T = TypeVar("T")


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

    shared, shared_problem = _scenario(
        "shared",
        lambda: run_processes(
            config.qps,
            config.process_latency_ms,
            config.processes,
            config.process_batch,
            prefix,
            tag=200,
            jitter_ms=config.process_jitter_ms,
        ),
        lambda r: (
            f"{config.processes} x {config.process_batch} binds: "
            f"{_ratio(r.binds_per_s / config.qps)} quota, {_pct(r.throttled_share)} "
            f"throttled, {r.wall_s:.1f} s"
        ),
    )
    priority, priority_problem = _scenario(
        "priority",
        lambda: run_priority(
            config.qps,
            config.process_latency_ms,
            config.process_jitter_ms,
            config.processes,
            config.bulk_binds,
            IDLE_WEBHOOK_BINDS,
            prefix,
            tag=600,
        ),
        lambda r: (
            f"webhook p95 {_ratio(r.ratio)} its idle median, bulk "
            f"{_ratio(r.bulk_share)} of the free quota"
        ),
    )
    bulk_cost, bulk_cost_problem = _scenario(
        "bulk cost",
        lambda: run_bulk_cost(
            config.qps,
            config.process_latency_ms,
            config.process_jitter_ms,
            config.bulk_cost_binds,
            prefix,
            tag=700,
        ),
        lambda r: ", ".join(
            f"{n} instance(s) {r.per_1000(n):.0f} instance-s per 1,000 binds" for n in r.runs
        ),
    )
    after_bind, after_bind_problem = _scenario(
        "after bind",
        lambda: run_after_bind(
            config.qps,
            config.process_latency_ms,
            config.process_jitter_ms,
            config.after_bind_binds,
            prefix,
            tag=800,
        ),
        lambda r: (
            f"both steps on: {_ratio(r.ratio)} the bind quota, "
            f"{sum(r.throttled.values())} throttled, windows {r.max_window}"
        ),
    )
    overhead = measure_overhead(config.overhead_pairs, prefix)
    print(
        f"[overhead] webhook / bare SDK call CPU: {_ratio(overhead.cpu_ratio)}; the required "
        f"work alone {_ratio(overhead.required_ratio)}, "
        f"webhook / it {_ratio(overhead.over_required)}",
        flush=True,
    )
    pause, pause_problem = _scenario(
        "redis pause",
        lambda: run_redis_pause(config, prefix, tag=400),
        lambda r: (
            f"{r.paused.pause_s:g}-s pause: p95 answered {r.extra_wait_s(95):.1f} s "
            f"later, {len(r.paused.bound_twice)} WabaIds bound twice"
        ),
    )
    cold, _ = _scenario(
        "cold start",
        lambda: measure_cold_start(config.cold_reps, config.install),
        lambda r: "; ".join(
            f"{f} ready to serve / Tea SDK import: {_ratio(r.tea_ratio_of(f))}, "
            f"/ import floor: {_ratio(r.floor_ratio_of(f))}"
            for f in r.ready_s
        ),
        (ImportProbeError, subprocess.TimeoutExpired),
    )
    fc_cold = measure_fc_cold_start(config.cold_reps, config.install)
    package = measure_package(config.install)
    print(f"[package] code root / Tea SDK: {_ratio(package.ratio)}", flush=True)

    targets = evaluate(
        config,
        matrix,
        shared,
        cold,
        priority,
        overhead,
        bulk_cost=bulk_cost,
        fc_cold=fc_cold,
        after_bind=after_bind,
    )
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
        fc_cold=fc_cold,
    )
    text += "\n" + render_redis_pause(pause, pause_problem)
    text += "\n" + render_bulk_cost(bulk_cost, bulk_cost_problem)
    text += "\n" + render_after_bind(after_bind, after_bind_problem)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(text, encoding="utf-8")
    print()
    print(text, end="")
    print(f"\nwritten to {config.out}")
    print(write_quota_chart(config, matrix, shared))
    return 0


def _scenario(
    name: str,
    run: Callable[[], T],
    describe: Callable[[T], str],
    errors: tuple[type[BaseException], ...] = (RuntimeError,),
) -> tuple[T, None] | tuple[None, str]:
    """Run one scenario and say how it went in a line; a scenario that cannot run (no
    redis-server, a failed import probe) is reported, and the rest of the bench goes on."""
    try:
        result = run()
    except errors as exc:
        print(f"[{name}] not run: {exc}", flush=True)
        return None, str(exc)
    print(f"[{name}] {describe(result)}", flush=True)
    return result, None
