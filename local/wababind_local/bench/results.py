"""What a scenario measured: a Run of binds, and the cold-start import times."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from wababind_local.stats import percentile


@dataclass
class Run:
    """One measured load: how many binds, how long, and what CAMS saw."""

    latency_ms: float
    batch: int
    processes: int
    wall_s: float
    statuses: Counter[str]
    durations_s: list[float]
    calls: int
    throttled: int
    max_window: int
    raised: list[str] = field(default_factory=list)
    warnings: int = 0
    # each CAMS call of the load: (arrival at the simulator, its clock in s; throttled?)
    call_times: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def bound(self) -> int:
        return self.statuses["bound"]

    @property
    def binds_per_s(self) -> float:
        return self.bound / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.calls if self.calls else 0.0


@dataclass
class ColdStart:
    """Import times (s) in fresh interpreters; `breakdown` attributes the handler's import."""

    handler_s: list[float] = field(default_factory=list)
    tea_s: list[float] = field(default_factory=list)
    tea_problem: str | None = None
    breakdown: list[tuple[str, float, str]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        if not self.handler_s or not self.tea_s:
            return math.nan
        return percentile(self.handler_s, 50) / percentile(self.tea_s, 50)
