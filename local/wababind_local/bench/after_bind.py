"""Scenario: a bulk run with both AFTER_BIND steps on keeps the bind's quota (issue 18).

One MQ instance on a real redis-server drains a backlog with `sync-phone-numbers` and
`account-webhook` after every bind; each step has a quota of its own (10 calls/s per account,
as CAMS has), so binds still go at the bind quota. The simulator counts each operation apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from wababind_local.bench.results import Run
from wababind_local.bench.shared_redis import run_processes
from wababind_local.cams_simulator import (
    ACTION as BIND,
)
from wababind_local.cams_simulator import (
    ACTIONS,
    QUOTA_CODE,
    CallRecord,
    max_in_window,
)

STEPS_ENV = {
    "AFTER_BIND": "sync-phone-numbers,account-webhook",
    "ACCOUNT_WEBHOOK_URL": "https://hooks.example.com/cams-status",
}


@dataclass
class AfterBindRun:
    """The run, and per CAMS operation: calls, throttled, the most in any 1-s window."""

    qps: float
    run: Run
    calls: dict[str, int]
    throttled: dict[str, int]
    max_window: dict[str, int]
    without: Run | None = None  # the same backlog with AFTER_BIND empty, for comparison
    bind_span_s: float = 0.0  # first to last ChatappBindWaba call at CAMS
    tail_s: float = 0.0  # last bind call to the run's last call: the last WABA's steps

    @property
    def bind_rate(self) -> float:
        """The bind calls' own pace while the steps run, over the bind quota."""
        binds = self.calls.get(BIND, 0)
        return (binds - 1) / self.bind_span_s / self.qps if self.bind_span_s > 0 else 0.0

    @property
    def ratio(self) -> float:
        """Bound binds per second over the bind quota."""
        return self.run.binds_per_s / self.qps

    @property
    def kept(self) -> float:
        """Binds per second with the steps over those without them (the steps' own cost)."""
        if self.without is None or not self.without.binds_per_s:
            return float("nan")
        return self.run.binds_per_s / self.without.binds_per_s


def run_after_bind(
    qps: float, latency_ms: float, jitter_ms: float, binds: int, prefix: str, tag: int
) -> AfterBindRun:
    """One fresh MQ instance, `binds` binds, both steps on, on one redis-server; then the same
    without the steps."""
    calls: list[CallRecord] = []
    run = run_processes(
        qps, latency_ms, 1, binds, prefix, tag, jitter_ms, extra_env=STEPS_ENV, calls_out=calls
    )

    def of(action: str) -> list[CallRecord]:
        return [c for c in calls if c.action == action]

    bind_times = sorted(c.at for c in of(BIND))

    return AfterBindRun(
        qps,
        run,
        calls={a: len(of(a)) for a in ACTIONS},
        throttled={a: sum(1 for c in of(a) if c.code == QUOTA_CODE) for a in ACTIONS},
        max_window={a: max_in_window([c.at for c in of(a) if not c.throttled]) for a in ACTIONS},
        without=run_processes(qps, latency_ms, 1, binds, prefix, tag + 1, jitter_ms),
        bind_span_s=bind_times[-1] - bind_times[0] if bind_times else 0.0,
        tail_s=max(c.at for c in calls) - bind_times[-1] if bind_times else 0.0,
    )


def render_after_bind(result: AfterBindRun | None, problem: str | None) -> str:
    """The section of bench/results.md."""
    lines = ["## A bulk run with the after-bind steps", ""]
    if result is None:
        return "\n".join([*lines, f"Not run: {problem}.", ""]) + "\n"
    run = result.run
    lines += [
        f"One MQ instance, {run.requests} binds, `AFTER_BIND={STEPS_ENV['AFTER_BIND']}`, on one "
        f"redis-server: {run.bound} bound in {run.wall_s:.1f} s, "
        f"**{result.ratio:.3f}x** the bind quota ({result.qps:g} calls/s)"
        + (
            f"; without the steps the same run went at "
            f"{result.without.binds_per_s / result.qps:.3f}x ({result.kept:.3f}x of that kept)."
            if result.without is not None
            else "."
        ),
        "",
        f"The bind calls themselves went at {result.bind_rate:.3f}x the quota, first to last; "
        f"the last WABA's two steps ran {result.tail_s:.2f} s after its bind, once per run "
        "whatever the backlog (the wall-time ratio above includes them).",
        "",
        "| CAMS operation | calls | throttled | most in any 1-s window |",
        "|---|---|---|---|",
    ]
    for action in ACTIONS:
        lines.append(
            f"| {action} | {result.calls[action]} | {result.throttled[action]} | "
            f"{result.max_window[action]} |"
        )
    return "\n".join([*lines, ""]) + "\n"
