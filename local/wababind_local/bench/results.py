"""What a scenario measured: a Run of binds, and the cold-start import times."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from wababind_local.bench.stats import round_ratio


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
    jitter_ms: float = 0.0  # the simulator's gateway jitter
    redis_commands: int | None = None  # every command Redis ran for the load (INFO commandstats)
    redis_scripts: int | None = None  # of which Lua script calls (one round trip each)
    instance_s: float = 0.0  # every instance's invocation-to-return time, summed (FC bills it)
    # the limiter's own record: each call's send time on its clock (Redis's, when shared)
    sent_times: list[float] = field(default_factory=list)
    max_sent_window: int = 0  # the most of those in any 1-s window

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

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
    """Fresh-interpreter times (s): `ready_s` per function (HTTP, MQ) the handler import plus
    FC's initializer (ready to serve), `floor_s` importing the runtime dependencies alone,
    `tea_s` the Tea SDK client; `breakdown` attributes each function's ready-to-serve imports.
    Ratios are the median of the rounds' ratios (stats.round_ratio); a target applies to every
    function (bench.targets)."""

    ready_s: dict[str, list[float]] = field(default_factory=dict)
    tea_s: list[float] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    tea_problem: str | None = None
    breakdown: dict[str, list[tuple[str, float, str]]] = field(default_factory=dict)
    redis: bool = False  # REDIS_URL was set: the floor imports redis, the initializer connects

    def tea_ratio_of(self, function: str) -> float:
        return round_ratio(self.ready_s.get(function, []), self.tea_s)

    def floor_ratio_of(self, function: str) -> float:
        return round_ratio(self.ready_s.get(function, []), self.floor_s)


@dataclass
class PackageSize:
    """The code package for FC's runtime against the Tea SDK installed the same way (bytes)."""

    zip_bytes: int = 0
    code_root_bytes: int = 0
    tea_bytes: int = 0
    problem: str | None = None

    @property
    def ratio(self) -> float:
        return self.code_root_bytes / self.tea_bytes if self.tea_bytes else math.nan
