"""What a scenario measured: a Run of binds, and the cold-start import times."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field


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
    """Fresh-interpreter times (s): `ready_s` the handler import plus FC's initializer (ready to
    serve), `floor_s` importing the runtime dependencies alone, `tea_s` the Tea SDK client;
    `breakdown` attributes the ready-to-serve imports. Ratios compare the fastest of each."""

    ready_s: list[float] = field(default_factory=list)
    tea_s: list[float] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    tea_problem: str | None = None
    breakdown: list[tuple[str, float, str]] = field(default_factory=list)
    redis: bool = False  # REDIS_URL was set: the floor imports redis, the initializer connects

    @property
    def tea_ratio(self) -> float:
        return _fastest_ratio(self.ready_s, self.tea_s)

    @property
    def floor_ratio(self) -> float:
        return _fastest_ratio(self.ready_s, self.floor_s)


def _fastest_ratio(mine: list[float], other: list[float]) -> float:
    return min(mine) / min(other) if mine and other else math.nan


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
