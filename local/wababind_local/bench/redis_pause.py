"""Scenario: Redis paused mid-run. Fresh processes (MQ instances, ON_REDIS_OUTAGE=wait) share
one redis-server and the simulator's quota; each gets a batch of its own WabaIds plus 20 that
every batch holds, and redelivers it while the handler raises, as a trigger does. The load runs
twice in one bench run: Redis left alone, then paused (SIGSTOP, as in a failover) for a few
seconds once CAMS has seen PAUSE_AFTER_CALLS calls. Reported: how much later the bulk binds
were answered because of the pause, and that no WabaId was bound twice at CAMS.

    go ── binds ── Redis paused ────────── resumed ── redeliveries ── last answer
                   │ in flight: call, then hold until Redis has the completion
                   │ the rest: SharedStoreUnavailable, batch redelivered
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wababind_local.bench.config import Config
from wababind_local.bench.handler import (
    _load_handler,
    _reset_runtime,
    bench_context,
    patched_env,
    product_env,
    waba_ids,
)
from wababind_local.bench.processes import (
    _collect,
    _wait_ready,
    join_all,
    ready_and_told_to_start,
)
from wababind_local.bench.redis_server import redis_process
from wababind_local.cams_simulator import CamsSimulator, max_in_window
from wababind_local.stats import percentile

UNAVAILABLE = "SharedStoreUnavailable"
COMMON = 20  # WabaIds that every instance's batch holds (the rest are its own)
PAUSE_AFTER_CALLS = 30  # Redis pauses once CAMS has seen this many calls (about 3 s in)
PAUSE_WAIT_S = 30.0  # ... or after this long, whatever the count
MAX_DELIVERIES = 12  # per instance; a batch that has not settled by then is reported
BACKOFF_S = 1.0  # between deliveries of a batch that raised (the trigger's retry)


@dataclass
class PauseLoad:
    """One run of the scenario's load: with Redis paused for `pause_s`, or not (0)."""

    pause_s: float
    messages: int
    waba_ids: int
    settle_s: list[float]  # per message: from the start to its final answer
    calls_before_pause: int
    calls_during_pause: int
    unavailable: int  # messages answered SharedStoreUnavailable at least once
    deliveries: list[int]  # per instance
    bound_twice: list[str]
    unsettled: int  # messages whose last answer was not bound or duplicate
    lost: int  # outcomes missing from a delivery
    binds_waited: int  # the instances' "Redis reachable again" lines, summed
    outage_lines: int  # "Redis unreachable" lines, all instances together
    max_window: int
    wall_s: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.bound_twice or self.unsettled or self.lost or self.problems)


@dataclass
class RedisPauseRun:
    """The same load twice, in one bench run: Redis left alone, then paused mid-run."""

    baseline: PauseLoad
    paused: PauseLoad

    @property
    def passed(self) -> bool:
        return self.baseline.passed and self.paused.passed

    def extra_wait_s(self, p: float) -> float:
        """How much later the p-th percentile message was answered because of the pause."""
        return percentile(self.paused.settle_s, p) - percentile(self.baseline.settle_s, p)


def pause_worker(
    number: int,
    env: dict[str, str | None],
    ids: list[str],
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """A spawned MQ instance: on `go`, deliver the batch until the handler stops raising."""
    try:
        with patched_env(env):
            handler = _load_handler()
            _reset_runtime()
            event = json.dumps([{"WabaId": w, "Reference": f"m{i}"} for i, w in enumerate(ids)])
            if not ready_and_told_to_start(number, ready, go, results):
                return
            deliveries: list[list[tuple[str, str, str, float]]] = []
            logs: list[dict[str, Any]] = []
            for _ in range(MAX_DELIVERIES):
                raised, records, applog = _deliver(handler, event.encode())
                deliveries.append(records)
                logs += applog
                if not raised:
                    break
                time.sleep(BACKOFF_S)
            results.put({"number": number, "deliveries": deliveries, "logs": logs})
    except Exception as exc:
        results.put({"number": number, "error": f"{type(exc).__name__}: {exc}"})


def _deliver(
    handler: Any, event: bytes
) -> tuple[bool, list[tuple[str, str, str, float]], list[dict[str, Any]]]:
    """One delivery: raised?, (Reference, Status, Code, FinishedAt epoch s) per outcome, and
    the app-log lines about the shared store."""
    out, err = io.StringIO(), io.StringIO()
    raised = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            handler(event, bench_context())
        except Exception:
            raised = True
    records = []
    for line in out.getvalue().splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and doc.get("Kind") == "WabaBindOutcome":
                finished = datetime.fromisoformat(doc["FinishedAt"].replace("Z", "+00:00"))
                records.append((doc["Reference"], doc["Status"], doc["Code"], finished.timestamp()))
    applog = [
        json.loads(line)
        for line in err.getvalue().splitlines()
        if line.startswith('{"Kind":"AppLog"') and '"Message":"Redis ' in line
    ]
    return raised, records, applog


def run_redis_pause(config: Config, prefix: str, tag: int) -> RedisPauseRun:
    """The load without a pause, then with one; cold both times (fresh processes, no warm-up
    bind), the simulator's quota on."""
    pause_s = 3.0 if config.quick else 5.0
    baseline = _run_load(config, prefix, tag, 0.0)
    return RedisPauseRun(baseline, _run_load(config, prefix, tag + 10, pause_s))


def _run_load(config: Config, prefix: str, tag: int, pause_s: float) -> PauseLoad:
    own = config.process_batch if config.quick else 30
    common = waba_ids(prefix, tag, COMMON)
    batches = [common + waba_ids(prefix, tag + 1 + n, own) for n in range(config.processes)]
    ctx = multiprocessing.get_context("spawn")
    began = time.monotonic()
    with (
        redis_process() as (redis_url, redis_proc),
        CamsSimulator(qps=config.qps, latency_s=config.process_latency_ms / 1000) as sim,
    ):
        env = product_env(sim.endpoint, config.qps, redis_url)
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(target=pause_worker, args=(n, env, batch, ready, go, results), daemon=True)
            for n, batch in enumerate(batches)
        ]
        for proc in procs:
            proc.start()
        try:
            _wait_ready(ready, results, procs)
            started = time.time()
            go.set()
            pause_after = min(PAUSE_AFTER_CALLS, len({w for b in batches for w in b}) // 4)
            for _ in range(int(PAUSE_WAIT_S / 0.01)):  # bounded
                if sim.count() >= pause_after:
                    break
                time.sleep(0.01)
            before = sim.count()
            if pause_s:
                redis_proc.send_signal(signal.SIGSTOP)
                time.sleep(pause_s)
                redis_proc.send_signal(signal.SIGCONT)
            during = sim.count() - before
            reports = _collect(results, config.processes, MAX_DELIVERIES * 60.0)
        finally:
            redis_proc.send_signal(signal.SIGCONT)
            join_all(procs)
        calls = sim.calls()
    good = [r for r in reports if "error" not in r]
    ok = Counter(c.waba_id for c in calls if c.code == "OK")
    answers = _answers(good, [len(b) for b in batches])
    logs = [line for r in good for line in r["logs"]]
    return PauseLoad(
        pause_s=pause_s,
        messages=sum(len(b) for b in batches),
        waba_ids=len({w for b in batches for w in b}),
        settle_s=[finished - started for finished in answers.finished],
        calls_before_pause=before,
        calls_during_pause=during if pause_s else 0,
        unavailable=answers.unavailable,
        deliveries=[len(r["deliveries"]) for r in sorted(good, key=lambda r: r["number"])],
        bound_twice=sorted(w for w, n in ok.items() if n > 1),
        unsettled=answers.unsettled,
        lost=answers.lost,
        binds_waited=sum(int(line.get("BindsWaited", 0)) for line in logs),
        outage_lines=sum(1 for line in logs if line["Message"].startswith("Redis unreach")),
        max_window=max_in_window([c.at for c in calls]),
        wall_s=time.monotonic() - began,
        problems=[f"process {r['number']}: {r['error']}" for r in reports if "error" in r],
    )


@dataclass
class _Answers:
    finished: list[float] = field(default_factory=list)  # each message's final answer (epoch)
    unavailable: int = 0
    unsettled: int = 0
    lost: int = 0


def _answers(reports: list[dict[str, Any]], sizes: list[int]) -> _Answers:
    """Each message's final answer across its deliveries, and what went wrong on the way."""
    answers = _Answers()
    for report in reports:
        size = sizes[report["number"]]
        final: dict[str, tuple[str, float]] = {}
        unavailable: set[str] = set()
        for records in report["deliveries"]:
            answers.lost += max(0, size - len({ref for ref, *_ in records}))
            for ref, status, code, finished in records:
                if code == UNAVAILABLE:
                    unavailable.add(ref)
                final[ref] = (status, finished)
        answers.unavailable += len(unavailable)
        answers.unsettled += size - len(final)
        answers.unsettled += sum(1 for s, _ in final.values() if s not in ("bound", "duplicate"))
        answers.finished += [finished for _, finished in final.values()]
    return answers


def render_redis_pause(run: RedisPauseRun | None, problem: str | None = None) -> str:
    """The scenario's section of bench/results.md."""
    lines = ["## Redis paused mid-run (ON_REDIS_OUTAGE=wait)", ""]
    if run is None:
        return "\n".join([*lines, f"Not run: {problem}", ""])
    base, paused = run.baseline, run.paused

    def both(value: Any) -> tuple[str, str]:
        return str(value(base)), str(value(paused))

    def pcts(load: PauseLoad) -> str:
        return " / ".join(f"{percentile(load.settle_s, p):.1f}" for p in (50, 95, 100))

    rows = [
        (
            "Redis paused (SIGSTOP)",
            ("no", f"{paused.pause_s:g} s after {paused.calls_before_pause} CAMS calls"),
        ),
        ("messages / distinct WabaIds", both(lambda r: f"{r.messages} / {r.waba_ids}")),
        ("answered, from the start: p50 / p95 / max (s)", both(pcts)),
        ("wall, fresh processes included (s)", both(lambda r: f"{r.wall_s:.1f}")),
        (
            "CAMS calls while paused (slot and claim taken before it)",
            both(lambda r: r.calls_during_pause),
        ),
        (
            "messages answered SharedStoreUnavailable, then redelivered",
            both(lambda r: r.unavailable),
        ),
        ("binds that waited for Redis (BindsWaited, summed)", both(lambda r: r.binds_waited)),
        (
            "'Redis unreachable' log lines (one per instance at most)",
            both(lambda r: r.outage_lines),
        ),
        ("deliveries per instance", both(lambda r: ", ".join(map(str, r.deliveries)))),
        ("max CAMS calls in a 1-s window", both(lambda r: r.max_window)),
        ("WabaIds bound twice at CAMS", both(lambda r: len(r.bound_twice))),
        (
            "messages not bound or duplicate in the end / outcomes missing",
            both(lambda r: f"{r.unsettled} / {r.lost}"),
        ),
        ("result", both(lambda r: "PASS" if r.passed else "FAIL")),
    ]
    lines += [
        f"{len(base.deliveries)} MQ instances (fresh processes) on one redis-server; each batch "
        f"holds {COMMON} WabaIds every batch holds and its own; a batch that raised is redelivered "
        f"{BACKOFF_S:g} s later, as a trigger would.",
        "",
        "| | Redis left alone | Redis paused |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {a} | {b} |" for name, (a, b) in rows]
    lines += [
        "",
        f"**Bulk binds waited** for the {paused.pause_s:g}-s pause: answered "
        f"{run.extra_wait_s(50):+.1f} s (median), {run.extra_wait_s(95):+.1f} s (95th "
        f"percentile), {run.extra_wait_s(100):+.1f} s (last) against Redis left alone, and none "
        f"bound twice. {paused.calls_during_pause} binds that held a claim and a quota slot "
        "before the pause called CAMS during it (each holds its completion until Redis has "
        "it); the others ended SharedStoreUnavailable and their batch was redelivered. A value "
        "below zero is run-to-run noise."
        if paused.settle_s and base.settle_s
        else "No message was answered.",
    ]
    lines += [f"Problem: {p}" for p in base.problems + paused.problems]
    return "\n".join([*lines, ""])
