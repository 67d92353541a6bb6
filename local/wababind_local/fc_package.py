"""The code package as FC runs it: unzipped where Python cannot write, on the runtime's CPython.

FC unpacks the zip to /code, read-only, and starts `python3 -W ignore .../bootstrap.py` with
PYTHONPATH=/code/python (s.yaml), cwd /code: Python can write no `__pycache__` and compiles
whatever the package ships no bytecode for. Here: the files and folders lose their write bits,
and PYTHONDONTWRITEBYTECODE=1 as well, because root writes whatever the modes say. Used by the
package test and by the bench's cold start.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

# Put first in a probe: every module Python compiles from source (no usable bytecode) is noted
# in `_compiled`, by path (SourceLoader.source_to_code is where the compile happens).
WATCH_COMPILES = """\
import importlib._bootstrap_external as _bx
_compiled = []
_source_to_code = _bx.SourceLoader.source_to_code
def _watch(self, data, path, *args, **kwargs):
    _compiled.append(path)
    return _source_to_code(self, data, path, *args, **kwargs)
_bx.SourceLoader.source_to_code = _watch
"""


def unpack(zip_path: Path, dest: Path, *, read_only: bool = True, bytecode: bool = True) -> Path:
    """The zip's files under `dest`, as FC lays them out; `bytecode=False` drops the shipped
    `__pycache__` folders (the package as it would be without them)."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(dest)
    if not bytecode:
        for cache in sorted(dest.rglob("__pycache__"), key=lambda p: -len(p.parts)):
            shutil.rmtree(cache)
    if read_only:
        make_read_only(dest)
    return dest


def make_read_only(root: Path) -> None:
    """Take every write bit off the files and folders under `root`, as on FC's /code."""
    for path in [*root.rglob("*"), root]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(root: Path) -> None:
    """Give the write bits back (before deleting a read-only copy)."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def listing(root: Path) -> set[str]:
    """Every file and folder under `root`, relative: what a run may not change."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def fc_env(
    code_root: Path, extra: dict[str, str] | None = None, *, writable: bool = False
) -> dict[str, str]:
    """The environment of a handler on FC: the code root and its `python/` on the path and
    nothing of this machine's; no bytecode written unless `writable` (a local, warm run)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(code_root), str(code_root / "python")]),
        "LANG": "C.UTF-8",
        **(extra or {}),
    }
    if not writable:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def runtime_python(runtime_name: str) -> list[str] | None:
    """The command of this machine's CPython of the runtime's version (found as the package
    build finds it); None when there is none."""
    from tools.build_package import RUNTIMES, find_runtime_python

    found = find_runtime_python(RUNTIMES[runtime_name].python)
    return found[0] if found else None
