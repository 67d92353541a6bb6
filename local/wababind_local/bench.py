"""`make bench`: MQ-handler throughput against the CAMS simulator's quota, and cold start.

Three parts, all on loopback:

1. One process: for each CAMS latency x batch size, a fresh simulator with its quota on, one
   warm-up bind (the instance is warm, as FC reuses it), then one direct-invoke batch of unique
   WabaIds through `index.mq_handler`. Binds/s = bound binds / the handler call's wall time.
2. N processes (spawned) share one real `redis-server` (the Redis limiter and idempotency
   store) and one simulator; they start together and bind a batch each. Combined binds/s =
   all bound binds / (last finish - first start); the highest count of calls the simulator
   saw (throttled ones included) in any 1-s window.
3. Cold start: the median time to import `index` in a fresh interpreter, as a ratio against
   importing the official Tea SDK client, `alibabacloud_cams20200606.client` (pip-installed
   into this venv when missing).

The table goes to stdout and to `bench/results.md`, with the targets and PASS/FAIL for each.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import math
import multiprocessing
import os
import platform
import queue
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wababind_local.cams_simulator import (
    DEFAULT_STS_KEY,
    QUOTA_CODE,
    CamsSimulator,
    max_in_window,
)
from wababind_local.fc_context import Credentials, FCContext, FunctionMeta

ROOT = Path(__file__).resolve().parents[2]
CODE_ROOT = ROOT / "functions" / "bind_waba"
DEFAULT_OUT = ROOT / "bench" / "results.md"

HANDLER_MODULE = "index"
TEA_MODULE = "alibabacloud_cams20200606.client"
TEA_REQUIREMENT = "alibabacloud-cams20200606==5.3.1"

MQ_TIMEOUT_S = 600  # bind-waba-mq's `timeout` in s.yaml: the handler's deadline comes from it
CAMS_TIMEOUT_S = 5.0
WINDOW_GAP_S = 1.1  # after a warm-up, let its calls leave the quota's 1-s window
PROCESS_READY_TIMEOUT_S = 120.0
IMPORT_PROBE_TIMEOUT_S = 120.0

TARGET_ONE_PROCESS_RATIO = 0.97
TARGET_THROTTLED_SHARE = 0.01
TARGET_SHARED_RATIO = 0.95
TARGET_COLD_RATIO = 0.4


@dataclass(frozen=True)
class Config:
    """What one bench run measures; `quick` only changes the defaults."""

    qps: float
    latencies_ms: tuple[float, ...]
    batches: tuple[int, ...]
    processes: int
    process_batch: int
    process_latency_ms: float
    cold_reps: int
    out: Path
    install: bool
    quick: bool

    @property
    def target_cell(self) -> tuple[float, int]:
        """The matrix cell the one-process targets apply to: the middle latency and batch."""
        return self.latencies_ms[len(self.latencies_ms) // 2], self.batches[len(self.batches) // 2]


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
    """Import times (s) in fresh interpreters; `breakdown` attributes the handler's import."""

    handler_s: list[float] = field(default_factory=list)
    tea_s: list[float] = field(default_factory=list)
    tea_problem: str | None = None
    breakdown: list[tuple[str, float, str]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        if not self.handler_s or not self.tea_s:
            return math.nan
        return percentile(self.handler_s, 50) / percentile(self.tea_s, 50)


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run


# ---- pure helpers (tested on fixed data) ---------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile, linear between closest ranks (numpy's default); NaN when empty."""
    if not 0 <= p <= 100:
        raise ValueError("p must be between 0 and 100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


_IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


@dataclass
class _ImportNode:
    name: str
    self_us: int
    cumulative_us: int
    children: list[_ImportNode] = field(default_factory=list)


def import_breakdown(
    importtime: str, module: str, own: tuple[str, ...] = ("index", "wababind")
) -> list[tuple[str, float, str]]:
    """From `python -X importtime` output: (package, ms, first imported by), biggest first.

    The product's own modules count their own time as "<own> (module bodies)"; every other
    package they import counts its whole cumulative time, under the module that imported it
    first (a package imported again later costs nothing then).
    """
    pending: dict[int, list[_ImportNode]] = {}
    for line in importtime.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if match is None:
            continue
        depth = (len(match.group(3)) - 1) // 2
        node = _ImportNode(match.group(4), int(match.group(1)), int(match.group(2)))
        node.children = pending.pop(depth + 1, [])
        pending.setdefault(depth, []).append(node)
    root = next((n for n in pending.get(0, []) if n.name == module), None)
    if root is None:
        return []

    def is_own(name: str) -> bool:
        return name.split(".")[0] in own

    totals: Counter[str] = Counter()
    first_by: dict[str, str] = {}

    def walk(node: _ImportNode) -> None:
        totals[f"{'/'.join(own)} (module bodies)"] += node.self_us
        for child in node.children:
            if is_own(child.name):
                walk(child)
            else:
                package = child.name.split(".")[0]
                totals[package] += child.cumulative_us
                first_by.setdefault(package, node.name)

    walk(root)
    return [(package, us / 1000, first_by.get(package, "")) for package, us in totals.most_common()]


# ---- running the handler ---------------------------------------------------------------------


def _product_path() -> None:
    if str(CODE_ROOT) not in sys.path:
        sys.path.insert(0, str(CODE_ROOT))


def waba_ids(prefix: str, tag: int, count: int) -> list[str]:
    """Unique, valid WabaIds (digits) for one load of one run."""
    return [f"{prefix}{tag:03d}{i:06d}" for i in range(count)]


def bench_context() -> FCContext:
    """bind-waba-mq's context, with the simulator's STS key as the function role's key."""
    return FCContext(
        function=FunctionMeta("bind-waba-mq", "index.mq_handler", memory=512, timeout=MQ_TIMEOUT_S),
        credentials=Credentials(
            DEFAULT_STS_KEY.access_key_id,
            DEFAULT_STS_KEY.access_key_secret,
            DEFAULT_STS_KEY.security_token or "",
        ),
    )


def product_env(endpoint: str, qps: float, redis_url: str | None) -> dict[str, str | None]:
    """The function's environment for one load (None: unset the variable)."""
    return {
        "CAMS_ENDPOINT": endpoint,
        "CAMS_QPS": f"{qps:g}",
        "CAMS_TIMEOUT_S": f"{CAMS_TIMEOUT_S:g}",
        "OUTCOME_SINKS": "log",
        "REDIS_URL": redis_url,
    }


@contextlib.contextmanager
def patched_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or unset) variables, then put every one back as it was."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def invoke(handler: Callable[[bytes, Any], Any], ids: Sequence[str]) -> dict[str, Any]:
    """One direct-invoke batch; its outcome lines are captured, so stdout stays readable.

    Returns plain data (it crosses process boundaries): start/finish (time.monotonic, which
    all processes share on Linux), statuses, per-bind durations, the exception type if the
    handler raised (it does when a bind failed retryably), and the count of app-log warnings.
    """
    event = json.dumps([{"WabaId": w} for w in ids]).encode()
    out, err = io.StringIO(), io.StringIO()
    raised = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        started = time.monotonic()
        try:
            handler(event, bench_context())
        except Exception as exc:
            raised = type(exc).__name__
        finished = time.monotonic()
    statuses: Counter[str] = Counter()
    durations: list[float] = []
    for line in out.getvalue().splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and doc.get("Kind") == "WabaBindOutcome":
                statuses[str(doc.get("Status"))] += 1
                durations.append(float(doc.get("DurationMs", 0)) / 1000)
    warnings = sum(
        1 for line in err.getvalue().splitlines() if re.search(r'"Level":"(WARNING|ERROR)"', line)
    )
    return {
        "started": started,
        "finished": finished,
        "statuses": dict(statuses),
        "durations": durations,
        "raised": raised,
        "warnings": warnings,
    }


def _load_handler() -> Callable[[bytes, Any], Any]:
    _product_path()
    handler: Callable[[bytes, Any], Any] = importlib.import_module(HANDLER_MODULE).mq_handler
    return handler


def _reset_runtime() -> None:
    _product_path()
    from wababind.runtime import reset_runtime

    reset_runtime()


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
        max_window=max_in_window([c.at for c in calls]),
        raised=[result["raised"]] if result["raised"] else [],
        warnings=result["warnings"],
    )


# ---- several processes on one redis-server ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(start_timeout_s: float = 10.0) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="wababind-bench-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def process_worker(
    number: int,
    env: dict[str, str | None],
    warmup_id: str,
    ids: list[str],
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """A spawned FC instance: warm up, say ready, wait for the start, bind, report plain data."""
    try:
        with patched_env(env):
            handler = _load_handler()
            _reset_runtime()
            invoke(handler, [warmup_id])
            ready.put(number)
            if not go.wait(PROCESS_READY_TIMEOUT_S):
                results.put({"number": number, "error": "never told to start"})
                return
            results.put({"number": number, **invoke(handler, ids)})
    except Exception as exc:
        results.put({"number": number, "error": f"{type(exc).__name__}: {exc}"})


def run_processes(
    qps: float, latency_ms: float, processes: int, batch: int, prefix: str, tag: int
) -> Run:
    """`processes` spawned instances, one redis-server, one simulator; they start together."""
    ctx = multiprocessing.get_context("spawn")
    worker = importlib.import_module("wababind_local.bench").process_worker
    with redis_server() as redis_url, CamsSimulator(qps=qps, latency_s=latency_ms / 1000) as sim:
        env = product_env(sim.endpoint, qps, redis_url)
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(
                target=worker,
                args=(
                    n,
                    env,
                    waba_ids(prefix, tag + 100 + n, 1)[0],
                    waba_ids(prefix, tag + n, batch),
                    ready,
                    go,
                    results,
                ),
                daemon=True,
            )
            for n in range(processes)
        ]
        for proc in procs:
            proc.start()
        try:
            _wait_ready(ready, results, procs)
            time.sleep(WINDOW_GAP_S)
            first = len(sim.calls())
            go.set()
            reports = _collect(results, processes, batch * processes * 1.02 / qps + 120)
        finally:
            for proc in procs:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
        calls = sim.calls()
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError("; ".join(errors))
    load = calls[first:]
    statuses: Counter[str] = Counter()
    for report in reports:
        statuses.update(report["statuses"])
    return Run(
        latency_ms=latency_ms,
        batch=batch,
        processes=processes,
        wall_s=max(r["finished"] for r in reports) - min(r["started"] for r in reports),
        statuses=statuses,
        durations_s=[d for r in reports for d in r["durations"]],
        calls=len(load),
        throttled=sum(1 for c in load if c.code == QUOTA_CODE),
        max_window=max_in_window([c.at for c in calls]),
        raised=[r["raised"] for r in reports if r["raised"]],
        warnings=sum(r["warnings"] for r in reports),
    )


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


# ---- cold start ------------------------------------------------------------------------------

_IMPORT_PROBE = (
    "import sys, time\n"
    "t = time.perf_counter()\n"
    "__import__(sys.argv[1])\n"
    "print(time.perf_counter() - t)\n"
)


class ImportProbeError(RuntimeError):
    """The module did not import in the probe interpreter."""


def _probe_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_import(module: str, extra_flags: Sequence[str] = ()) -> tuple[float, str]:
    """Seconds to import `module` in a fresh interpreter (this one's), and its stderr."""
    proc = subprocess.run(
        [sys.executable, *extra_flags, "-c", _IMPORT_PROBE, module],
        env=_probe_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=IMPORT_PROBE_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ImportProbeError(f"import {module} failed: {last}")
    return float(proc.stdout.strip().splitlines()[-1]), proc.stderr


def install_tea_sdk() -> str | None:
    """pip-install the Tea SDK client into this venv, pinned, keeping the project's own pins."""
    print(
        f"bench: installing {TEA_REQUIREMENT} into {sys.prefix} "
        "(the cold-start row compares against it)",
        flush=True,
    )
    pins = []
    for name in ("requirements.txt", "requirements-dev.txt"):
        path = ROOT / name
        if path.exists():
            pins += [
                line.split("#")[0].strip()
                for line in path.read_text().splitlines()
                if "==" in line.split("#")[0]
            ]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    try:
        proc = subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                TEA_REQUIREMENT, "-c", constraints.name,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
    finally:
        os.unlink(constraints.name)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"pip could not install {TEA_REQUIREMENT}: {last}"
    return None


def measure_cold_start(reps: int, install: bool) -> ColdStart:
    """Warm the bytecode caches once, then `reps` fresh imports of each, interleaved."""
    result = ColdStart()
    time_import(HANDLER_MODULE)
    try:
        time_import(TEA_MODULE)
    except ImportProbeError as exc:
        if not install:
            result.tea_problem = f"{exc} (run without --no-install to install it)"
        else:
            result.tea_problem = install_tea_sdk()
            if result.tea_problem is None:
                try:
                    time_import(TEA_MODULE)
                except ImportProbeError as again:
                    result.tea_problem = str(again)
    for rep in range(reps):
        order = [HANDLER_MODULE, TEA_MODULE] if rep % 2 == 0 else [TEA_MODULE, HANDLER_MODULE]
        for module in order:
            if module == TEA_MODULE and result.tea_problem:
                continue
            seconds, _ = time_import(module)
            (result.handler_s if module == HANDLER_MODULE else result.tea_s).append(seconds)
    _, importtime = time_import(HANDLER_MODULE, ["-X", "importtime"])
    result.breakdown = import_breakdown(importtime, HANDLER_MODULE)
    return result


# ---- the report ------------------------------------------------------------------------------


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}x"


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _secs(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


MATRIX_HEADER = (
    "CAMS latency (ms)",
    "batch",
    "bound",
    "failed",
    "wall (s)",
    "binds/s",
    "x quota",
    "CAMS calls",
    "throttled",
    "p50 per bind (s)",
    "p95 per bind (s)",
    "max calls in a 1-s window",
)
SHARED_HEADER = (
    "processes",
    "batch each",
    "CAMS latency (ms)",
    "bound",
    "failed",
    "wall (s)",
    "combined binds/s",
    "x quota",
    "CAMS calls",
    "throttled",
    "p50 per bind (s)",
    "p95 per bind (s)",
    "max calls in any 1-s window",
)


def _run_row(run: Run, qps: float) -> list[str]:
    return [
        f"{run.bound}",
        f"{run.statuses['failed']}",
        f"{run.wall_s:.2f}",
        f"{run.binds_per_s:.2f}",
        _ratio(run.binds_per_s / qps),
        f"{run.calls}",
        _pct(run.throttled_share),
        _secs(percentile(run.durations_s, 50)),
        _secs(percentile(run.durations_s, 95)),
        f"{run.max_window}",
    ]


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
    ratio = cold.ratio if cold else math.nan
    targets.append(
        Target(
            f"cold start: import `{HANDLER_MODULE}` ≤ {TARGET_COLD_RATIO}x"
            " the Tea SDK client import",
            _ratio(ratio) if not math.isnan(ratio) else "not measured",
            None if math.isnan(ratio) else ratio <= TARGET_COLD_RATIO,
        )
    )
    return targets


def render(
    config: Config,
    matrix: list[Run],
    shared: Run | None,
    shared_problem: str | None,
    cold: ColdStart | None,
    targets: list[Target],
    elapsed_s: float,
) -> str:
    """bench/results.md: the run, the three tables, the targets."""
    quota = config.qps
    _product_path()
    from wababind.runtime import batch_workers

    workers = batch_workers(quota)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# wababind benchmark",
        "",
        f"`make bench`{' --quick' if config.quick else ''} run of {when}, {elapsed_s:.0f} s: "
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs. CAMS simulator quota **{quota:g} calls/s** "
        f"(`CAMS_QPS={quota:g}`), `CAMS_TIMEOUT_S={CAMS_TIMEOUT_S:g}`, function timeout "
        f"{MQ_TIMEOUT_S} s, direct-invoke batches of unique WabaIds through `index.mq_handler`.",
        "",
        "## Targets",
        "",
    ]
    verdict = {True: "PASS", False: "**FAIL**", None: "not measured"}
    lines += _table(
        ("target", "measured", "result"),
        [(t.name, t.measured, verdict[t.passed]) for t in targets],
    )
    passed = sum(1 for t in targets if t.passed)
    lines += ["", f"{passed} of {len(targets)} targets met.", ""]
    if config.quick:
        lines += [
            "Quick run (`--quick`): small batches at a higher quota, a smoke test of the bench. "
            "The targets are meant for the full run, `make bench`.",
            "",
        ]

    lines += ["## One process (in-process limiter)", ""]
    lines += _table(
        MATRIX_HEADER,
        [[f"{r.latency_ms:g}", f"{r.batch}", *_run_row(r, quota)] for r in matrix],
    )
    lines += [""]

    lines += [f"## {config.processes} processes sharing one redis-server", ""]
    if shared is not None:
        lines += _table(
            SHARED_HEADER,
            [
                [
                    f"{shared.processes}",
                    f"{shared.batch}",
                    f"{shared.latency_ms:g}",
                    *_run_row(shared, quota),
                ]
            ],
        )
    else:
        lines += [f"Not run: {shared_problem}."]
    lines += [""]

    lines += ["## Cold start", ""]
    if cold is not None:
        rows = [
            _import_row(f"`{HANDLER_MODULE}` (the handler module)", cold.handler_s),
            _import_row(f"`{TEA_MODULE}` (Tea SDK, {TEA_REQUIREMENT})", cold.tea_s),
        ]
        lines += _table(("import, fresh interpreter", "median (ms)", "min", "max", "runs"), rows)
        lines += ["", f"Ratio handler / Tea SDK (medians): **{_ratio(cold.ratio)}**."]
        if cold.tea_problem:
            lines += ["", f"Tea SDK not measured: {cold.tea_problem}."]
        if cold.breakdown:
            lines += [
                "",
                f"Where importing `{HANDLER_MODULE}` spends its time (one `python -X importtime` "
                "run, which inflates times a little):",
                "",
            ]
            lines += _table(
                ("package", "ms", "first imported by"),
                [(p, f"{ms:.1f}", f"`{by}`" if by else "") for p, ms, by in cold.breakdown[:10]],
            )
    else:
        lines += ["Not run."]
    lines += ["", "## How it is measured", ""]
    lines += [
        "- binds/s = bound binds ÷ wall time of the handler call (for several processes: from "
        "the first start to the last finish); x quota divides that by the simulator's quota.",
        "- Each load starts on a warm instance (one warm-up bind, then "
        f"{WINDOW_GAP_S:g} s so its call leaves the 1-s window) against a fresh simulator.",
        "- throttled = CAMS calls answered `System.LimitControl` ÷ CAMS calls of the load.",
        "- time per bind = each outcome's `DurationMs`, waiting for a quota slot included: in a "
        f"long batch each of the handler's {workers} workers (1.5 x quota) queues behind the "
        f"others, so a bind takes about {workers} slots, times the processes sharing the quota.",
        "- max calls in a 1-s window counts every call the simulator saw in the run (warm-ups "
        "and throttled calls included), over half-open windows [t, t + 1 s).",
        "- cold start = median `time.perf_counter()` around the import in fresh interpreters "
        "(bytecode cached; runs interleaved).",
    ]
    notes = [
        f"{r.processes} process(es), batch {r.batch}, {r.latency_ms:g} ms: the handler raised "
        f"{', '.join(r.raised)}; {r.warnings} app-log warning(s)"
        for r in [*matrix, *([shared] if shared else [])]
        if r.raised or r.warnings
    ]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _import_row(label: str, values: list[float]) -> list[str]:
    if not values:
        return [label, "n/a", "n/a", "n/a", "0"]
    return [
        label,
        f"{percentile(values, 50) * 1000:.1f}",
        f"{min(values) * 1000:.1f}",
        f"{max(values) * 1000:.1f}",
        f"{len(values)}",
    ]


# ---- command line ----------------------------------------------------------------------------


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(p) for p in text.split(",") if p.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",") if p.strip())


def parse_args(argv: Sequence[str] | None) -> Config:
    """Defaults are the issue's matrix; --quick is a smoke run of a minute or so."""
    parser = argparse.ArgumentParser(
        prog="python -m wababind_local.bench",
        description="Throughput against the CAMS simulator's quota, and cold start.",
    )
    parser.add_argument("--quick", action="store_true", help="small batches, higher quota")
    parser.add_argument("--qps", type=float, help="the quota (CAMS_QPS); default 10, quick 50")
    parser.add_argument("--latencies-ms", type=_floats, help="default 50,200,500")
    parser.add_argument("--batches", type=_ints, help="default 50,300,1000; quick 10,30,60")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--process-batch", type=int, help="binds per process; default 150")
    parser.add_argument("--process-latency-ms", type=float, default=200.0)
    parser.add_argument("--cold-reps", type=int, help="fresh imports of each; default 9")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--no-install", action="store_true", help="do not pip-install the Tea SDK if missing"
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    config = Config(
        qps=args.qps or (50.0 if quick else 10.0),
        latencies_ms=args.latencies_ms or (50.0, 200.0, 500.0),
        batches=args.batches or ((10, 30, 60) if quick else (50, 300, 1000)),
        processes=args.processes,
        process_batch=args.process_batch or (25 if quick else 150),
        process_latency_ms=args.process_latency_ms,
        cold_reps=args.cold_reps or (3 if quick else 9),
        out=args.out,
        install=not args.no_install,
        quick=quick,
    )
    if config.qps <= 0 or config.processes < 1 or config.process_batch < 1:
        parser.error("--qps, --processes and --process-batch must be positive")
    if not config.latencies_ms or not config.batches or min(config.batches) < 1:
        parser.error("--latencies-ms and --batches need at least one value, batches ≥ 1")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run everything, print the table, write the results file; 0 when the bench ran."""
    config = parse_args(argv)
    began = time.monotonic()
    prefix = f"{random.randrange(10**8, 10**9)}"
    cells = [(lat, batch) for lat in config.latencies_ms for batch in config.batches]
    print(
        f"bench: quota {config.qps:g} calls/s; {len(cells)} one-process loads, then "
        f"{config.processes} processes on Redis, then cold start",
        flush=True,
    )
    matrix: list[Run] = []
    for number, (latency, batch) in enumerate(cells, 1):
        ids = waba_ids(prefix, number, batch + 1)
        run = run_one_process(config.qps, latency, batch, ids)
        matrix.append(run)
        print(
            f"[{number}/{len(cells)}] {latency:g} ms, {batch} binds: "
            f"{_ratio(run.binds_per_s / config.qps)} quota, {_pct(run.throttled_share)} "
            f"throttled, {run.wall_s:.1f} s",
            flush=True,
        )

    shared, shared_problem = None, None
    try:
        shared = run_processes(
            config.qps,
            config.process_latency_ms,
            config.processes,
            config.process_batch,
            prefix,
            tag=200,
        )
        print(
            f"[shared] {config.processes} x {config.process_batch} binds: "
            f"{_ratio(shared.binds_per_s / config.qps)} quota, max {shared.max_window} calls "
            f"in a 1-s window, {shared.wall_s:.1f} s",
            flush=True,
        )
    except RuntimeError as exc:
        shared_problem = str(exc)
        print(f"[shared] not run: {shared_problem}", flush=True)

    cold: ColdStart | None = None
    try:
        cold = measure_cold_start(config.cold_reps, config.install)
        print(f"[cold start] handler / Tea SDK import: {_ratio(cold.ratio)}", flush=True)
    except (ImportProbeError, subprocess.TimeoutExpired) as exc:
        print(f"[cold start] not measured: {exc}", flush=True)

    targets = evaluate(config, matrix, shared, cold)
    text = render(config, matrix, shared, shared_problem, cold, targets, time.monotonic() - began)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(text, encoding="utf-8")
    print()
    print(text, end="")
    print(f"\nwritten to {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
