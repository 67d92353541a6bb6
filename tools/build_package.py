#!/usr/bin/env python3
"""Build the code package that `s deploy` uploads: the function's code plus wheels for FC's runtime.

Runs on the deployer's machine (macOS, Windows, Linux; Python 3.9+ with pip, stdlib only), from
`s deploy`'s pre-deploy action and from `make package`. pip installs the runtime dependencies
for the *function's* interpreter, never the local one:

    --platform manylinux_2_28_x86_64 ... manylinux1_x86_64   (what the runtime's glibc can load)
    --python-version 3.10 --implementation cp --abi cp310    (CPython 3.10 and its ABI)
    --only-binary=:all:                                      (never build from source here)

into a clean target, copies only the function's code next to them, and writes the zip FC
receives (s.yaml's `code:` names it) with its size. `--compare-tea` installs the official Tea
SDK client the same way and prints the size ratio.

Layout of the zip (FC unpacks it to /code):

    index.py  wababind/...   the function's code (no caches, nothing local-only)
    python/...               the wheels; PYTHONPATH=/code/python in s.yaml finds them
"""

from __future__ import annotations

import argparse
import email.parser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_ROOT = ROOT / "functions" / "bind_waba"
CODE_ENTRIES = ("index.py", "wababind")  # the function's own code, nothing else from CODE_ROOT
REQUIREMENTS = ROOT / "requirements.txt"
SLS_REQUIREMENTS = ROOT / "requirements-sls.txt"  # only when OUTCOME_SINKS names `sls`
LOCK = ROOT / "requirements-lock.txt"  # every distribution a package may hold, pinned (-c)
S_YAML = ROOT / "s.yaml"
BUILD = ROOT / "build"
PACKAGE_NAME = "bind_waba"
DEPS_DIR = "python"
TEA_REQUIREMENT = "alibabacloud_cams20200606==5.3.1"  # the official client, for the size ratio
SKIPPED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed, so the same inputs give the same zip


@dataclass(frozen=True)
class Runtime:
    """An FC Python runtime: which CPython, and which glibc its Debian ships (manylinux tag)."""

    python: str  # "3.10"
    glibc: tuple[int, int]  # newest manylinux_2_N the runtime can load

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platforms(self, arch: str = "x86_64") -> list[str]:
        """PEP 600 tags from the runtime's glibc down to 2.5, then the legacy aliases
        (PEP 513/571/599), newest first: pip prefers the earlier ones."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return tags + [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]


# FC's Python runtimes ("Python runtimes" overview of the FC 3.0 docs): python3.10 on Debian 10
# (glibc 2.28), python3.12 on Debian 11 (glibc 2.31); both x86_64.
RUNTIMES = {
    "python3.10": Runtime("3.10", (2, 28)),
    "python3.12": Runtime("3.12", (2, 31)),
}


def runtime_from_s_yaml(path: Path = S_YAML) -> str:
    """`vars.runtime` of s.yaml, the one place the runtime is named (read without a YAML lib)."""
    in_vars = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^vars:\s*$", line):
            in_vars = True
        elif in_vars and re.match(r"^\S", line):
            break
        elif in_vars and (found := re.match(r"^\s+runtime:\s*['\"]?([\w.]+)['\"]?\s*$", line)):
            return found.group(1)
    raise SystemExit(f"{path}: no `runtime:` under `vars:`")


def wants_sls(sinks: str) -> bool:
    return "sls" in {s.strip().lower() for s in sinks.split(",")}


def pip(*args: str) -> None:
    """`python -m pip ARGS` quietly; pip's output only when it fails."""
    command = [
        sys.executable,
        "-m",
        "pip",
        *args,
        "--disable-pip-version-check",
        "-q",
        "--no-input",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"pip {args[0]} failed (exit {done.returncode})")


def pip_install(target: Path, runtime: Runtime, requirements: list[str]) -> None:
    """Wheels for the runtime into `target`, with every dependency the runtime needs.

    pip picks wheels by the runtime's tags, but evaluates dependency markers on *this*
    interpreter (e.g. redis needs async-timeout below Python 3.11.3): `markers` finds what
    the runtime needs beyond that, and what it does not need, after each install."""
    added: list[str] = []
    for _ in range(3):
        shutil.rmtree(target, ignore_errors=True)
        _pip_install(target, runtime, requirements + added)
        missing, unneeded = markers(target, runtime, requirements + added)
        if not missing:
            for dist_info in unneeded:
                remove_distribution(dist_info)
            return
        added += missing
    raise SystemExit(f"dependencies still missing after 3 installs: {', '.join(missing)}")


def _pip_install(target: Path, runtime: Runtime, requirements: list[str]) -> None:
    """One pip install of `requirements` for the runtime into `target`.

    A requirement published only as a source archive (aliyun-log-python-sdk) is first built
    into a wheel here, without its dependencies; a pure-Python one comes out `py3-none-any` and
    fits every runtime, anything else would not match the runtime's tags and pip stops."""
    local_wheels = target.parent / f"{target.name}-wheels"
    shutil.rmtree(local_wheels, ignore_errors=True)
    # Requires-Python is checked for the runtime below, not for the interpreter running this.
    pip(
        "download",
        "--no-deps",
        "--ignore-requires-python",
        "--dest",
        str(local_wheels),
        *requirements,
    )
    sources = [str(p) for p in local_wheels.iterdir() if p.suffix != ".whl"]
    if sources:
        pip("wheel", "--no-deps", "--wheel-dir", str(local_wheels), *sources)
    args = ["install", "--no-compile", "--target", str(target), "--find-links", str(local_wheels)]
    for platform in runtime.platforms():
        args += ["--platform", platform]
    args += ["--python-version", runtime.python, "--implementation", "cp", "--abi", runtime.abi]
    if sys.version_info[:2] < tuple(int(x) for x in runtime.python.split(".")):
        # An older pip checks Requires-Python against this interpreter at install time too;
        # the wheels were chosen for the runtime's version above.
        args.append("--ignore-requires-python")
    pip(*args, "--only-binary=:all:", *requirements)
    shutil.rmtree(local_wheels)
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: nothing FC runs


def marker_environment(runtime: Runtime) -> dict[str, str]:
    """PEP 508 marker values of the FC runtime (CPython on Linux x86_64)."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{runtime.python}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{runtime.python}.0",
        "python_version": runtime.python,
        "sys_platform": "linux",
    }


def requirement_lines(requirements: list[str]) -> list[str]:
    """The requirements named directly or in `-r FILE` arguments (comments dropped)."""
    lines: list[str] = []
    items = iter(requirements)
    for item in items:
        if item == "-r":
            text = Path(next(items)).read_text(encoding="utf-8")
            lines += [x.split("#")[0].strip() for x in text.splitlines()]
        elif item == "-c":
            next(items)  # constraints pin versions, they require nothing
        else:
            lines.append(item)
    return [line for line in lines if line and not line.startswith("-")]


def markers(
    target: Path, runtime: Runtime, requirements: list[str]
) -> tuple[list[str], list[Path]]:
    """(requirements the runtime needs but `target` lacks, dist-infos it does not need): the
    dependency closure walked from the installed METADATA with the runtime's marker values."""
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

    dists: dict[str, Path] = {}
    for dist_info in target.glob("*.dist-info"):
        meta = email.parser.Parser().parsestr((dist_info / "METADATA").read_text("utf-8"))
        dists[canonicalize_name(meta["Name"])] = dist_info
    environment = marker_environment(runtime)
    todo = [(Requirement(line), "") for line in requirement_lines(requirements)]
    needed: set[str] = set()
    missing: list[str] = []
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in needed:
            continue
        needed.add(name)
        if name not in dists:
            requirement.marker = None  # pip would evaluate it on this interpreter again
            missing.append(str(requirement))
            continue
        meta = email.parser.Parser().parsestr((dists[name] / "METADATA").read_text("utf-8"))
        for line in meta.get_all("Requires-Dist") or []:
            todo += [(Requirement(line), e) for e in ["", *requirement.extras]]
    return missing, [d for name, d in dists.items() if name not in needed]


def remove_distribution(dist_info: Path) -> None:
    """Delete an installed distribution by its RECORD (what pip would uninstall)."""
    site = dist_info.parent
    for line in (dist_info / "RECORD").read_text("utf-8").splitlines():
        path = site / line.rsplit(",", 2)[0]
        if path.is_file() and path.resolve().is_relative_to(site.resolve()):
            path.unlink()
    shutil.rmtree(dist_info, ignore_errors=True)
    for folder in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()


def copy_code(destination: Path) -> None:
    for entry in CODE_ENTRIES:
        source = CODE_ROOT / entry
        if source.is_dir():
            shutil.copytree(
                source,
                destination / entry,
                ignore=shutil.ignore_patterns(*SKIPPED_DIRS, "*.py[co]"),
            )
        else:
            shutil.copy2(source, destination / entry)


def write_zip(source: Path, zip_path: Path) -> None:
    """Deterministic: sorted entries, fixed dates, mode 0644 (0755 for shared objects)."""
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_dir() or path.suffix in SKIPPED_SUFFIXES or SKIPPED_DIRS & set(path.parts):
                continue
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if ".so" in path.suffixes else 0o644) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(runtime_name: str, sinks: str, out: Path = BUILD) -> Path:
    """The zip FC receives, built from a clean staging folder; returns its path."""
    runtime = RUNTIMES.get(runtime_name)
    if runtime is None:
        raise SystemExit(f"unknown runtime {runtime_name!r}; known: {', '.join(RUNTIMES)}")
    staging = out / PACKAGE_NAME
    shutil.rmtree(staging, ignore_errors=True)  # stale files from an earlier build never ship
    staging.mkdir(parents=True)
    requirements = ["-r", str(REQUIREMENTS), "-c", str(LOCK)]
    if wants_sls(sinks):
        requirements += ["-r", str(SLS_REQUIREMENTS)]
    pip_install(staging / DEPS_DIR, runtime, requirements)
    copy_code(staging)
    zip_path = out / f"{PACKAGE_NAME}.zip"
    write_zip(staging, zip_path)
    return zip_path


def write_lock(site: Path, runtime_name: str) -> None:
    """requirements-lock.txt from a build with every sink: what each package may hold."""
    pins = sorted(
        f"{meta['Name']}=={meta['Version']}"
        for meta in (
            email.parser.Parser().parsestr((d / "METADATA").read_text("utf-8"))
            for d in site.glob("*.dist-info")
        )
    )
    header = (
        "# Every distribution the code package may hold, pinned: tools/build_package.py passes\n"
        "# this file to pip as constraints. Written by `tools/build_package.py --lock` (a build\n"
        f"# for {runtime_name} with the sls sink); regenerate it after changing a requirement.\n"
    )
    LOCK.write_text(header + "\n".join(pins) + "\n", encoding="utf-8")


def tea_size(runtime_name: str, out: Path = BUILD) -> int:
    """The official Tea SDK client installed the same way (the comparison's yardstick)."""
    target = out / "tea-sdk"
    shutil.rmtree(target, ignore_errors=True)
    pip_install(target, RUNTIMES[runtime_name], [TEA_REQUIREMENT])
    return tree_size(target)


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", help="FC runtime (default: vars.runtime of s.yaml)")
    parser.add_argument(
        "--sinks",
        default=os.environ.get("OUTCOME_SINKS", "log"),
        help="OUTCOME_SINKS the package serves; `sls` adds the SLS SDK (default: $OUTCOME_SINKS)",
    )
    parser.add_argument("--out", type=Path, default=BUILD, help="build folder (default: build/)")
    parser.add_argument(
        "--compare-tea", action="store_true", help=f"also install {TEA_REQUIREMENT}, print ratio"
    )
    parser.add_argument(
        "--lock",
        action="store_true",
        help="build with every sink and rewrite requirements-lock.txt",
    )
    args = parser.parse_args(argv)
    runtime_name = args.runtime or runtime_from_s_yaml()
    if args.lock:
        LOCK.write_text("", encoding="utf-8")  # resolve afresh, then pin what came out
        args.sinks = "log,callback,sls"
    zip_path = build(runtime_name, args.sinks, args.out)
    if args.lock:
        write_lock(args.out / PACKAGE_NAME / DEPS_DIR, runtime_name)
        print(f"package: wrote {LOCK}")
    code_root = tree_size(args.out / PACKAGE_NAME)
    print(
        f"package: {zip_path} for {runtime_name} "
        f"(sinks {args.sinks or 'log'}{', SLS SDK included' if wants_sls(args.sinks) else ''}): "
        f"zip {mib(zip_path.stat().st_size)}, unpacked {mib(code_root)}"
    )
    if args.compare_tea:
        tea = tea_size(runtime_name, args.out)
        print(
            f"package: {TEA_REQUIREMENT} installed the same way: {mib(tea)}; "
            f"code root / Tea SDK = {code_root / tea:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
