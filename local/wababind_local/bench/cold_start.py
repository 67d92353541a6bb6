"""Scenario 3: cold start as *ready to serve*, in fresh interpreters.

Ready to serve = importing the handler module plus FC's initializer (`index.initialize`: the
function's own handler modules, settings, SDK import, CAMS client, Redis connection), everything
the first request no longer pays; measured for each function, since each imports only what its
own handler needs. Each is compared, in the same run, with importing the official Tea SDK client
and with the import floor: the runtime dependencies alone (`aliyunsdkcore.client` as our code
imports it, `pydantic`, `standardwebhooks`; `redis` when REDIS_URL is set). `reps` rounds of
fresh interpreters (bytecode cached), every probe back to back in each round; a ratio is the
median of the rounds' ratios (stats.round_ratio), which drops the rounds a neighbour disturbed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from wababind_local.bench.config import (
    CODE_ROOT,
    IMPORT_PROBE_TIMEOUT_S,
    ROOT,
    TEA_MODULE,
    TEA_REQUIREMENT,
)
from wababind_local.bench.results import ColdStart, PackageSize
from wababind_local.bench.stats import import_breakdown

# The two functions of s.yaml: (function name, handler), by the name the bench reports.
FUNCTIONS = {
    "HTTP": ("bind-waba-http", "index.http_handler"),
    "MQ": ("bind-waba-mq", "index.mq_handler"),
}
READY_MODULES = {function: f"_wababind_ready_{function.lower()}" for function in FUNCTIONS}
FLOOR_MODULE = "_wababind_floor"
# What FC's initializer gets: a context with the role's STS key (a made-up one; nothing is called).
_READY_SOURCE = """\
from types import SimpleNamespace

import index

index.initialize(SimpleNamespace(
    request_id="bench-initializer",
    credentials=SimpleNamespace(
        access_key_id="STS.bench", access_key_secret="bench", security_token="bench"
    ),
    function=SimpleNamespace(name={name!r}, handler={handler!r}, memory=512, timeout=600),
))
"""
FLOOR_IMPORTS = ("aliyunsdkcore.client", "pydantic", "standardwebhooks")


def _floor(redis: bool) -> list[str]:
    return [*FLOOR_IMPORTS, *(["redis"] if redis else [])]


def floor_names(redis: bool = False) -> str:
    """The floor's imports as the bench shows them."""
    sdk, *others = _floor(redis)
    return ", ".join([f"`{sdk}` as our code imports it", *(f"`{name}`" for name in others)])


def floor_source(redis: bool = False) -> str:
    """The floor's imports as our code makes them: the SDK with what it imports but our calls
    never run left unloaded (wababind.deferred), so that no function of ours goes below it."""
    sdk, *others = _floor(redis)
    return (
        "from wababind.deferred import SDK_UNUSED, deferring\n"
        f"with deferring(SDK_UNUSED):\n    import {sdk}\n"
        + "".join(f"import {name}\n" for name in others)
    )


_IMPORT_PROBE = (
    "import sys, time\n"
    "t = time.perf_counter()\n"
    "__import__(sys.argv[1])\n"
    "print(time.perf_counter() - t)\n"
)


class ImportProbeError(RuntimeError):
    """The module did not import in the probe interpreter."""


_probe_dir: Path | None = None


def _probe_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(CODE_ROOT), *([str(_probe_dir)] if _probe_dir else []), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # The function's own settings as deployed (the log sink; the webhook secret is required);
    # CAMS on a closed loopback port: the initializer's keep-alive connect fails at once and
    # nothing leaves this machine.
    env["CAMS_ENDPOINT"] = "http://127.0.0.1:9"
    env.setdefault("OUTCOME_SINKS", "log")
    env.setdefault("WEBHOOK_SECRET", "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMh")
    return env


@contextmanager
def probe_modules(redis: bool) -> Iterator[None]:
    """Throwaway modules whose import is what is timed: ready to serve (one per function), and
    the floor."""
    global _probe_dir
    with tempfile.TemporaryDirectory(prefix="wababind-bench-") as folder:
        for function, (name, handler) in FUNCTIONS.items():
            source = _READY_SOURCE.format(name=name, handler=handler)
            (Path(folder) / f"{READY_MODULES[function]}.py").write_text(source)
        (Path(folder) / f"{FLOOR_MODULE}.py").write_text(floor_source(redis))
        _probe_dir = Path(folder)
        try:
            yield
        finally:
            _probe_dir = None


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
    """Warm the bytecode caches once, then `reps` fresh interpreters of each, interleaved."""
    result = ColdStart(redis=bool(os.environ.get("REDIS_URL")))
    with probe_modules(result.redis):
        for module in (*READY_MODULES.values(), FLOOR_MODULE):
            time_import(module)
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
        probes = [(module, result.ready_s.setdefault(f, [])) for f, module in READY_MODULES.items()]
        probes.append((FLOOR_MODULE, result.floor_s))
        if not result.tea_problem:
            probes.append((TEA_MODULE, result.tea_s))
        for rep in range(reps):
            for module, times in probes if rep % 2 == 0 else probes[::-1]:
                times.append(time_import(module)[0])
        for function, module in READY_MODULES.items():
            _, importtime = time_import(module, ["-X", "importtime"])
            result.breakdown[function] = import_breakdown(importtime, module, own=(module, *OWN))
    return result


OWN = ("index", "wababind")


def measure_package(install: bool) -> PackageSize:
    """The code package as `make package` builds it (pip, from PyPI), against the Tea SDK."""
    if not install:
        return PackageSize(problem="not built (--no-install: it downloads wheels from PyPI)")
    from tools import build_package

    with tempfile.TemporaryDirectory(prefix="wababind-package-") as folder:
        out = Path(folder)
        try:
            zip_path = build_package.build(build_package.runtime_from_s_yaml(), "log", out).zip_path
            size = PackageSize(
                zip_bytes=zip_path.stat().st_size,
                code_root_bytes=build_package.tree_size(out / build_package.PACKAGE_NAME),
            )
            size.tea_bytes = build_package.tea_size(build_package.runtime_from_s_yaml(), out)
        except SystemExit as exc:
            return PackageSize(problem=f"the package build failed: {exc}")
    return size
