"""Pure helpers, tested on fixed data: the import-time breakdown, number formats."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

_IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


@dataclass
class _ImportNode:
    name: str
    self_us: int
    cumulative_us: int
    children: list[_ImportNode] = field(default_factory=list)


def import_breakdown(
    importtime: str, module: str, own: tuple[str, ...] = ("index", "wababind")
) -> list[tuple[str, float, str]]:
    """From `python -X importtime` output: (package, ms, first imported by), biggest first.

    The product's own modules count their own time as "<own> (module bodies)"; every other
    package they import counts its whole cumulative time, under the module that imported it
    first (a package imported again later costs nothing then).
    """
    pending: dict[int, list[_ImportNode]] = {}
    for line in importtime.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if match is None:
            continue
        depth = (len(match.group(3)) - 1) // 2
        node = _ImportNode(match.group(4), int(match.group(1)), int(match.group(2)))
        node.children = pending.pop(depth + 1, [])
        pending.setdefault(depth, []).append(node)
    root = next((n for n in pending.get(0, []) if n.name == module), None)
    if root is None:
        return []

    def is_own(name: str) -> bool:
        return name.split(".")[0] in own

    totals: Counter[str] = Counter()
    first_by: dict[str, str] = {}

    def walk(node: _ImportNode) -> None:
        totals[f"{'/'.join(own)} (module bodies)"] += node.self_us
        for child in node.children:
            if is_own(child.name):
                walk(child)
            else:
                package = child.name.split(".")[0]
                totals[package] += child.cumulative_us
                first_by.setdefault(package, node.name)

    walk(root)
    return [(package, us / 1000, first_by.get(package, "")) for package, us in totals.most_common()]


def round_ratio(mine: Sequence[float], other: Sequence[float]) -> float:
    """The median of the rounds' ratios (mine[i] / other[i]). The bench runs its fresh
    interpreters in rounds, every probe back to back, so each ratio compares two runs under the
    same load and the median drops the rounds a neighbour disturbed; the fastest of each drew
    the two sides from different rounds (two copies of one package read 0.94x-1.11x)."""
    ratios = [m / o for m, o in zip(mine, other, strict=False)]
    return statistics.median(ratios) if ratios else math.nan


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}x"


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _secs(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"
