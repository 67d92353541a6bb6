"""bench/quota.png: CAMS calls in the one-second window ending at each call, over time, per run.

The quota is a sliding one-second window, so the line is, at each moment t, the count of calls
in (t - 1 s, t]; its highest point is the table's "max calls in any 1-s window". Throttled
calls (`System.LimitControl`) are marked where they arrived.

    calls   quota ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─
    in the          ┌─┐   x      ┌──┐
    last 1 s   ┌────┘ └──────────┘  └───── …
               └─────────────────────────────▶ s since the load's first call
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wababind_local.bench.config import Config
from wababind_local.bench.results import Run

CHART_NAME = "quota.png"  # beside the results file
PANEL_SIZE_IN, CHART_DPI = (10.0, 3.2), 100
CALLS_COLOUR, THROTTLED_COLOUR = "#1565c0", "#c62828"


@dataclass(frozen=True)
class CallTrace:
    """One run as the simulator saw it: (arrival time in s, throttled?) of each CAMS call."""

    title: str
    calls: Sequence[tuple[float, bool]]


def window_counts(arrivals: Sequence[float], window_s: float = 1.0) -> list[int]:
    """For each arrival (sorted), how many arrivals fall in (t - window_s, t], itself included."""
    counts, lo = [], 0
    for hi, at in enumerate(arrivals):
        while arrivals[lo] <= at - window_s:
            lo += 1
        counts.append(hi - lo + 1)
    return counts


def window_curve(arrivals: Sequence[float], window_s: float = 1.0) -> tuple[list[float], list[int]]:
    """The calls in (t - window_s, t] as a step function of t: each change point, the count from it.

    A call adds one as it arrives (sorted arrivals) and leaves window_s later; leaving is decided
    as `max_in_window` decides it, so the curve's peak is that count exactly.
    """
    times: list[float] = []
    counts: list[int] = []
    last_is_arrival = False

    def step(at: float, level: int, arrival: bool) -> None:
        nonlocal last_is_arrival
        at = max(at, times[-1]) if times else at  # float rounding never steps back in time
        if times and times[-1] == at and (arrival or not last_is_arrival):
            counts[-1] = level  # several arrivals, or several departures, at one instant
        else:  # a departure at an arrival's instant drops right after it: the peak stays
            times.append(at)
            counts.append(level)
        last_is_arrival = arrival

    lo = 0
    for hi, at in enumerate(arrivals):
        while arrivals[lo] <= at - window_s:
            step(min(arrivals[lo] + window_s, at), hi - lo - 1, False)
            lo += 1
        step(at, hi - lo + 1, True)
    for gone in range(lo, len(arrivals)):
        step(arrivals[gone] + window_s, len(arrivals) - gone - 1, False)
    return times, counts


def draw_quota_chart(traces: Sequence[CallTrace], qps: float, path: Path) -> None:
    """One panel per trace, on a shared y scale, the quota as a dashed line; writes a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = PANEL_SIZE_IN
    figure = Figure(figsize=(width, height * max(1, len(traces))), dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    panels = figure.subplots(max(1, len(traces)), 1, squeeze=False)[:, 0]
    top = qps
    for axes, trace in zip(panels, traces, strict=False):
        calls = sorted(trace.calls)
        first = calls[0][0] if calls else 0.0
        times = [at - first for at, _ in calls]
        counts = window_counts(times)
        curve_times, curve = window_curve(times)
        top = max([top, *curve])
        axes.step(
            curve_times, curve, where="post", color=CALLS_COLOUR, label="calls in the last 1 s"
        )
        throttled = [(t, n) for t, n, (_, hit) in zip(times, counts, calls, strict=True) if hit]
        if throttled:
            axes.scatter(
                [t for t, _ in throttled],
                [n for _, n in throttled],
                marker="x",
                color=THROTTLED_COLOUR,
                zorder=3,
                label="throttled",
            )
        axes.axhline(qps, color="black", linestyle="--", linewidth=1, label=f"quota ({qps:g}/s)")
        peak = max(curve, default=0)
        axes.set_title(
            f"{trace.title}: max {peak} calls in a 1-s window, "
            f"{len(throttled)} of {len(calls)} throttled",
            loc="left",
        )
        axes.set_ylabel("CAMS calls")
        axes.legend(loc="upper right", ncols=3, fontsize="small")
    for axes in panels:
        axes.set_ylim(0, top * 1.4)  # the legend sits above the quota line
    panels[-1].set_xlabel("seconds since the load's first CAMS call")
    figure.tight_layout()
    figure.savefig(path, format="png")


def quota_traces(config: Config, matrix: Sequence[Run], shared: Run | None) -> list[CallTrace]:
    """The one-process runs the targets judge (the middle cell, each jitter) and the
    shared-Redis run."""
    latency, batch = config.target_cell
    cells = [r for r in matrix if (r.latency_ms, r.batch) == (latency, batch)]
    traces = [
        CallTrace(
            f"one process, {batch} binds at {latency:g} ms, {cell.jitter_ms:g} ms jitter",
            cell.call_times,
        )
        for cell in cells
        if cell.call_times
    ]
    if shared is not None and shared.call_times:
        title = (
            f"{shared.processes} processes sharing redis-server, {shared.batch} binds each "
            f"at {shared.latency_ms:g} ms, {shared.jitter_ms:g} ms jitter"
        )
        traces.append(CallTrace(title, shared.call_times))
    return traces


def write_quota_chart(config: Config, matrix: Sequence[Run], shared: Run | None) -> str:
    """The bench's one call: draw quota.png beside the results file; a line saying where."""
    traces = quota_traces(config, matrix, shared)
    path = config.out.with_name(CHART_NAME)
    if not traces:
        return "quota chart not drawn: no run recorded its CAMS calls"
    if config.out.is_char_device() or not path.parent.is_dir():
        return f"quota chart not drawn: {config.out} is not a file in a folder"
    draw_quota_chart(traces, config.qps, path)
    return f"quota chart written to {path}"
