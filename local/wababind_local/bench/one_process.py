"""Scenario 1: one warm process binds a batch against a fresh simulator (in-process limiter)."""

from __future__ import annotations

import time
from collections import Counter

from wababind_local.bench.config import WINDOW_GAP_S
from wababind_local.bench.handler import (
    _load_handler,
    _reset_runtime,
    invoke,
    patched_env,
    product_env,
)
from wababind_local.bench.results import Run
from wababind_local.cams_simulator import (
    QUOTA_CODE,
    CamsSimulator,
    max_in_window,
)


def run_one_process(qps: float, latency_ms: float, batch: int, ids: list[str]) -> Run:
    """A warm instance binds one batch against a fresh simulator; ids[0] is the warm-up."""
    handler = _load_handler()
    with CamsSimulator(qps=qps, latency_s=latency_ms / 1000) as sim:
        with patched_env(product_env(sim.endpoint, qps, None)):
            _reset_runtime()
            try:
                invoke(handler, ids[:1])
                time.sleep(WINDOW_GAP_S)
                first = len(sim.calls())
                result = invoke(handler, ids[1 : batch + 1])
            finally:
                _reset_runtime()
        calls = sim.calls()
    load = calls[first:]
    return Run(
        latency_ms=latency_ms,
        batch=batch,
        processes=1,
        wall_s=result["finished"] - result["started"],
        statuses=Counter(result["statuses"]),
        durations_s=result["durations"],
        calls=len(load),
        throttled=sum(1 for c in load if c.code == QUOTA_CODE),
        call_times=[(c.at, c.code == QUOTA_CODE) for c in load],
        max_window=max_in_window([c.at for c in calls]),
        raised=[result["raised"]] if result["raised"] else [],
        warnings=result["warnings"],
    )
