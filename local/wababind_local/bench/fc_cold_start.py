"""Scenario 6: cold start as FC runs it, for each FC runtime whose CPython is on this machine.

For each runtime (python3.10, python3.12) the package `make package` builds for it is unzipped
read-only and run on that CPython with PYTHONDONTWRITEBYTECODE=1 (wababind_local.fc_package),
and each function's ready to serve (import `index` + FC's initializer, with that runtime's
context) is timed in fresh interpreters against:

    compiled   the same package without its shipped bytecode, writable, warmed once so that
               Python cached its own: the best Python itself does
    no bytecode  the same package without its shipped bytecode, read-only: what a deployer
               whose machine has no CPython of the runtime's version deploys
    Tea SDK    alibabacloud_cams20200606.client installed the same way (pip for the runtime),
               read-only: how a package that ships no bytecode starts on FC
    floor      the runtime dependencies' import floor, imported as our code imports them
               (cold_start.floor_source), from the same package as FC runs it: what no
               function of ours can go below, against Tea too

Each probe reports its wall time, its CPU time and how many modules it compiled from source.
FC gives an instance `cpu` vCPUs (s.yaml per function; fc3's default 0.35): below one vCPU a
single thread's CPU time t takes about t / cpu of wall time, shown for each function. Each probe is
shown as the fastest of `reps` fresh interpreters, runs interleaved; the targets judge CPU time,
which other processes on the machine disturb less than wall time, as the median of the rounds'
ratios (_cpu_ratio).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from wababind_local import fc_package
from wababind_local.bench.cold_start import floor_names, floor_source
from wababind_local.bench.config import IMPORT_PROBE_TIMEOUT_S, ROOT, TEA_MODULE, TEA_REQUIREMENT
from wababind_local.bench.stats import round_ratio

RUNTIMES = ("python3.10", "python3.12")
FUNCTIONS = {
    "HTTP": ("bind-waba-http", "index.http_handler"),
    "MQ": ("bind-waba-mq", "index.mq_handler"),
}
DEFAULT_CPU = 0.35  # fc3 schema: `cpu` default, vCPUs
_STS = {"access_key_id": "STS.bench", "access_key_secret": "bench", "security_token": "bench"}

# Timed: everything the code in argv[1] does; printed: wall s, CPU s, modules compiled from
# source under the code root (cwd).
_PROBE = (
    fc_package.WATCH_COMPILES
    + """
import json, os, sys, time
code = compile(sys.argv[1], "<ready>", "exec")
wall, cpu = time.perf_counter(), time.process_time()
exec(code, {})
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
here = os.getcwd()
print(json.dumps([wall, cpu, sum(1 for p in _compiled if p.startswith(here))]))
"""
)


def ready_code(runtime: str, function: str) -> str:
    """Import `index` and run FC's initializer with the runtime's context (FC docs, "Context",
    Python: python3.12 has no `credentials` and no `service`; the key is in the environment)."""
    name, handler = FUNCTIONS[function]
    meta = f"name={name!r}, handler={handler!r}, memory=512, timeout=600"
    if runtime == "python3.12":
        context = (
            f"NS(request_id='bench', function=NS({meta}, version_id='', qualifier='LATEST'), "
            "log_project='', log_store='', region='ap-southeast-1', account_id='1')"
        )
    else:
        context = (
            f"NS(request_id='bench', credentials=NS(**{_STS!r}), function=NS({meta}), "
            "service=NS(log_project='', log_store='', qualifier='LATEST', version_id=''), "
            "region='ap-southeast-1', account_id='1')"
        )
    return f"from types import SimpleNamespace as NS\nimport index\nindex.initialize({context})\n"


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    compiled: int  # modules compiled from source during the probe


@dataclass
class FcColdStart:
    """One runtime's probes: `package` (as FC runs it), `compiled` and `bare` (the package
    without bytecode, as FC runs it) per function, and `tea`."""

    runtime: str
    python: str = ""  # "CPython 3.10.13"
    cpu: dict[str, float] = field(default_factory=dict)  # function -> vCPUs from s.yaml
    package: dict[str, list[Sample]] = field(default_factory=dict)
    compiled: dict[str, list[Sample]] = field(default_factory=dict)
    bare: dict[str, list[Sample]] = field(default_factory=dict)
    tea: list[Sample] = field(default_factory=list)
    floor: list[Sample] = field(default_factory=list)  # the dependencies alone, as FC runs it
    problem: str | None = None

    def compiled_ratio(self, function: str) -> float:
        return _cpu_ratio(self.package.get(function, []), self.compiled.get(function, []))

    def tea_ratio(self, function: str) -> float:
        return _cpu_ratio(self.package.get(function, []), self.tea)

    def floor_tea_ratio(self) -> float:
        """The import floor's own Tea ratio: the least any function's can be."""
        return _cpu_ratio(self.floor, self.tea)


def fastest_cpu(samples: Sequence[Sample]) -> float:
    return min((s.cpu_s for s in samples), default=math.nan)


def fastest_wall(samples: Sequence[Sample]) -> float:
    return min((s.wall_s for s in samples), default=math.nan)


def median_cpu(samples: Sequence[Sample]) -> float:
    return statistics.median(s.cpu_s for s in samples) if samples else math.nan


def implied_wall(cpu_s: float, vcpus: float) -> float:
    """Wall time of `cpu_s` of single-threaded CPU at a share of `vcpus` (≥ 1: one core)."""
    return cpu_s / min(vcpus, 1.0)


def _cpu_ratio(mine: Sequence[Sample], other: Sequence[Sample]) -> float:
    return round_ratio([s.cpu_s for s in mine], [s.cpu_s for s in other])


def cpu_per_function(s_yaml: Path = ROOT / "s.yaml") -> dict[str, float]:
    """`props.cpu` of each function in s.yaml (fc3's default when absent or not a number)."""
    shares: dict[str, float] = {}
    names = {name: function for function, (name, _) in FUNCTIONS.items()}
    current: str | None = None
    for line in s_yaml.read_text(encoding="utf-8").splitlines():
        if resource := re.match(r"^  ([\w-]+):\s*$", line):
            current = names.get(resource.group(1))
        elif current and (cpu := re.match(r"^      cpu:\s*['\"]?([\d.]+)['\"]?\s*(#.*)?$", line)):
            shares[current] = float(cpu.group(1))
    return {function: shares.get(function, DEFAULT_CPU) for function in FUNCTIONS}


def _probe(python: list[str], code_root: Path, code: str, env: dict[str, str]) -> Sample:
    done = subprocess.run(
        [*python, "-s", "-W", "ignore", "-c", _PROBE, code],
        cwd=code_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=IMPORT_PROBE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"probe in {code_root.name} failed: {last}")
    wall, cpu, compiled = json.loads(done.stdout.strip().splitlines()[-1])
    return Sample(wall, cpu, compiled)


def _function_env(runtime: str) -> dict[str, str]:
    """The function's settings as deployed (log sink, a webhook secret); CAMS on a closed
    loopback port, so the initializer's keep-alive connect fails at once."""
    env = {
        "CAMS_ENDPOINT": "http://127.0.0.1:9",
        "OUTCOME_SINKS": "log",
        "WEBHOOK_SECRET": "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMh",
    }
    if runtime == "python3.12":  # where FC puts the role's key for python3.12
        env |= {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": _STS["access_key_id"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": _STS["access_key_secret"],
            "ALIBABA_CLOUD_SECURITY_TOKEN": _STS["security_token"],
        }
    return env


@contextmanager
def _folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="wababind-fc-cold-"))
    try:
        yield folder
    finally:
        fc_package.make_writable(folder)
        shutil.rmtree(folder, ignore_errors=True)


def measure_runtime(runtime: str, reps: int) -> FcColdStart:
    """Build, unpack three ways, warm the compiled copy, then `reps` interleaved rounds."""
    from tools import build_package

    result = FcColdStart(runtime, cpu=cpu_per_function())
    python = fc_package.runtime_python(runtime)
    if python is None:
        result.problem = f"no CPython {runtime.removeprefix('python')} on this machine"
        return result
    with _folder() as folder:
        try:
            built = build_package.build(runtime, "log", folder / "build", require_bytecode=True)
            tea_site = folder / "tea" / "python"
            build_package.pip_install(tea_site, build_package.RUNTIMES[runtime], [TEA_REQUIREMENT])
        except SystemExit as exc:
            result.problem = f"the package build failed: {exc}"
            return result
        result.python = built.bytecode or ""
        shipped = fc_package.unpack(built.zip_path, folder / "package")
        compiled = fc_package.unpack(
            built.zip_path, folder / "compiled", read_only=False, bytecode=False
        )
        bare = fc_package.unpack(built.zip_path, folder / "bare", bytecode=False)
        fc_package.make_read_only(folder / "tea")
        env = _function_env(runtime)
        probes: list[tuple[list[Sample], Path, str, dict[str, str]]] = []
        for function in FUNCTIONS:
            code = ready_code(runtime, function)
            warm_env = fc_package.fc_env(compiled, env, writable=True)
            _probe(python, compiled, code, warm_env)  # Python caches its bytecode here
            as_fc = fc_package.fc_env(shipped, env)
            probes += [
                (result.package.setdefault(function, []), shipped, code, as_fc),
                (result.compiled.setdefault(function, []), compiled, code, warm_env),
                (result.bare.setdefault(function, []), bare, code, fc_package.fc_env(bare, env)),
            ]
        tea_env = fc_package.fc_env(folder / "tea", env)
        probes.append((result.tea, folder / "tea", f"import {TEA_MODULE}\n", tea_env))
        probes.append((result.floor, shipped, floor_source(), fc_package.fc_env(shipped, env)))
        for rep in range(reps):
            for samples, code_root, code, probe_env in probes if rep % 2 == 0 else probes[::-1]:
                samples.append(_probe(python, code_root, code, probe_env))
    return result


def measure_fc_cold_start(
    reps: int, install: bool, runtimes: Sequence[str] = RUNTIMES
) -> list[FcColdStart]:
    """Every runtime of `runtimes`; one whose CPython is missing says so."""
    if not install:
        return [
            FcColdStart(r, problem="not run (--no-install: the packages come from PyPI)")
            for r in runtimes
        ]
    results = []
    for runtime in runtimes:
        try:
            result = measure_runtime(runtime, reps)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:  # a probe failed: say so
            result = FcColdStart(runtime, problem=str(exc))
        results.append(result)
        print(f"[cold start as FC runs it] {describe(result)}", flush=True)
    return results


def describe(result: FcColdStart) -> str:
    if result.problem:
        return f"{result.runtime}: not measured: {result.problem}"
    floor = f"; import floor {result.floor_tea_ratio():.3f}x Tea" if result.floor else ""
    return (
        f"{result.runtime}: "
        + "; ".join(
            f"{f} {fastest_cpu(result.package[f]) * 1e3:.0f} ms CPU, "
            f"{result.compiled_ratio(f):.2f}x compiled, {result.tea_ratio(f):.3f}x Tea"
            for f in result.package
        )
        + floor
    )


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 1e3:.0f}"


def render_fc_cold_start(results: Sequence[FcColdStart]) -> list[str]:
    """The section of bench/results.md: one table per runtime, then the ratios."""
    lines = ["## Cold start as FC runs it", ""]
    lines += [
        "The package `make package` builds for each runtime, unzipped read-only and run on "
        "that CPython with `PYTHONDONTWRITEBYTECODE=1` (FC's `/code` is read-only): ready to "
        "serve (`index` + `index.initialize` with the runtime's context) in fresh "
        "interpreters, against the same package compiled by Python itself (its shipped "
        f"bytecode removed, writable, warmed once) and against `{TEA_MODULE}` "
        f"({TEA_REQUIREMENT}) installed the same way (pip for the runtime; no bytecode, "
        "read-only). Wall at the function's vCPU = fastest CPU ÷ s.yaml's `cpu` for that "
        f"function (fc3's default {DEFAULT_CPU} when unset).",
        "",
    ]
    for result in results:
        if result.problem:
            lines += [f"{result.runtime}: not measured: {result.problem}.", ""]
            continue
        rows = []
        for function, samples in result.package.items():
            vcpu = result.cpu.get(function, DEFAULT_CPU)
            for label, runs in (
                (f"{function} function, as FC runs it", samples),
                (f"{function} function, the same package compiled", result.compiled[function]),
                (
                    f"{function} function, the package without bytecode, as FC runs it",
                    result.bare.get(function, []),
                ),
            ):
                if not runs:
                    continue
                rows.append(_row(label, runs, vcpu))
        rows.append(_row("Tea SDK client import, as FC runs it", result.tea, DEFAULT_CPU))
        if result.floor:
            label = f"import floor ({floor_names()}), as FC runs it"
            rows.append(_row(label, result.floor, DEFAULT_CPU))
        header = (
            "fresh interpreter",
            "fastest wall (ms)",
            "fastest CPU (ms)",
            "median CPU (ms)",
            "wall at the function's vCPU (ms)",
            "modules compiled at start",
            "runs",
        )
        lines += [f"### {result.runtime} ({result.python})", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += [""]
        lines += [
            f"{function} function as FC runs it, CPU / the same package compiled: "
            f"**{result.compiled_ratio(function):.2f}x**; / Tea SDK as FC runs it: "
            f"**{result.tea_ratio(function):.3f}x** (CPU, the median of the rounds' ratios)."
            + _without_bytecode(result, function)
            for function in result.package
        ]
        if result.floor:
            lines += [
                f"The import floor alone, from the same package as FC runs it / Tea SDK: "
                f"**{result.floor_tea_ratio():.3f}x**: the least either function's Tea ratio "
                "can be, our own code and initializer aside."
            ]
        lines += [""]
    return lines


def _without_bytecode(result: FcColdStart, function: str) -> str:
    """What the package costs without its bytecode (a build with no runtime CPython)."""
    bare = fastest_cpu(result.bare.get(function, []))
    shipped = fastest_cpu(result.package[function])
    if math.isnan(bare):
        return ""
    vcpu = result.cpu.get(function, DEFAULT_CPU)
    return (
        f" Without its bytecode: {_ms(bare - shipped)} ms more CPU ({bare / shipped:.1f}x), "
        f"{_ms(implied_wall(bare - shipped, vcpu))} ms more wall at {vcpu:g} vCPU."
    )


def _row(label: str, samples: Sequence[Sample], vcpu: float) -> list[str]:
    cpu = fastest_cpu(samples)
    compiled = max((s.compiled for s in samples), default=0)
    return [
        label,
        _ms(fastest_wall(samples)),
        _ms(cpu),
        _ms(median_cpu(samples)),
        f"{_ms(implied_wall(cpu, vcpu))} at {vcpu:g} vCPU",
        f"{compiled}",
        f"{len(samples)}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Only this scenario, with its targets: `python -m wababind_local.bench.fc_cold_start`."""
    import argparse

    from wababind_local.bench.targets import fc_cold_targets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--reps", type=int, default=21, help="fresh interpreters of each")
    parser.add_argument("--runtime", action="append", choices=RUNTIMES, help="default: both")
    args = parser.parse_args(argv)
    results = measure_fc_cold_start(args.reps, True, args.runtime or RUNTIMES)
    print("\n".join(render_fc_cold_start(results)))
    for target in fc_cold_targets(results):
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[target.passed]
        print(f"- {target.name}: {target.measured}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
