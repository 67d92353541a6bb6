"""Scenario: a person waits on the signup page while the queues drain a backlog.

One redis-server, one simulator (gateway jitter on), `processes` cold bulk instances (the MQ
handler) and one cold webhook instance (the HTTP handler), all fresh processes. The webhook
instance first binds alone (idle), then keeps binding one request at a time while the bulk
instances drain their backlog. Each webhook bind is timed as the handler sees it.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import random
import time
from dataclasses import dataclass, field
from typing import Any

from wababind_local.bench.config import PROCESS_READY_TIMEOUT_S
from wababind_local.bench.handler import (
    _product_path,
    _reset_runtime,
    patched_env,
    product_env,
    run_initializer,
    waba_ids,
)
from wababind_local.bench.overhead import webhook_event
from wababind_local.bench.processes import _collect, _wait_ready, process_worker
from wababind_local.bench.redis_server import redis_server
from wababind_local.bench.results import Run
from wababind_local.bench.shared_redis import run_of
from wababind_local.cams_simulator import DEFAULT_STS_KEY, QUOTA_CODE, CamsSimulator
from wababind_local.fc_context import Credentials, FCContext, FunctionMeta
from wababind_local.stats import percentile

IDLE_PAUSE_S = 0.3  # between idle webhook binds
LOADED_PAUSE_S = (1.5, 2.5)  # between webhook binds during the drain: a signup now and then


@dataclass
class Priority:
    """Webhook latencies (s) idle and during the drain; the drain as a Run; the quota's use."""

    idle_s: list[float] = field(default_factory=list)
    loaded_s: list[float] = field(default_factory=list)
    bulk: Run | None = None
    webhook_calls_in_drain: int = 0
    bulk_calls_in_drain: int = 0
    qps: float = 0.0

    @property
    def ratio(self) -> float:
        """Webhook p95 during the drain over its idle median."""
        return percentile(self.loaded_s, 95) / percentile(self.idle_s, 50)

    @property
    def bulk_share(self) -> float:
        """Bulk's CAMS calls in the drain ÷ the slots the webhook binds left it."""
        assert self.bulk is not None
        free = self.qps * self.bulk.wall_s - self.webhook_calls_in_drain
        return self.bulk_calls_in_drain / free if free > 0 else float("nan")

    @property
    def bulk_quota(self) -> float:
        """Bulk's CAMS calls per second in the drain ÷ the quota (webhook slots not deducted)."""
        assert self.bulk is not None
        return self.bulk_calls_in_drain / (self.qps * self.bulk.wall_s)


def webhook_worker(
    env: dict[str, str | None],
    idle_ids: list[str],
    loaded_ids: list[str],
    ready: Any,
    go_loaded: Any,
    stop: Any,
    results: Any,
) -> None:
    """A cold HTTP-function instance: idle binds, then binds until told to stop."""
    try:
        with patched_env({**env, "WEBHOOK_AUTH": "none", "WEBHOOK_SECRET": None}):
            _product_path()
            from index import http_handler

            _reset_runtime()
            context = FCContext(
                function=FunctionMeta("bind-waba-http", "index.http_handler", 512, 30),
                credentials=Credentials(
                    DEFAULT_STS_KEY.access_key_id,
                    DEFAULT_STS_KEY.access_key_secret,
                    DEFAULT_STS_KEY.security_token or "",
                ),
            )
            run_initializer(context)

            def timed(waba_id: str) -> float:
                event = webhook_event(waba_id)
                with contextlib.redirect_stdout(io.StringIO()):
                    started = time.monotonic()
                    http_handler(event, context)
                    return time.monotonic() - started

            ready.put("webhook")
            idle = []
            for waba_id in idle_ids:
                idle.append(timed(waba_id))
                time.sleep(IDLE_PAUSE_S)
            results.put({"phase": "idle", "idle": idle})
            if not go_loaded.wait(PROCESS_READY_TIMEOUT_S):
                results.put({"phase": "loaded", "error": "never told to start"})
                return
            loaded = []
            for waba_id in loaded_ids:  # the first right as the drain starts, then now and then
                loaded.append(timed(waba_id))
                if stop.wait(random.uniform(*LOADED_PAUSE_S)):
                    break
            results.put({"phase": "loaded", "loaded": loaded})
    except Exception as exc:
        results.put({"phase": "error", "error": f"{type(exc).__name__}: {exc}"})


def run_priority(
    qps: float,
    latency_ms: float,
    jitter_ms: float,
    processes: int,
    bulk_binds: int,
    idle_binds: int,
    prefix: str,
    tag: int,
) -> Priority:
    """Idle webhook binds, then `bulk_binds` split over `processes` bulk instances while the
    webhook instance keeps binding."""
    ctx = multiprocessing.get_context("spawn")
    per_instance = -(-bulk_binds // processes)
    result = Priority(qps=qps)
    with (
        redis_server() as redis_url,
        CamsSimulator(qps=qps, latency_s=latency_ms / 1000, jitter_s=jitter_ms / 1000) as sim,
    ):
        env = product_env(sim.endpoint, qps, redis_url)
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        hook_ready, hook_results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        bulk_ids = [waba_ids(prefix, tag + n, per_instance) for n in range(processes)]
        hook_ids = waba_ids(prefix, tag + 90, idle_binds + 200)
        procs = [
            ctx.Process(
                target=process_worker, args=(n, env, None, ids, ready, go, results), daemon=True
            )
            for n, ids in enumerate(bulk_ids)
        ]
        hook = ctx.Process(
            target=webhook_worker,
            args=(
                env,
                hook_ids[:idle_binds],
                hook_ids[idle_binds:],
                hook_ready,
                go,
                stop,
                hook_results,
            ),
            daemon=True,
        )
        for proc in [*procs, hook]:
            proc.start()
        try:
            _wait_ready(ready, results, procs)
            _wait_ready(hook_ready, hook_results, [hook])
            idle = hook_results.get(timeout=idle_binds * 10 + 60)
            if "error" in idle:
                raise RuntimeError(f"webhook instance: {idle['error']}")
            result.idle_s = idle["idle"]
            go.set()
            reports = _collect(results, processes, bulk_binds * 1.2 / qps + 120)
            stop.set()
            loaded = hook_results.get(timeout=60)
            if "error" in loaded:
                raise RuntimeError(f"webhook instance: {loaded['error']}")
            result.loaded_s = loaded["loaded"]
        finally:
            stop.set()
            for proc in [*procs, hook]:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
        calls = sim.calls()
    result.bulk = run_of(reports, calls, latency_ms, per_instance, jitter_ms)
    hook_set = set(hook_ids)
    started = min(r["started"] for r in reports)
    in_drain = [
        c for c in calls if started <= c.at <= started + result.bulk.wall_s and c.code != QUOTA_CODE
    ]
    result.webhook_calls_in_drain = sum(1 for c in in_drain if c.waba_id in hook_set)
    result.bulk_calls_in_drain = len(in_drain) - result.webhook_calls_in_drain
    return result
