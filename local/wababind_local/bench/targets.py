"""The issue's targets, each PASS, FAIL or not measured."""

from __future__ import annotations

import math
from dataclasses import dataclass

from wababind_local.bench.config import Config
from wababind_local.bench.results import ColdStart, Run
from wababind_local.bench.stats import _pct, _ratio

TARGET_ONE_PROCESS_RATIO = 0.97
TARGET_THROTTLED_SHARE = 0.01
TARGET_SHARED_RATIO = 0.95
TARGET_READY_TEA_RATIO = 0.45
TARGET_READY_FLOOR_RATIO = 1.1


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run


def evaluate(
    config: Config, matrix: list[Run], shared: Run | None, cold: ColdStart | None
) -> list[Target]:
    """The issue's targets, each PASS, FAIL or not measured."""
    latency, batch = config.target_cell
    quota = config.qps
    cell = next((r for r in matrix if r.latency_ms == latency and r.batch == batch), None)
    where = f"one process, {batch} binds at {latency:g} ms"
    targets = [
        Target(
            f"{where}: ≥ {TARGET_ONE_PROCESS_RATIO}x quota",
            _ratio(cell.binds_per_s / quota) if cell else "not run",
            cell.binds_per_s / quota >= TARGET_ONE_PROCESS_RATIO if cell else None,
        ),
        Target(
            f"{where}: ≤ {TARGET_THROTTLED_SHARE:.0%} of CAMS calls throttled",
            _pct(cell.throttled_share) if cell else "not run",
            cell.throttled_share <= TARGET_THROTTLED_SHARE if cell else None,
        ),
    ]
    n = config.processes
    targets += [
        Target(
            f"{n} processes with Redis: combined ≥ {TARGET_SHARED_RATIO}x quota",
            _ratio(shared.binds_per_s / quota) if shared else "not run",
            shared.binds_per_s / quota >= TARGET_SHARED_RATIO if shared else None,
        ),
        Target(
            f"{n} processes with Redis: no 1-s window above the quota ({quota:g} calls)",
            f"max {shared.max_window} calls" if shared else "not run",
            shared.max_window <= quota if shared else None,
        ),
    ]
    tea = cold.tea_ratio if cold else math.nan
    floor = cold.floor_ratio if cold else math.nan
    targets += [
        Target(
            f"cold start, ready to serve (import + initializer) ≤ {TARGET_READY_TEA_RATIO}x"
            " the Tea SDK client import",
            _ratio(tea) if not math.isnan(tea) else "not measured",
            None if math.isnan(tea) else tea <= TARGET_READY_TEA_RATIO,
        ),
        Target(
            f"cold start, ready to serve ≤ {TARGET_READY_FLOOR_RATIO}x the runtime dependencies'"
            " import floor",
            _ratio(floor) if not math.isnan(floor) else "not measured",
            None if math.isnan(floor) else floor <= TARGET_READY_FLOOR_RATIO,
        ),
    ]
    return targets
