"""bench/results.md: the run, its tables and the targets, as Markdown."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone

from wababind_local.bench.cold_start import floor_names
from wababind_local.bench.config import (
    CAMS_TIMEOUT_S,
    MQ_TIMEOUT_S,
    TEA_MODULE,
    TEA_REQUIREMENT,
    Config,
)
from wababind_local.bench.fc_cold_start import FcColdStart, render_fc_cold_start
from wababind_local.bench.handler import _product_path
from wababind_local.bench.overhead import Overhead
from wababind_local.bench.priority import Priority
from wababind_local.bench.results import ColdStart, PackageSize, Run
from wababind_local.bench.stats import _pct, _ratio, _secs
from wababind_local.bench.targets import Target
from wababind_local.stats import percentile


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


MATRIX_HEADER = (
    "CAMS latency (ms)",
    "gateway jitter (ms)",
    "batch",
    "bound",
    "failed",
    "wall (s)",
    "binds/s",
    "x quota",
    "CAMS calls",
    "throttled",
    "p50 per bind (s)",
    "p95 per bind (s)",
    "max calls in a 1-s window",
    "max sends in a 1-s window (limiter's record)",
)


SHARED_HEADER = (
    "processes",
    "batch each",
    "CAMS latency (ms)",
    "gateway jitter (ms)",
    "bound",
    "failed",
    "wall (s)",
    "combined binds/s",
    "x quota",
    "CAMS calls",
    "throttled",
    "p50 per bind (s)",
    "p95 per bind (s)",
    "max calls in any 1-s window",
    "max sends in a 1-s window (limiter's record)",
    "Redis commands per bind",
    "of which script calls",
)

PRIORITY_HEADER = (
    "webhook binds",
    "while",
    "p50 (s)",
    "p95 (s)",
    "p95 ÷ idle p50",
)

OVERHEAD_HEADER = ("call", "calls", "median CPU (ms)", "median wall (ms)")


def _run_row(run: Run, qps: float) -> list[str]:
    return [
        f"{run.bound}",
        f"{run.statuses['failed']}",
        f"{run.wall_s:.2f}",
        f"{run.binds_per_s:.2f}",
        _ratio(run.binds_per_s / qps),
        f"{run.calls}",
        _pct(run.throttled_share),
        _secs(percentile(run.durations_s, 50)),
        _secs(percentile(run.durations_s, 95)),
        f"{run.max_window}",
        f"{run.max_sent_window}",
    ]


def render(
    config: Config,
    matrix: list[Run],
    shared: Run | None,
    shared_problem: str | None,
    cold: ColdStart | None,
    targets: list[Target],
    elapsed_s: float,
    package: PackageSize | None = None,
    priority: Priority | None = None,
    priority_problem: str | None = None,
    overhead: Overhead | None = None,
    fc_cold: Sequence[FcColdStart] = (),
) -> str:
    """bench/results.md: the run, its tables, the targets."""
    quota = config.qps
    _product_path()
    from wababind.runtime import batch_workers

    workers = batch_workers(quota)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# wababind benchmark",
        "",
        f"`make bench`{' --quick' if config.quick else ''} run of {when}, {elapsed_s:.0f} s: "
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs. CAMS simulator quota **{quota:g} calls/s** "
        f"(`CAMS_QPS={quota:g}`), `CAMS_TIMEOUT_S={CAMS_TIMEOUT_S:g}`, function timeout "
        f"{MQ_TIMEOUT_S} s, direct-invoke batches of unique WabaIds through `index.mq_handler`. "
        "Every instance is a fresh process, never warmed up; a batch is timed from invocation "
        "to return.",
        "",
        "## Targets",
        "",
    ]
    verdict = {True: "PASS", False: "**FAIL**", None: "not measured"}
    lines += _table(
        ("target", "measured", "result"),
        [(t.name, t.measured, verdict[t.passed]) for t in targets],
    )
    passed = sum(1 for t in targets if t.passed)
    lines += ["", f"{passed} of {len(targets)} targets met.", ""]
    if config.quick:
        lines += [
            "Quick run (`--quick`): small batches at a higher quota, a smoke test of the bench. "
            "The targets are meant for the full run, `make bench`.",
            "",
        ]

    lines += ["## One process (in-process limiter)", ""]
    lines += _table(
        MATRIX_HEADER,
        [
            [f"{r.latency_ms:g}", f"{r.jitter_ms:g}", f"{r.batch}", *_run_row(r, quota)]
            for r in matrix
        ],
    )
    lines += [""]

    lines += [f"## {config.processes} processes sharing one redis-server", ""]
    if shared is not None:
        lines += _table(
            SHARED_HEADER,
            [
                [
                    f"{shared.processes}",
                    f"{shared.batch}",
                    f"{shared.latency_ms:g}",
                    f"{shared.jitter_ms:g}",
                    *_run_row(shared, quota),
                    _per_bind(shared.redis_commands, shared),
                    _per_bind(shared.redis_scripts, shared),
                ]
            ],
        )
    else:
        lines += [f"Not run: {shared_problem}."]
    lines += [""]

    lines += _priority_lines(config, priority, priority_problem)
    lines += _overhead_lines(overhead)
    lines += ["## Cold start: ready to serve", ""]
    if cold is not None:
        floor = floor_names(cold.redis)
        rows = [
            _import_row(
                f"`index` + `index.initialize`, {function} function (ready to serve)", times
            )
            for function, times in cold.ready_s.items()
        ]
        rows += [
            _import_row(f"import floor: {floor}", cold.floor_s),
            _import_row(f"`{TEA_MODULE}` (Tea SDK, {TEA_REQUIREMENT})", cold.tea_s),
        ]
        lines += _table(("fresh interpreter", "fastest (ms)", "median", "max", "runs"), rows)
        lines += [""]
        lines += [
            f"{function} function, ready to serve / Tea SDK import: "
            f"**{_ratio(cold.tea_ratio_of(function))}**; / import floor: "
            f"**{_ratio(cold.floor_ratio_of(function))}** (the median of the rounds' ratios)."
            for function in cold.ready_s
        ]
        if cold.tea_problem:
            lines += ["", f"Tea SDK not measured: {cold.tea_problem}."]
        for function, breakdown in cold.breakdown.items():
            lines += [
                "",
                f"Where the {function} function's ready to serve spends its time (one "
                "`python -X importtime` run, which inflates times a little):",
                "",
            ]
            lines += _table(
                ("package", "ms", "first imported by"),
                [(p, f"{ms:.1f}", f"`{by}`" if by else "") for p, ms, by in breakdown[:10]],
            )
    else:
        lines += ["Not run."]
    if fc_cold:
        lines += ["", *render_fc_cold_start(fc_cold)]
    lines += ["", "## Code package", ""]
    if package is None or package.problem:
        lines += [f"Not measured: {package.problem if package else 'not run'}."]
    else:
        lines += _table(
            ("what", "size (MiB)"),
            [
                ("`make package` zip (what FC receives)", f"{package.zip_bytes / 2**20:.1f}"),
                (
                    "code root, unpacked (function code + wheels)",
                    f"{package.code_root_bytes / 2**20:.1f}",
                ),
                (f"{TEA_REQUIREMENT} installed the same way", f"{package.tea_bytes / 2**20:.1f}"),
            ],
        )
        lines += ["", f"Code root / Tea SDK: **{_ratio(package.ratio)}**."]
    lines += ["", "## How it is measured", ""]
    lines += [
        "- binds/s = bound binds ÷ wall time of the handler call (for several processes: from "
        "the first start to the last finish); x quota divides that by the simulator's quota.",
        "- Each instance is a fresh process that has imported the handler (as FC loads the "
        "code) and run the function's initializer if the code has one (as FC does before the "
        "first invocation), and is then invoked once, with no warm-up. The simulator counts "
        "each call in a strict sliding 1-s window after a random gateway delay of 0 to the "
        "jitter.",
        "- throttled = CAMS calls answered `System.LimitControl` ÷ CAMS calls of the load.",
        "- time per bind = each outcome's `DurationMs`, waiting for a quota slot included: in a "
        f"long batch each of the handler's {workers} workers (1.5 x quota) queues behind the "
        f"others, so a bind takes about {workers} slots, times the processes sharing the quota.",
        "- max calls in a 1-s window counts every call the simulator saw in the run (warm-ups "
        "and throttled calls included), over half-open windows [t, t + 1 s); max sends counts "
        "the same way the send times the limiter recorded, on its own clock (Redis's TIME when "
        "shared): the hard quota allows ⌊CAMS_QPS⌋ in any window, and the gateway jitter can "
        "only move arrivals at CAMS, not sends.",
        "- cold start = `time.perf_counter()` around importing a module in fresh interpreters "
        "(bytecode cached; runs interleaved); ready to serve imports `index` and runs its "
        "initializer with each function's context (its handler's modules only); a ratio is "
        "the median of the rounds' ratios (each round runs every probe back to back).",
    ]
    notes = [
        f"{r.processes} process(es), batch {r.batch}, {r.latency_ms:g} ms: the handler raised "
        f"{', '.join(r.raised)}; {r.warnings} app-log warning(s)"
        for r in [*matrix, *([shared] if shared else [])]
        if r.raised or r.warnings
    ]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _import_row(label: str, values: list[float]) -> list[str]:
    if not values:
        return [label, "n/a", "n/a", "n/a", "0"]
    return [
        label,
        f"{min(values) * 1000:.1f}",
        f"{percentile(values, 50) * 1000:.1f}",
        f"{max(values) * 1000:.1f}",
        f"{len(values)}",
    ]


def _per_bind(count: int | None, run: Run) -> str:
    return "n/a" if count is None or not run.requests else f"{count / run.requests:.1f}"


def _priority_lines(config: Config, priority: Priority | None, problem: str | None) -> list[str]:
    lines = [f"## Priority: webhook binds while {config.processes} instances drain bulk", ""]
    if priority is None or priority.bulk is None:
        return [*lines, f"Not run: {problem}.", ""]
    idle = percentile(priority.idle_s, 50)
    rows: list[tuple[list[float], str]] = [
        (priority.idle_s, "nothing else"),
        (priority.loaded_s, f"{config.bulk_binds} bulk binds drain"),
    ]
    lines += _table(
        PRIORITY_HEADER,
        [
            [
                f"{len(values)}",
                what,
                _secs(percentile(values, 50)),
                _secs(percentile(values, 95)),
                _ratio(percentile(values, 95) / idle),
            ]
            for values, what in rows
        ],
    )
    bulk = priority.bulk
    lines += [
        "",
        f"The drain took {bulk.wall_s:.1f} s (first bulk invocation to last return): "
        f"{priority.bulk_calls_in_drain} bulk and {priority.webhook_calls_in_drain} webhook "
        f"CAMS calls, {_pct(bulk.throttled_share)} throttled. Bulk used "
        f"**{_ratio(priority.bulk_share)}** of the slots the webhook binds left it "
        f"({_ratio(priority.bulk_quota)} of the whole quota).",
        "",
    ]
    return lines


def _overhead_lines(overhead: Overhead | None) -> list[str]:
    lines = ["## Overhead: a webhook bind against a bare SDK call", ""]
    if overhead is None or not overhead.bare_cpu_s:
        return [*lines, "Not run.", ""]
    rows = [
        ("webhook bind (`index.http_handler`)", overhead.webhook_cpu_s, overhead.webhook_wall_s),
        ("bare keep-alive `aliyunsdkcore` call", overhead.bare_cpu_s, overhead.bare_wall_s),
    ]
    if overhead.required_cpu_s:
        rows.append(
            (
                "the required work alone (`bench/required_work.py`)",
                overhead.required_cpu_s,
                overhead.required_wall_s,
            )
        )
    lines += _table(
        OVERHEAD_HEADER,
        [
            [
                name,
                f"{len(cpu)}",
                f"{percentile(cpu, 50) * 1000:.3f}",
                f"{percentile(wall, 50) * 1000:.3f}",
            ]
            for name, cpu, wall in rows
        ],
    )
    lines += [
        "",
        f"CPU ratio **{_ratio(overhead.cpu_ratio)}**, wall {_ratio(overhead.wall_ratio)}: "
        "the sides take turns in one process against one simulator (no quota, no latency); "
        "CPU is the calling thread's (`time.thread_time`), so the simulator's threads do not "
        "count.",
        "",
    ]
    if overhead.required_cpu_s:
        lines += [
            f"The required work alone costs **{_ratio(overhead.required_ratio)}** a bare call: "
            "the FC event and the bind request validated, the signature verified, the same "
            "CAMS call through our client, the outcome line written and flushed. The webhook "
            f"bind costs **{_ratio(overhead.over_required)}** that: what idempotency, the quota's "
            "lanes and the deadline budget add.",
            "",
        ]
    return lines
