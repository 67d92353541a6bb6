"""Scenario 3: importing the handler in fresh interpreters, against the Tea SDK client."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from wababind_local.bench.config import (
    CODE_ROOT,
    HANDLER_MODULE,
    IMPORT_PROBE_TIMEOUT_S,
    ROOT,
    TEA_MODULE,
    TEA_REQUIREMENT,
)
from wababind_local.bench.results import ColdStart
from wababind_local.bench.stats import import_breakdown

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
