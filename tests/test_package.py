"""The code package `s deploy` uploads: built once by s.yaml's own pre-deploy command, for FC's
runtime (python3.10: CPython 3.10, glibc <= 2.28; python3.12: CPython 3.12, glibc <= 2.31;
x86_64), holding the function's code, its runtime dependencies and the runtime's bytecode for
every module, and nothing else; run as FC runs it, from a read-only copy on that CPython."""

from __future__ import annotations

import email.parser
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures.fc3_schema import ROOT, fc3_props, render
from tests.fixtures.handlers import WEBHOOK_SECRET, signed_event
from tools import build_package
from wababind_local import fc_package

LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# FC's runtimes: CPython version and the glibc of their Debian (python3.10: Debian 10).
RUNTIMES = {"python3.10": ((3, 10), (2, 28)), "python3.12": ((3, 12), (2, 31))}


def target_env(runtime: str) -> dict[str, str]:
    (major, minor), _ = RUNTIMES[runtime]
    return {
        **default_environment(),
        "python_version": f"{major}.{minor}",
        "python_full_version": f"{major}.{minor}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    }


def fits_runtime(tag: str, runtime: str = "python3.10") -> bool:
    """A wheel tag `interpreter-abi-platform` that the runtime's CPython on its glibc loads."""
    (major, minor), runtime_glibc = RUNTIMES[runtime]
    cp = f"cp{major}{minor}"
    interpreter, abi, platform = tag.split("-")
    if platform == "any":
        return abi == "none" and interpreter in ("py3", "py2.py3", cp)
    found = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
    legacy = re.fullmatch(r"(manylinux\d+)_x86_64", platform)
    glibc = (
        (int(found[1]), int(found[2]))
        if found
        else LEGACY_MANYLINUX.get(legacy[1])
        if legacy
        else None
    )
    if glibc is None or glibc > runtime_glibc:
        return False
    if abi == "abi3":  # the stable ABI: built for this CPython or an older one
        version = re.fullmatch(r"cp3(\d+)", interpreter)
        return version is not None and int(version[1]) <= minor
    return interpreter == cp and abi == cp


@pytest.mark.parametrize(
    ("tag", "runtime", "fits"),
    [
        ("py3-none-any", "python3.10", True),
        ("cp310-cp310-manylinux_2_17_x86_64", "python3.10", True),
        ("cp310-cp310-manylinux2014_x86_64", "python3.10", True),
        ("cp39-abi3-manylinux_2_28_x86_64", "python3.10", True),
        ("cp311-cp311-manylinux_2_17_x86_64", "python3.10", False),  # another CPython
        ("cp311-abi3-manylinux_2_28_x86_64", "python3.10", False),  # stable ABI of a newer one
        ("cp310-cp310-manylinux_2_34_x86_64", "python3.10", False),  # glibc newer than Debian 10's
        ("cp310-cp310-manylinux_2_17_aarch64", "python3.10", False),
        ("cp310-cp310-musllinux_1_2_x86_64", "python3.10", False),
        ("cp310-cp310-macosx_11_0_arm64", "python3.10", False),
        ("cp310-cp310-win_amd64", "python3.10", False),
        ("cp310-cp310-linux_x86_64", "python3.10", False),  # built locally, not manylinux
        ("cp312-cp312-manylinux_2_31_x86_64", "python3.12", True),  # Debian 11's glibc
        ("cp311-abi3-manylinux_2_28_x86_64", "python3.12", True),
        ("cp310-cp310-manylinux_2_17_x86_64", "python3.12", False),
        ("cp312-cp312-manylinux_2_34_x86_64", "python3.12", False),
    ],
)
def test_the_wheel_tag_rule(tag, runtime, fits):
    assert fits_runtime(tag, runtime) is fits


def metadata(dist_info: Path) -> email.message.Message:
    return email.parser.Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))


def closure(requirement_files: list[Path], dists: dict[str, Path], runtime: str) -> set[str]:
    """The installed distributions the requirement files need on the runtime, markers applied."""
    environment = target_env(runtime)
    todo = [
        (Requirement(line), "")
        for path in requirement_files
        for line in (x.strip() for x in path.read_text().splitlines())
        if line and not line.startswith(("#", "-"))
    ]
    needed: set[str] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in build_package.NEVER_LOADED:
            assert name not in dists, f"{name} is never loaded but ships"
            continue
        assert name in dists, f"{name} is needed but not in the package"
        if name in needed:
            continue
        needed.add(name)
        for line in metadata(dists[name]).get_all("Requires-Dist") or []:
            for extra_name in ["", *requirement.extras]:
                todo.append((Requirement(line), extra_name))
    return needed


def runtime_python(runtime: str) -> list[str]:
    """The runtime's CPython on this machine (CI has both; .ci/run checks)."""
    found = fc_package.runtime_python(runtime)
    assert found, f"CPython {runtime.removeprefix('python')} is needed to test {runtime}"
    return found


# -- bytecode ----------------------------------------------------------------------------------

# Run by the runtime's CPython over an unpacked package: each module (.py) whose bytecode is
# missing, or is not what that CPython would load without reading the source (PEP 552
# unchecked-hash: flags 0b01, the source's hash), or any .pyc that belongs to no module.
CHECK_BYTECODE = """\
import importlib.util, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
problems = []
for source in sorted(root.rglob("*.py")):
    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
    name = source.relative_to(root).as_posix()
    if not cached.is_file():
        problems.append([name, "no bytecode"])
        continue
    data = cached.read_bytes()
    flags = int.from_bytes(data[4:8], "little")
    if data[:4] != importlib.util.MAGIC_NUMBER:
        problems.append([name, "bytecode of another CPython"])
    elif flags != 0b01:
        problems.append([name, "checks its source" if flags & 0b10 else "timestamp-based"])
    elif data[8:16] != importlib.util.source_hash(source.read_bytes()):
        problems.append([name, "bytecode of another source"])
modules = {importlib.util.cache_from_source(str(p)) for p in root.rglob("*.py")}
problems += [[p.relative_to(root).as_posix(), "bytecode of no module"]
             for p in sorted(root.rglob("*.pyc")) if str(p) not in modules]
print(json.dumps(problems))
"""


def bytecode_problems(root: Path, runtime: str) -> list[list[str]]:
    done = subprocess.run(
        [*runtime_python(runtime), "-S", "-c", CHECK_BYTECODE, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    problems: list[list[str]] = json.loads(done.stdout)
    return problems


def compile_tree(root: Path, runtime: str, *flags: str) -> None:
    command = [*runtime_python(runtime), "-m", "compileall", "-q", *flags, str(root)]
    subprocess.run(command, capture_output=True, check=True, timeout=120)


def _no_pyc(root: Path) -> None:
    for pyc in root.rglob("*.pyc"):
        pyc.unlink()


def _timestamp_pyc(root: Path) -> None:
    _no_pyc(root)
    compile_tree(root, "python3.10", "--invalidation-mode", "timestamp")


def _checked_pyc(root: Path) -> None:
    _no_pyc(root)
    compile_tree(root, "python3.10", "--invalidation-mode", "checked-hash")


def _other_cpython(root: Path) -> None:
    # CPython 3.12's bytecode, renamed to where CPython 3.10 looks
    _no_pyc(root)
    compile_tree(root, "python3.12", "--invalidation-mode", "unchecked-hash")
    for pyc in root.rglob("*.cpython-312.pyc"):
        pyc.rename(pyc.with_name(pyc.name.replace("cpython-312", "cpython-310")))


def _edited_source(root: Path) -> None:
    (root / "pkg" / "mod.py").write_text("VALUE = 2\n")


def _stray_pyc(root: Path) -> None:
    cache = root / "pkg" / "__pycache__"
    (cache / "gone.cpython-310.pyc").write_bytes((cache / "mod.cpython-310.pyc").read_bytes())


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (None, []),
        (_no_pyc, [["pkg/__init__.py", "no bytecode"], ["pkg/mod.py", "no bytecode"]]),
        (
            _timestamp_pyc,
            [["pkg/__init__.py", "timestamp-based"], ["pkg/mod.py", "timestamp-based"]],
        ),
        (
            _checked_pyc,
            [["pkg/__init__.py", "checks its source"], ["pkg/mod.py", "checks its source"]],
        ),
        (
            _other_cpython,
            [
                ["pkg/__init__.py", "bytecode of another CPython"],
                ["pkg/mod.py", "bytecode of another CPython"],
            ],
        ),
        (_edited_source, [["pkg/mod.py", "bytecode of another source"]]),
        (_stray_pyc, [["pkg/__pycache__/gone.cpython-310.pyc", "bytecode of no module"]]),
    ],
)
def test_the_bytecode_check_names_each_module_without_runtime_bytecode(spoil, expected, tmp_path):
    """What the package test below asserts of every shipped module, shown failing as it must."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text("VALUE = 1\n")
    build_package.compile_bytecode(runtime_python("python3.10"), tmp_path)
    if spoil:
        spoil(tmp_path)
    assert bytecode_problems(tmp_path, "python3.10") == expected


# -- the package, as s deploy builds it --------------------------------------------------------


def build_as_s_deploy_does(tmp_path: Path, sinks: str, runtime: str) -> tuple[Path, list[str]]:
    """Run the pre-deploy command that `s preview` renders for each function, in s.yaml's
    order (as `s deploy` runs them, one after another), for `runtime`; (the zip, each run's
    output)."""
    env = {"PYTHON": sys.executable, "OUTCOME_SINKS": sinks}
    project = render(ROOT / "s.yaml", env, tmp_path / "home")
    out = tmp_path / "build"
    outputs = []
    for name, resource in project["resources"].items():
        (action,) = resource["actions"]["pre-deploy"]
        done = subprocess.run(
            [*shlex.split(action["run"]), "--runtime", runtime, "--out", str(out)],
            cwd=ROOT / action["path"],
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "CI": "true"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (name, done.stdout + done.stderr[-3000:])
        outputs.append(done.stdout + done.stderr)
        if len(outputs) == 1:  # left by the first build; a second build would wipe it
            (out / build_package.PACKAGE_NAME / "first-build").write_text("")
    zip_path = out / "bind_waba.zip"
    for props in fc3_props(project).values():
        assert (ROOT / props["code"]).name == zip_path.name  # the zip s.yaml deploys
    return zip_path, outputs


def own_code() -> set[str]:
    code_root = ROOT / "functions" / "bind_waba"
    return {"index.py"} | {
        p.relative_to(code_root).as_posix()
        for p in (code_root / "wababind").rglob("*.py")
        if "__pycache__" not in p.parts
    }


# FC runs /code/index.py's handlers with PYTHONPATH=/code/python, cwd /code; nothing else of ours
# is there. argv: the function's handler, the event, the runtime, the STS key (JSON), sinks.
RUN_THE_PACKAGE = (
    fc_package.WATCH_COMPILES
    + """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("fc_context", sys.argv[6])
fc_context = importlib.util.module_from_spec(spec)
sys.modules["fc_context"] = fc_context
spec.loader.exec_module(fc_context)
handler, event, runtime, key, sinks = sys.argv[1:6]
event, key = event.encode(), json.loads(key)
name = "bind-waba-http" if handler == "index.http_handler" else "bind-waba-mq"
ctx = fc_context.context_for(
    runtime, fc_context.FunctionMeta(name, handler, 512, 30), fc_context.Credentials(**key),
    fc_context.ServiceMeta(log_project="wababind-logs", log_store="wababind-outcomes"),
    request_id="package-test")
before = set(sys.modules)  # this probe's own imports (fc_context's uuid imports subprocess)
import index
index.initialize(ctx)
reply = getattr(index, handler.rpartition(".")[2])(event, ctx)
from wababind.deferred import SDK_UNUSED
ran = [n for n in (*SDK_UNUSED, "cryptography", "jmespath.parser") if n not in before
       and type(sys.modules.get(n)).__name__ not in ("_Deferred", "NoneType")]
import aliyunsdkcore.client, pydantic_core
loaded = [m.__file__ for m in (aliyunsdkcore.client, pydantic_core)]
if "sls" in sinks:
    import aliyun.log
    loaded.append(aliyun.log.__file__)
ran += ["cryptography ships"] if importlib.util.find_spec("cryptography") else []
print(json.dumps({"reply": reply, "version": sys.version_info[:2], "loaded": loaded, "ran": ran,
                  "compiled": [p for p in _compiled if p.startswith(os.getcwd())],
                  "context": sorted(vars(ctx))}))
"""
)


def run_as_fc_does(code_root: Path, runtime: str, handler: str, event: bytes, cams_sim) -> dict:
    """One cold instance of a function: the runtime's CPython, the read-only code root, the
    context of the runtime's layout (python3.12: the key in ALIBABA_CLOUD_*), initializer
    then handler."""
    from wababind_local.cams_simulator import DEFAULT_STS_KEY

    key = {
        "access_key_id": DEFAULT_STS_KEY.access_key_id,
        "access_key_secret": DEFAULT_STS_KEY.access_key_secret,
        "security_token": DEFAULT_STS_KEY.security_token or "",
    }
    probe = [
        *runtime_python(runtime), "-S", "-c", RUN_THE_PACKAGE, handler, event.decode(), runtime,
        json.dumps(key), "log", str(ROOT / "local" / "wababind_local" / "fc_context.py"),
    ]  # fmt: skip
    settings = {
        "CAMS_ENDPOINT": cams_sim.endpoint,
        "OUTCOME_SINKS": "log",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    env = fc_package.fc_env(code_root, settings)
    done = subprocess.run(
        probe, cwd=code_root, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict = json.loads(done.stdout.splitlines()[-1])
    return report


@pytest.mark.parametrize(
    ("runtime", "sinks"),
    [("python3.10", "log,callback"), ("python3.10", "log,sls"), ("python3.12", "log,callback")],
)
def test_the_package_holds_runtime_wheels_bytecode_and_the_function_code_only(
    runtime, sinks, tmp_path, cams_sim
):
    zip_path, outputs = build_as_s_deploy_does(tmp_path, sinks, runtime)
    (major, minor), _ = RUNTIMES[runtime]
    # `s deploy` built it once: the second function's action reused the first's zip.
    assert "reused: built earlier from the same inputs" in outputs[1], outputs[1]
    assert (tmp_path / "build" / build_package.PACKAGE_NAME / "first-build").exists()
    assert f"bytecode of CPython {major}.{minor}." in outputs[0]
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    unzipped = fc_package.unpack(zip_path, tmp_path / "code")
    deps = unzipped / "python"

    sources = {n for n in names if not n.endswith(".pyc")}
    assert {n for n in sources if not n.startswith("python/")} == own_code()
    local_only = ("tests/", "local/", "wababind_local/", "events/", "bench/", "python/wababind")
    assert not [n for n in names if n.startswith(local_only)]
    # Every module has its bytecode for the runtime's CPython, used without reading the source.
    assert bytecode_problems(unzipped, runtime) == []
    assert not [n for n in names if n.endswith(".pyc") and f".cpython-{major}{minor}." not in n]

    dists = {canonicalize_name(metadata(d)["Name"]): d for d in deps.glob("*.dist-info")}
    for dist_info in dists.values():
        tags = [
            line.split(":", 1)[1].strip()
            for line in (dist_info / "WHEEL").read_text().splitlines()
            if line.startswith("Tag:")
        ]
        assert any(fits_runtime(t, runtime) for t in tags), (dist_info.name, tags)

    requirement_files = [ROOT / "requirements.txt"]
    if "sls" in sinks:
        requirement_files.append(ROOT / "requirements-sls.txt")
    assert set(dists) == closure(requirement_files, dists, runtime)
    pinned = {
        canonicalize_name(name): version
        for name, _, version in (
            line.partition("==")
            for line in (ROOT / "requirements-lock.txt").read_text().splitlines()
            if "==" in line
        )
    }
    versions = {name: metadata(d)["Version"] for name, d in dists.items()}
    assert versions == {n: pinned.get(n) for n in versions}  # every one pinned, at its pin
    assert ("aliyun-log-python-sdk" in dists) is ("sls" in sinks)

    # Every file under python/ belongs to an installed wheel (or is its bytecode).
    recorded = {
        line.rsplit(",", 2)[0]
        for dist_info in dists.values()
        for line in (dist_info / "RECORD").read_text().splitlines()
    }
    shipped = {n.removeprefix("python/") for n in sources if n.startswith("python/")}
    assert shipped <= recorded

    # And it runs as FC runs it: both functions, each a cold instance of the runtime's CPython
    # on the read-only code root, bind through the CAMS simulator, compiling no module and
    # writing nothing.
    before = fc_package.listing(unzipped)
    mq = run_as_fc_does(
        unzipped, runtime, "index.mq_handler", json.dumps({"WabaId": "1234567"}).encode(), cams_sim
    )
    http = run_as_fc_does(
        unzipped, runtime, "index.http_handler", signed_event({"WabaId": "7654321"}), cams_sim
    )
    assert json.loads(mq["reply"])["Bound"] == 1
    assert json.loads(http["reply"]["body"])["Status"] == "bound"
    assert cams_sim.count() == 2
    for report in (mq, http):
        assert report["version"] == [major, minor]
        assert report["compiled"] == []
        assert report["ran"] == []  # what the SDK imports but never runs for us (deferred)
        assert all(Path(f).is_relative_to(deps) for f in report["loaded"]), report["loaded"]
        if runtime == "python3.12":  # FC's python3.12 context (FC docs, "Context", Python)
            assert "credentials" not in report["context"] and "service" not in report["context"]
            assert {"log_project", "log_store"} <= set(report["context"])
        else:
            assert {"credentials", "service"} <= set(report["context"])
    assert fc_package.listing(unzipped) == before


def test_the_runtime_is_named_once_and_picks_the_tags(tmp_path):
    project_runtime = build_package.runtime_from_s_yaml()
    rendered = fc3_props(render(ROOT / "s.yaml", {}, tmp_path))
    assert {p["runtime"] for p in rendered.values()} == {project_runtime} == {"python3.10"}
    py310 = build_package.RUNTIMES["python3.10"]
    assert (py310.python, py310.abi, py310.platforms()[0]) == (
        "3.10",
        "cp310",
        "manylinux_2_28_x86_64",
    )
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(py310.platforms())
    py312 = build_package.RUNTIMES["python3.12"]
    assert (py312.abi, py312.platforms()[0]) == ("cp312", "manylinux_2_31_x86_64")


def test_a_rebuild_starts_from_a_clean_target(tmp_path):
    stale = tmp_path / "bind_waba" / "python" / "stale_module.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("raise SystemExit('an earlier build')\n")
    build_package.main(["--runtime", "python3.10", "--sinks", "log", "--out", str(tmp_path)])
    with zipfile.ZipFile(tmp_path / "bind_waba.zip") as archive:
        assert "python/stale_module.py" not in archive.namelist()
    assert not stale.exists()


def test_the_build_finds_the_runtime_s_cpython_and_never_a_shim(tmp_path, monkeypatch):
    """pyenv's `python3.10` shim fails when 3.10 is not the global version: each candidate is
    run and must answer as CPython of the runtime's version."""
    shim = tmp_path / "bin" / "python3.10"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.10: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(build_package.RUNTIME_PYTHON_ENV, raising=False)
    assert build_package.runtime_python_candidates("3.10")[0] == [str(shim)]
    command, version = build_package.find_runtime_python("3.10") or ([], "")
    assert command != [str(shim)] and version.startswith("3.10.")
    monkeypatch.setenv(build_package.RUNTIME_PYTHON_ENV, sys.executable)  # not a 3.10
    with pytest.raises(SystemExit, match=build_package.RUNTIME_PYTHON_ENV):
        build_package.find_runtime_python("3.10")


def no_runtime_python_env(tmp_path: Path) -> dict[str, str]:
    """A machine with no CPython 3.10 anywhere the build looks."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYENV_ROOT")}
    env.pop(build_package.RUNTIME_PYTHON_ENV, None)
    return {**env, "PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}


def test_without_the_runtime_s_cpython_ci_fails_and_says_how_to_fix_it(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_package.py"), "--out", str(tmp_path)],
        env={**no_runtime_python_env(tmp_path), "CI": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "ERROR: no CPython 3.10" in done.stderr and "uv python install 3.10" in done.stderr
    assert not (tmp_path / "bind_waba.zip").exists()


def test_without_the_runtime_s_cpython_a_deployer_is_told_the_cost(tmp_path, monkeypatch):
    for name, value in no_runtime_python_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in (build_package.RUNTIME_PYTHON_ENV, "PYENV_ROOT"):
        monkeypatch.delenv(name, raising=False)
    assert build_package.find_runtime_python("3.10") is None
    warning = build_package.no_bytecode_warning("python3.10", "3.10")
    for said in ("NO bytecode", "every cold start", "s of CPU more", "pyenv install 3.10"):
        assert said in warning


def test_the_zip_is_reused_only_for_the_same_inputs(tmp_path, monkeypatch):
    """What lets `s deploy` build once: the digest covers every input, and a zip is reused only
    when it is the very zip that build wrote for that digest."""
    code_root = tmp_path / "bind_waba"
    code_root.mkdir()
    (code_root / "index.py").write_text("def handler(event, context):\n    return 'ok'\n")
    (code_root / "wababind").mkdir()
    (code_root / "wababind" / "__init__.py").write_text("")
    monkeypatch.setattr(build_package, "CODE_ROOT", code_root)
    digest = build_package.inputs_digest
    first = digest("python3.10", "log", "CPython 3.10.13")
    assert digest("python3.10", "callback,log", "CPython 3.10.13") == first  # no SDK changes
    others = [
        digest("python3.12", "log", "CPython 3.10.13"),
        digest("python3.10", "log,sls", "CPython 3.10.13"),
        digest("python3.10", "log", None),
        digest("python3.10", "log", "CPython 3.10.14"),
    ]
    (code_root / "wababind" / "__pycache__").mkdir()
    (code_root / "wababind" / "__pycache__" / "x.cpython-310.pyc").write_bytes(b"local cache")
    assert digest("python3.10", "log", "CPython 3.10.13") == first  # caches are not inputs
    (code_root / "wababind" / "__init__.py").write_text("VERSION = 2\n")
    others.append(digest("python3.10", "log", "CPython 3.10.13"))
    assert len({first, *others}) == len(others) + 1

    zip_path = tmp_path / "out" / "bind_waba.zip"
    build_package.write_zip(code_root, zip_path.parent.mkdir() or zip_path)
    stamp = {"inputs": first, "zip_sha256": build_package._file_sha256(zip_path)}
    zip_path.with_name("bind_waba.zip.inputs.json").write_text(json.dumps(stamp))
    assert build_package.reusable(zip_path, first)
    assert not build_package.reusable(zip_path, others[0])
    zip_path.write_bytes(zip_path.read_bytes()[:-10])  # a zip someone else changed or cut
    assert not build_package.reusable(zip_path, first)
