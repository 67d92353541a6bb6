"""Scenario: what a bulk run costs in FC instance time, with 1, 2 and 4 instances at once.

FC bills each instance from invocation to return, waiting included. One MQ instance fills the
quota, so every further concurrent instance mostly waits for slots, billed. Each row: fresh
processes on one real redis-server and the CAMS simulator (gateway jitter as the other
scenarios), one backlog split evenly; instance-seconds = the sum of every instance's
invocation-to-return time, scaled to 1,000 bound binds. At a full quota it grows linearly with
the backlog: 10,000 WABAs cost ten times the per-1,000 figure (plus one cold start each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from wababind_local.bench.results import Run
from wababind_local.bench.shared_redis import run_processes

INSTANCES = (1, 2, 4)


@dataclass
class BulkCost:
    """One Run per instance count, the same backlog each time."""

    qps: float
    runs: dict[int, Run] = field(default_factory=dict)

    def per_1000(self, instances: int) -> float:
        run = self.runs[instances]
        return run.instance_s / run.bound * 1000 if run.bound else float("nan")

    @property
    def floor_per_1000(self) -> float:
        """The least one instance can be billed: 1,000 binds at the quota."""
        return 1000 / self.qps


def run_bulk_cost(
    qps: float,
    latency_ms: float,
    jitter_ms: float,
    binds: int,
    prefix: str,
    tag: int,
    instances: Sequence[int] = INSTANCES,
) -> BulkCost:
    """The backlog of `binds` drained by each instance count in turn (a divisor of each)."""
    cost = BulkCost(qps)
    for number, count in enumerate(instances):
        cost.runs[count] = run_processes(
            qps, latency_ms, count, binds // count, prefix, tag + 10 * number, jitter_ms
        )
    return cost


def render_bulk_cost(cost: BulkCost | None, problem: str | None) -> str:
    """The section of bench/results.md."""
    lines = ["## Cost of a bulk run: instance-seconds per 1,000 binds", ""]
    if cost is None:
        return "\n".join([*lines, f"Not run: {problem}.", ""]) + "\n"
    lines += [
        "| instances at once | binds | bound | wall (s) | x quota | instance-seconds "
        "| per 1,000 binds | ÷ the floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for count, run in cost.runs.items():
        per = cost.per_1000(count)
        lines.append(
            f"| {count} | {run.requests} | {run.bound} | {run.wall_s:.1f} | "
            f"{run.binds_per_s / cost.qps:.3f}x | {run.instance_s:.1f} | {per:.0f} | "
            f"{per / cost.floor_per_1000:.2f}x |"
        )
    lines += [
        "",
        f"The floor is 1,000 binds at the quota: {cost.floor_per_1000:.0f} instance-seconds. "
        "The backlog is scaled down; at a full quota the cost grows linearly with it, so "
        f"10,000 WABAs with one instance cost about {10 * cost.per_1000(min(cost.runs)):.0f} "
        "instance-seconds (README, Sizing and cost, prices it).",
        "",
    ]
    return "\n".join(lines) + "\n"
