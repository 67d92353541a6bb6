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

Every module of ours and of every dependency also ships its bytecode for the runtime's CPython
(FC's /code is read-only: Python can write no cache there and would compile every module at every
cold start). The bytecode is PEP 552 "unchecked-hash": Python loads it without looking at the
source's mtime (which unzipping does not keep). It is made by a CPython of the runtime's version
found on this machine (`find_runtime_python`); bytecode is the same on every OS. Without one the
package ships without bytecode and the build says what that costs; `--require-bytecode` (or
CI=true) makes that an error.

Layout of the zip (FC unpacks it to /code):

    index.py  wababind/...   the function's code (nothing local-only)
    python/...               the wheels; PYTHONPATH=/code/python in s.yaml finds them
    **/__pycache__/*.cpython-3XX.pyc   beside each module: its bytecode for the runtime

`s deploy` runs this once per function (s.yaml's pre-deploy actions): the second run finds
the zip built from the same inputs (`inputs_digest`) and reuses it.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
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
SKIPPED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})  # of the source tree
# Required by a dependency but never loaded by the function, so not shipped (with what only they
# need: cffi, pycparser). aliyun-python-sdk-core requires `cryptography` for its RSA key-pair
# signer alone, which wababind.deferred leaves unloaded: we sign with an AccessKey or an STS
# token. It is half of the zip. redis tries `import cryptography` for OCSP over TLS only.
NEVER_LOADED = frozenset({"cryptography"})
ZIP_SKIPPED_DIRS = SKIPPED_DIRS - {"__pycache__"}  # the staging tree's caches are ours to ship
SKIPPED_SUFFIXES = (".pyo",)
RUNTIME_PYTHON_ENV = "WABABIND_RUNTIME_PYTHON"  # a CPython of the runtime's version, if elsewhere
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


def pip_install(
    target: Path,
    runtime: Runtime,
    requirements: list[str],
    leave_out: frozenset[str] = frozenset(),
) -> None:
    """Wheels for the runtime into `target`, with every dependency the runtime needs, except
    the distributions `leave_out` names (and what only they need).

    pip picks wheels by the runtime's tags, but evaluates dependency markers on *this*
    interpreter (e.g. redis needs async-timeout below Python 3.11.3): `markers` finds what
    the runtime needs beyond that, and what it does not need, after each install."""
    added: list[str] = []
    for _ in range(3):
        shutil.rmtree(target, ignore_errors=True)
        _pip_install(target, runtime, requirements + added)
        missing, unneeded = markers(target, runtime, requirements + added, leave_out)
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
    target: Path,
    runtime: Runtime,
    requirements: list[str],
    leave_out: frozenset[str] = frozenset(),
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
        if name in needed or name in leave_out:
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


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else -1 for x in re.split(r"[.\-]", folder.name))


def runtime_python_candidates(version: str) -> list[list[str]]:
    """Commands that may run CPython `version` here, in the order they are tried:
    `pythonX.Y` on PATH, the Windows launcher `py -X.Y`, pyenv's
    (and pyenv-win's) installed versions, newest patch first, and `uv python find X.Y`."""
    found: list[list[str]] = []
    if on_path := shutil.which(f"python{version}"):
        found.append([on_path])
    if shutil.which("py"):
        found.append(["py", f"-{version}"])
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    if shutil.which("pyenv"):
        roots.insert(0, _output(["pyenv", "root"]) or "")
    roots.append(str(Path.home() / ".pyenv" / "pyenv-win"))
    for root in dict.fromkeys(r for r in roots if r):
        folders = sorted(Path(root, "versions").glob(f"{version}.*"), key=_version_key)
        for folder in reversed(folders):
            for exe in (folder / "bin" / f"python{version}", folder / "python.exe"):
                if exe.is_file():
                    found.append([str(exe)])
    if shutil.which("uv") and (uv_found := _output(["uv", "python", "find", version])):
        found.append([uv_found])
    return found


def _output(command: list[str]) -> str | None:
    """The command's stdout, stripped; None when it cannot run or fails."""
    try:
        done = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_runtime_python(version: str) -> tuple[list[str], str] | None:
    """(command, full version) of the first candidate that really is CPython `version` (a pyenv
    shim on PATH may exist and fail); None when this machine has none. A CPython named in
    $WABABIND_RUNTIME_PYTHON is the only one tried, and must be one."""
    probe = "import sys; print(sys.implementation.name, sys.version.split()[0])"
    explicit = os.environ.get(RUNTIME_PYTHON_ENV)
    for command in [[explicit]] if explicit else runtime_python_candidates(version):
        answer = (_output([*command, "-c", probe]) or "").split()
        if answer[:1] == ["cpython"] and answer[1].rsplit(".", 1)[0] == version:
            return command, answer[1]
    if explicit:
        raise SystemExit(f"{RUNTIME_PYTHON_ENV}={explicit} is not a CPython {version}")
    return None


def compile_bytecode(python: list[str], staging: Path) -> None:
    """Every .py under `staging` compiled by the runtime's CPython into __pycache__ beside it,
    PEP 552 unchecked-hash (used without checking the source), as FC will find it under /code.

    A module that CPython cannot compile (a Python 2 leftover in a wheel) could never be
    imported on the runtime either: the build names it and goes on."""
    # -d /code: the file names inside the bytecode are where FC puts the modules, so on FC the
    # import has no code objects to rename (importlib fixes co_filename when it differs).
    command = [*python, "-m", "compileall", "-q", "-j", "0", "-d", "/code"]
    command += ["--invalidation-mode", "unchecked-hash", str(staging)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        failed = sorted(set(re.findall(r"\*\*\* Error compiling '([^']+)'", done.stdout)))
        if not failed:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"compileall failed (exit {done.returncode})")
        print(f"package: {len(failed)} module(s) the runtime cannot compile (never importable):")
        for path in failed:
            print(f"  {path}")


def no_bytecode_warning(runtime_name: str, version: str) -> str:
    """What a deployer without the runtime's CPython gets, what it costs, and how to fix it."""
    return (
        f"package: WARNING: no CPython {version} on this machine ({RUNTIME_PYTHON_ENV}, "
        f"python{version} on PATH, py -{version}, pyenv, uv python find {version}), so the "
        "package ships NO bytecode. FC's /code is read-only: every cold start of "
        f"{runtime_name} then compiles every module from source: about 0.35 s of CPU more, "
        "3x the cold start, about 1 s of wall at 0.35 vCPU (README, 'The code package'). "
        "To fix it, install CPython "
        f"{version} (`uv python install {version}`, `pyenv install {version}`, or "
        f"`py install {version}` / python.org on Windows), or point {RUNTIME_PYTHON_ENV} at "
        "one, and build again."
    )


def code_files() -> list[Path]:
    """The function's own files the package ships (no caches, nothing local-only)."""
    files = []
    for entry in CODE_ENTRIES:
        source = CODE_ROOT / entry
        paths = sorted(source.rglob("*")) if source.is_dir() else [source]
        files += [
            p
            for p in paths
            if p.is_file()
            and not SKIPPED_DIRS & set(p.relative_to(CODE_ROOT).parts)
            and p.suffix not in (".pyc", ".pyo")
        ]
    return files


def copy_code(destination: Path) -> None:
    for source in code_files():
        target = destination / source.relative_to(CODE_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def write_zip(source: Path, zip_path: Path) -> None:
    """Deterministic: sorted entries, fixed dates, mode 0644 (0755 for shared objects). Written
    beside the target and renamed: a zip on disk is always a whole one."""
    partial = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if path.is_dir() or path.suffix in SKIPPED_SUFFIXES:
                continue
            if ZIP_SKIPPED_DIRS & set(relative.parts):
                continue
            info = zipfile.ZipInfo(relative.as_posix(), ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if ".so" in path.suffixes else 0o644) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    os.replace(partial, zip_path)


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Built:
    """A package on disk: its zip, the CPython that compiled its bytecode (None: it has none),
    and whether this run reused an earlier build of the same inputs."""

    zip_path: Path
    bytecode: str | None
    reused: bool = False


def inputs_digest(runtime_name: str, sinks: str, bytecode: str | None) -> str:
    """SHA-256 of everything a build depends on: this script, the runtime, whether the SLS SDK
    is in, the requirement and lock files, the function's code, and the CPython compiling the
    bytecode. Two builds with the same digest make the same zip."""
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    feed("script", Path(__file__).read_bytes())
    feed("runtime", runtime_name.encode())
    feed("sls", str(wants_sls(sinks)).encode())
    feed("bytecode", str(bytecode).encode())
    for path in [REQUIREMENTS, LOCK, *([SLS_REQUIREMENTS] if wants_sls(sinks) else [])]:
        feed(path.name, path.read_bytes())
    for path in code_files():
        feed(path.relative_to(CODE_ROOT).as_posix(), path.read_bytes())
    return digest.hexdigest()


def _stamp_path(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.name + ".inputs.json")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reusable(zip_path: Path, inputs: str) -> bool:
    """The zip on disk was built from these inputs and is the zip that build wrote."""
    try:
        stamp = json.loads(_stamp_path(zip_path).read_text(encoding="utf-8"))
        return bool(stamp["inputs"] == inputs and stamp["zip_sha256"] == _file_sha256(zip_path))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build(
    runtime_name: str,
    sinks: str,
    out: Path = BUILD,
    *,
    require_bytecode: bool = False,
    reuse: bool = True,
) -> Built:
    """The zip FC receives, built from a clean staging folder, with the runtime's bytecode when
    this machine has the runtime's CPython; an earlier build of the same inputs is reused."""
    runtime = RUNTIMES.get(runtime_name)
    if runtime is None:
        raise SystemExit(f"unknown runtime {runtime_name!r}; known: {', '.join(RUNTIMES)}")
    python = find_runtime_python(runtime.python)
    if python is None:
        if require_bytecode:
            raise SystemExit(
                no_bytecode_warning(runtime_name, runtime.python).replace("WARNING", "ERROR")
                + " (--require-bytecode / CI=true)"
            )
        print(no_bytecode_warning(runtime_name, runtime.python), file=sys.stderr)
    bytecode = f"CPython {python[1]}" if python else None
    zip_path = out / f"{PACKAGE_NAME}.zip"
    inputs = inputs_digest(runtime_name, sinks, bytecode)
    if reuse and reusable(zip_path, inputs):
        return Built(zip_path, bytecode, reused=True)
    _stamp_path(zip_path).unlink(missing_ok=True)
    staging = out / PACKAGE_NAME
    shutil.rmtree(staging, ignore_errors=True)  # stale files from an earlier build never ship
    staging.mkdir(parents=True)
    requirements = ["-r", str(REQUIREMENTS), "-c", str(LOCK)]
    if wants_sls(sinks):
        requirements += ["-r", str(SLS_REQUIREMENTS)]
    pip_install(staging / DEPS_DIR, runtime, requirements, leave_out=NEVER_LOADED)
    copy_code(staging)
    if python:
        compile_bytecode(python[0], staging)
    write_zip(staging, zip_path)
    stamp = {"inputs": inputs, "zip_sha256": _file_sha256(zip_path), "bytecode": bytecode}
    _stamp_path(zip_path).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    return Built(zip_path, bytecode)


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
    parser.add_argument(
        "--require-bytecode",
        action="store_true",
        default=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
        help="fail when no CPython of the runtime's version is found (default when CI=true)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="build even if the zip's inputs are unchanged"
    )
    args = parser.parse_args(argv)
    runtime_name = args.runtime or runtime_from_s_yaml()
    if args.lock:
        LOCK.write_text("", encoding="utf-8")  # resolve afresh, then pin what came out
        args.sinks = "log,callback,sls"
    built = build(
        runtime_name,
        args.sinks,
        args.out,
        require_bytecode=args.require_bytecode,
        reuse=not (args.rebuild or args.lock),
    )
    zip_path = built.zip_path
    if args.lock:
        write_lock(args.out / PACKAGE_NAME / DEPS_DIR, runtime_name)
        print(f"package: wrote {LOCK}")
    code_root = tree_size(args.out / PACKAGE_NAME)
    print(
        f"package: {zip_path} for {runtime_name} "
        f"(sinks {args.sinks or 'log'}{', SLS SDK included' if wants_sls(args.sinks) else ''}): "
        f"zip {mib(zip_path.stat().st_size)}, unpacked {mib(code_root)}; "
        + (f"bytecode of {built.bytecode} (unchecked-hash)" if built.bytecode else "NO bytecode")
        + ("; reused: built earlier from the same inputs" if built.reused else "")
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
