"""Spawned FC instances: the worker each one runs, and waiting for them to be ready and report."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Sequence
from typing import Any

from wababind_local.bench.config import PROCESS_READY_TIMEOUT_S
from wababind_local.bench.handler import (
    _load_handler,
    _reset_runtime,
    invoke,
    patched_env,
    run_initializer,
)


def process_worker(
    number: int,
    env: dict[str, str | None],
    warmup_id: str | None,
    ids: list[str],
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """A spawned FC instance: load the code, run its initializer if it has one (as FC does
    before the first invocation), warm up if `warmup_id`, say ready, wait for the start, bind,
    report plain data. Without a warm-up the first invocation is otherwise cold."""
    try:
        with patched_env(env):
            handler = _load_handler()
            _reset_runtime()
            run_initializer()
            if warmup_id is not None:
                invoke(handler, [warmup_id])
            limiter = _limiter()
            limiter.sent = []  # each call's send time, on the limiter's clock
            if not ready_and_told_to_start(number, ready, go, results):
                return
            results.put({"number": number, **invoke(handler, ids), "sent": limiter.sent})
    except Exception as exc:
        results.put({"number": number, "error": f"{type(exc).__name__}: {exc}"})


def _limiter() -> Any:
    """The instance's quota limiter (the runtime the handler uses, built if not yet)."""
    from wababind.runtime import get_runtime

    return get_runtime().binder._limiter


def ready_and_told_to_start(number: int, ready: Any, go: Any, results: Any) -> bool:
    """In a spawned instance: say ready, wait for the start (or report that it never came)."""
    ready.put(number)
    if not go.wait(PROCESS_READY_TIMEOUT_S):
        results.put({"number": number, "error": "never told to start"})
        return False
    return True


def join_all(procs: Sequence[Any]) -> None:
    """Wait for the spawned instances to end; stop those that do not."""
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


def _wait_ready(ready: Any, results: Any, procs: Sequence[Any]) -> None:
    deadline = time.monotonic() + PROCESS_READY_TIMEOUT_S
    seen = 0
    while seen < len(procs):
        with contextlib.suppress(queue.Empty):
            failed = results.get_nowait()
            raise RuntimeError(f"process {failed['number']}: {failed.get('error')}")
        try:
            ready.get(timeout=0.2)
            seen += 1
        except queue.Empty:
            dead = [n for n, proc in enumerate(procs) if proc.exitcode is not None]
            if dead:
                code = procs[dead[0]].exitcode
                raise RuntimeError(f"process {dead[0]} exited (code {code}) before ready") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen} of {len(procs)} processes got ready") from None


def _collect(results: Any, processes: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    reports: list[dict[str, Any]] = []
    while len(reports) < processes:
        try:
            reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise RuntimeError(f"only {len(reports)} of {processes} processes reported") from None
    return reports
