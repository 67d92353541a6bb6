"""`wababind report FILE...`: how did the binds go — counts, codes, timings, rate, undelivered.

It reads JSON Lines: a `bulk --out` file, the log lines of the functions (`make demo --out`, an
FC log export), several at once. A line is an outcome record (`Kind` `WabaBindOutcome`) or an
undelivered record (`WabaBindOutcomeUndelivered`, counted by `Sink`, its outcome not counted
again: the log sink wrote that outcome as its own line). A record may also sit in the `message`
or `content` field of an exported log line, or after a text prefix. Every other line (app logs,
blank, broken) is skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from wababind_local.cli.base import CliError, Commands
from wababind_local.stats import percentile

OUTCOME_KIND = "WabaBindOutcome"
UNDELIVERED_KIND = "WabaBindOutcomeUndelivered"  # wababind.sinks.log writes it
EXPORT_FIELDS = ("message", "content")  # where a log export keeps the line the function wrote
UNKNOWN = "unknown"
PLOT_SIZE_IN, PLOT_DPI = (10.0, 4.0), 100  # the PNG is 1000 x 400 pixels
PLOT_MAX_BARS = 300
STATUS_COLOURS = {"bound": "#2e7d32", "duplicate": "#1565c0", "failed": "#c62828"}


@dataclass
class Records:
    """What the files held: outcome records, undelivered records by sink, lines skipped."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    undelivered: Counter[str] = field(default_factory=Counter)
    skipped: int = 0

    def add_line(self, line: str) -> None:
        record = record_in(line)
        if record is None:
            self.skipped += 1
        elif record["Kind"] == OUTCOME_KIND:
            self.outcomes.append(record)
        else:
            self.undelivered[str(record.get("Sink") or UNKNOWN)] += 1


def record_in(line: str, depth: int = 0) -> dict[str, Any] | None:
    """The outcome or undelivered record on one line, or None."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        doc = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("Kind") in (OUTCOME_KIND, UNDELIVERED_KIND):
        return doc
    inner = next((doc[k] for k in EXPORT_FIELDS if isinstance(doc.get(k), str)), None)
    return record_in(inner, depth + 1) if inner is not None and depth == 0 else None


def read_records(paths: Iterable[str], stdin: IO[str] | None = None) -> Records:
    """Every line of every file (`-` is standard input)."""
    records = Records()
    for name in paths:
        if name == "-":
            lines: Iterable[str] = (stdin or sys.stdin).read().splitlines()
        else:
            try:
                lines = Path(name).read_text(encoding="utf-8-sig", errors="replace").splitlines()
            except OSError as exc:
                raise CliError(f"cannot read {name}: {exc.strerror}") from None
        for line in lines:
            records.add_line(line)
    return records


# --- the summary -----------------------------------------------------------------------------


def summarize_records(records: Records) -> dict[str, Any]:
    """The `--json` document, exactly the keys issue 11 names; None where nothing was measured.

    BindsPerSecond = bound outcomes / (last FinishedAt - first StartedAt), as `make bench`
    counts binds/s. ByLane counts a record without `Lane` (written before lanes) as "unknown".
    """
    outcomes = records.outcomes
    durations = _numbers(outcomes, "DurationMs")
    waits = _numbers(outcomes, "QuotaWaitMs")
    statuses = Counter(str(r.get("Status") or UNKNOWN) for r in outcomes)
    span = _span_s(outcomes)
    return {
        "Total": len(outcomes),
        "ByStatus": dict(statuses.most_common()),
        "ByCode": dict(Counter(str(r.get("Code") or UNKNOWN) for r in outcomes).most_common()),
        "ByLane": dict(Counter(str(r.get("Lane") or UNKNOWN) for r in outcomes).most_common()),
        "Retryable": sum(1 for r in outcomes if r.get("Retryable") is True),
        "Ambiguous": sum(1 for r in outcomes if r.get("Ambiguous") is True),
        "AfterBind": _step_codes(outcomes),
        "DurationMs": {
            "p50": _stat(percentile(durations, 50)),
            "p95": _stat(percentile(durations, 95)),
            "max": _stat(max(durations, default=math.nan)),
        },
        "QuotaWaitMs": {
            "p50": _stat(percentile(waits, 50)),
            "p95": _stat(percentile(waits, 95)),
        },
        "BindsPerSecond": _stat(statuses["bound"] / span if span else math.nan),
        "Undelivered": dict(records.undelivered.most_common()),
        "Skipped": records.skipped,
    }


def _step_codes(outcomes: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """AFTER_BIND's steps: for each step run, how many outcomes ended with each Code."""
    steps: dict[str, Counter[str]] = {}
    for record in outcomes:
        after = record.get("AfterBind")
        if not isinstance(after, dict):
            continue
        for step, result in after.items():
            code = result.get("Code") if isinstance(result, dict) else None
            steps.setdefault(str(step), Counter())[str(code or UNKNOWN)] += 1
    return {step: dict(codes.most_common()) for step, codes in sorted(steps.items())}


def _numbers(outcomes: Sequence[dict[str, Any]], name: str) -> list[float]:
    return [
        float(r[name])
        for r in outcomes
        if isinstance(r.get(name), int | float) and not isinstance(r.get(name), bool)
    ]


def _stat(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def _time(value: Any) -> float | None:
    """An outcome's UTC ISO-8601 time (`...Z`) as epoch seconds; None when absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _span_s(outcomes: Sequence[dict[str, Any]]) -> float:
    starts = [t for r in outcomes if (t := _time(r.get("StartedAt"))) is not None]
    ends = [t for r in outcomes if (t := _time(r.get("FinishedAt"))) is not None]
    if not starts or not ends:
        return 0.0
    return max(0.0, max(ends) - min(starts))


# --- the table -------------------------------------------------------------------------------


def print_table(summary: dict[str, Any], sources: Sequence[str], out: IO[str]) -> None:
    """The summary as a few small tables, for a person at a terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    total = summary["Total"]

    def share(n: int) -> str:
        return f"{n / total:.0%}" if total else "-"

    def table(title: str, *columns: str) -> Table:
        grid = Table(title=title, title_justify="left", min_width=40)
        grid.add_column(columns[0])
        for name in columns[1:]:
            grid.add_column(name, justify="right")
        return grid

    console.print(f"{total} outcomes from {', '.join(sources)}", soft_wrap=True)
    outcomes = table("By status", "Status", "n", "share")
    for status, n in summary["ByStatus"].items():
        outcomes.add_row(status, str(n), share(n))
    outcomes.add_row("failed, retryable", str(summary["Retryable"]), share(summary["Retryable"]))
    outcomes.add_row("may be bound (Ambiguous)", str(summary["Ambiguous"]), "")
    rate = summary["BindsPerSecond"]
    outcomes.add_row("binds per second", "-" if rate is None else f"{rate:g}", "")
    console.print(outcomes)

    codes = table("By code", "Code", "n", "share")
    for code, n in summary["ByCode"].items():
        codes.add_row(code, str(n), share(n))
    console.print(codes)

    if summary["AfterBind"]:
        steps = table("After the bind", "Step", "Code", "n")
        for step, step_codes in summary["AfterBind"].items():
            for code, n in step_codes.items():
                steps.add_row(step, code, str(n))
        console.print(steps)

    lanes = table("By lane", "Lane", "n", "share")
    for lane, n in summary["ByLane"].items():
        lanes.add_row(lane, str(n), share(n))
    console.print(lanes)

    timing = table("Time (ms)", "", "p50", "p95", "max")
    duration, wait = summary["DurationMs"], summary["QuotaWaitMs"]
    timing.add_row("DurationMs", _ms(duration["p50"]), _ms(duration["p95"]), _ms(duration["max"]))
    timing.add_row("QuotaWaitMs", _ms(wait["p50"]), _ms(wait["p95"]), "")
    console.print(timing)

    undelivered = summary["Undelivered"]
    if undelivered:
        sinks = table("Undelivered outcomes (a sink failed; the log has them)", "Sink", "n")
        for sink, n in undelivered.items():
            sinks.add_row(sink, str(n))
        console.print(sinks)
    console.print(f"{summary['Skipped']} other line(s) skipped (app logs, blank, not JSON)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


# --- the plot --------------------------------------------------------------------------------


def plot(outcomes: Sequence[dict[str, Any]], path: Path, qps: float) -> None:
    """PNG: binds per second over time (by FinishedAt), stacked by Status, with the quota line.

    One bar per second; a long run gets wider bins (at most PLOT_MAX_BARS bars), still drawn
    as binds per second, so the quota line stays comparable.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    timed = [
        (t, str(r.get("Status") or UNKNOWN))
        for r in outcomes
        if (t := _time(r.get("FinishedAt"))) is not None
    ]
    figure = Figure(figsize=PLOT_SIZE_IN, dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title("Binds per second, by Status")
    axes.set_ylabel("binds per second")
    bottom: list[float] = []
    if timed:
        first = min(t for t, _ in timed)
        span = max(t for t, _ in timed) - first
        width = max(1, math.ceil((span + 1) / PLOT_MAX_BARS))
        bins = int(span // width) + 1
        counts: dict[str, list[int]] = {}
        for at, status in timed:
            counts.setdefault(status, [0] * bins)[int((at - first) // width)] += 1
        lefts = [i * width for i in range(bins)]
        bottom = [0.0] * bins
        ordered = [s for s in STATUS_COLOURS if s in counts] + sorted(
            set(counts) - set(STATUS_COLOURS)
        )
        for status in ordered:
            rates = [n / width for n in counts[status]]
            axes.bar(
                lefts,
                rates,
                width=width,
                bottom=bottom,
                align="edge",
                label=status,
                color=STATUS_COLOURS.get(status, "#9e9e9e"),
            )
            bottom = [b + r for b, r in zip(bottom, rates, strict=True)]
        started = datetime.fromtimestamp(first, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        axes.set_xlabel(f"seconds since {started}" + (f" ({width}-s bins)" if width > 1 else ""))
    else:
        axes.text(
            0.5,
            0.5,
            "no outcome with a FinishedAt",
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
        axes.set_xlabel("seconds")
    axes.axhline(qps, color="black", linestyle="--", linewidth=1, label=f"quota ({qps:g}/s)")
    axes.set_ylim(0, max([qps, *bottom]) * 1.3)  # room for the legend above the quota line
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, format="png")


# --- the command -----------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    records = read_records(args.files)
    summary = summarize_records(records)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print_table(summary, args.files, sys.stdout)
    if args.plot:
        try:
            plot(records.outcomes, Path(args.plot), args.qps)
        except OSError as exc:
            raise CliError(f"cannot write {args.plot}: {exc.strerror}") from None
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _quota(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"wants calls per second above 0, not {text!r}")
    return value


def register(commands: Commands) -> None:
    report = commands.add_parser(
        "report",
        help="summarize outcome records from JSON Lines files (bulk --out, function logs)",
        description=__doc__,
    )
    report.add_argument("files", nargs="+", metavar="FILE", help="JSON Lines; - for stdin")
    report.add_argument("--json", action="store_true", help="one JSON document instead")
    report.add_argument("--plot", metavar="PNG", help="write binds per second over time")
    report.add_argument(
        "--qps",
        type=_quota,
        default=os.environ.get("CAMS_QPS") or "10",
        help="the quota line of --plot (env CAMS_QPS; 10)",
    )
    report.set_defaults(run=cmd_report)
