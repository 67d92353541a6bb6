"""Scenario 1: one cold instance (a fresh process, no warm-up, in-process limiter) binds one
batch against a fresh simulator; the batch is timed from invocation to return."""

from __future__ import annotations

from wababind_local.bench.results import Run
from wababind_local.bench.shared_redis import run_processes


def run_one_process(
    qps: float, latency_ms: float, batch: int, prefix: str, tag: int, jitter_ms: float = 0.0
) -> Run:
    """One instance, no Redis: the spawned process imports the handler, then is invoked once."""
    return run_processes(qps, latency_ms, 1, batch, prefix, tag, jitter_ms, shared=False)
