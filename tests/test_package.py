"""The code package `s deploy` uploads: built by s.yaml's own pre-deploy command, for FC's runtime
(CPython 3.10, glibc <= 2.28, x86_64), holding the function's code and its runtime dependencies
and nothing else."""

from __future__ import annotations

import email.parser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures.fc3_schema import ROOT, fc3_props, render
from tools import build_package

# FC python3.10: CPython 3.10 on Debian 10 (glibc 2.28), x86_64.
PYTHON, GLIBC = (3, 10), (2, 28)
TARGET_ENV = {
    **default_environment(),
    "python_version": "3.10",
    "python_full_version": "3.10.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def fits_runtime(tag: str) -> bool:
    """A wheel tag `interpreter-abi-platform` that CPython 3.10 on glibc 2.28 x86_64 loads."""
    interpreter, abi, platform = tag.split("-")
    if platform == "any":
        return abi == "none" and interpreter in ("py3", "py2.py3", "cp310")
    found = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
    legacy = re.fullmatch(r"(manylinux\d+)_x86_64", platform)
    glibc = (
        (int(found[1]), int(found[2]))
        if found
        else LEGACY_MANYLINUX.get(legacy[1])
        if legacy
        else None
    )
    if glibc is None or glibc > GLIBC:
        return False
    if abi == "abi3":  # the stable ABI: built for this CPython or an older one
        version = re.fullmatch(r"cp3(\d+)", interpreter)
        return version is not None and int(version[1]) <= PYTHON[1]
    return interpreter == "cp310" and abi == "cp310"


@pytest.mark.parametrize(
    ("tag", "fits"),
    [
        ("py3-none-any", True),
        ("cp310-cp310-manylinux_2_17_x86_64", True),
        ("cp310-cp310-manylinux2014_x86_64", True),
        ("cp39-abi3-manylinux_2_28_x86_64", True),
        ("cp311-cp311-manylinux_2_17_x86_64", False),  # another CPython
        ("cp311-abi3-manylinux_2_28_x86_64", False),  # stable ABI of a newer CPython
        ("cp310-cp310-manylinux_2_34_x86_64", False),  # needs a newer glibc than Debian 10's
        ("cp310-cp310-manylinux_2_17_aarch64", False),
        ("cp310-cp310-musllinux_1_2_x86_64", False),
        ("cp310-cp310-macosx_11_0_arm64", False),
        ("cp310-cp310-win_amd64", False),
        ("cp310-cp310-linux_x86_64", False),  # built locally, not manylinux
    ],
)
def test_the_wheel_tag_rule(tag, fits):
    assert fits_runtime(tag) is fits


def metadata(dist_info: Path) -> email.message.Message:
    return email.parser.Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))


def closure(requirement_files: list[Path], dists: dict[str, Path]) -> set[str]:
    """The installed distributions the requirement files need on the runtime, markers applied."""
    todo = [
        (Requirement(line), "")
        for path in requirement_files
        for line in (x.strip() for x in path.read_text().splitlines())
        if line and not line.startswith(("#", "-"))
    ]
    needed: set[str] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**TARGET_ENV, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in dists, f"{name} is needed but not in the package"
        if name in needed:
            continue
        needed.add(name)
        for line in metadata(dists[name]).get_all("Requires-Dist") or []:
            for extra_name in ["", *requirement.extras]:
                todo.append((Requirement(line), extra_name))
    return needed


def build_as_s_deploy_does(tmp_path: Path, sinks: str) -> Path:
    """Run the pre-deploy command that `s preview` renders for the HTTP function."""
    env = {"PYTHON": sys.executable, "OUTCOME_SINKS": sinks}
    project = render(ROOT / "s.yaml", env, tmp_path / "home")
    (action,) = project["resources"]["bind-waba-http"]["actions"]["pre-deploy"]
    out = tmp_path / "build"
    subprocess.run(
        [*shlex.split(action["run"]), "--out", str(out)],
        cwd=ROOT / action["path"],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        check=True,
    )
    zip_path = out / "bind_waba.zip"
    for props in fc3_props(project).values():
        assert (ROOT / props["code"]).name == zip_path.name  # the zip s.yaml deploys
    return zip_path


def own_code() -> set[str]:
    code_root = ROOT / "functions" / "bind_waba"
    return {"index.py"} | {
        p.relative_to(code_root).as_posix()
        for p in (code_root / "wababind").rglob("*.py")
        if "__pycache__" not in p.parts
    }


def runtime_python() -> str:
    """A CPython 3.10 interpreter, as FC's python3.10 runtime has (pyenv keeps one here)."""
    candidates = [
        *sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10")),
        *filter(None, [shutil.which("python3.10")]),
    ]
    for candidate in candidates:
        probe = [str(candidate), "-c", "import sys; assert sys.version_info[:2] == (3, 10)"]
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return str(candidate)
    raise AssertionError("CPython 3.10 is needed to run the package as FC's python3.10 does")


# FC runs /code/index.py with PYTHONPATH=/code/python; nothing else of ours is there.
RUN_THE_PACKAGE = """
import json, sys, types
import index
key = json.loads(sys.argv[1])
ctx = types.SimpleNamespace(
    request_id="package-test", credentials=types.SimpleNamespace(**key),
    function=types.SimpleNamespace(name="bind-waba-mq", handler="index.mq_handler",
                                   memory=512, timeout=30))
index.initialize(ctx)
summary = json.loads(index.mq_handler(json.dumps({"WabaId": "1234567"}).encode(), ctx))
import aliyunsdkcore.client, cryptography.hazmat.bindings._rust, pydantic_core
loaded = [m.__file__ for m in (aliyunsdkcore.client, pydantic_core)]
if "sls" in sys.argv[2]:
    import aliyun.log
    loaded.append(aliyun.log.__file__)
print(json.dumps({"summary": summary, "version": sys.version_info[:2], "loaded": loaded}))
"""


def run_on_cpython310(unzipped: Path, sinks: str, cams_sim) -> dict:
    from wababind_local.cams_simulator import DEFAULT_STS_KEY

    key = {
        "access_key_id": DEFAULT_STS_KEY.access_key_id,
        "access_key_secret": DEFAULT_STS_KEY.access_key_secret,
        "security_token": DEFAULT_STS_KEY.security_token,
    }
    done = subprocess.run(
        [runtime_python(), "-S", "-c", RUN_THE_PACKAGE, json.dumps(key), sinks],
        cwd=unzipped,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(unzipped), str(unzipped / "python")]),
            "PYTHONDONTWRITEBYTECODE": "1",  # /code is read-only on FC
            "CAMS_ENDPOINT": cams_sim.endpoint,
            "OUTCOME_SINKS": "log",
            "WEBHOOK_SECRET": "whsec_" + "cGFja2FnZS10ZXN0LXdlYmhvb2stc2VjcmV0LTMyYg==",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict = json.loads(done.stdout.splitlines()[-1])
    return report


@pytest.mark.parametrize("sinks", ["log,callback", "log,sls"])
def test_the_package_holds_runtime_wheels_and_the_function_code_only(sinks, tmp_path, cams_sim):
    zip_path = build_as_s_deploy_does(tmp_path, sinks)
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    deps = tmp_path / "unzipped" / "python"

    assert {n for n in names if not n.startswith("python/")} == own_code()
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]
    local_only = ("tests/", "local/", "wababind_local/", "events/", "bench/", "python/wababind")
    assert not [n for n in names if n.startswith(local_only)]

    dists = {canonicalize_name(metadata(d)["Name"]): d for d in deps.glob("*.dist-info")}
    for dist_info in dists.values():
        tags = [
            line.split(":", 1)[1].strip()
            for line in (dist_info / "WHEEL").read_text().splitlines()
            if line.startswith("Tag:")
        ]
        assert any(fits_runtime(t) for t in tags), (dist_info.name, tags)  # one fitting tag

    requirement_files = [ROOT / "requirements.txt"]
    if "sls" in sinks:
        requirement_files.append(ROOT / "requirements-sls.txt")
    assert set(dists) == closure(requirement_files, dists)
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

    # Every file under python/ belongs to an installed wheel: nothing stale, nothing stray.
    recorded = {
        line.rsplit(",", 2)[0]
        for dist_info in dists.values()
        for line in (dist_info / "RECORD").read_text().splitlines()
    }
    shipped = {n.removeprefix("python/") for n in names if n.startswith("python/")}
    assert shipped <= recorded

    # And it runs: CPython 3.10 with only the package on its path imports it and binds.
    report = run_on_cpython310(tmp_path / "unzipped", sinks, cams_sim)
    assert report["version"] == [3, 10]
    assert report["summary"]["Bound"] == 1 and cams_sim.count() == 1
    assert all(Path(f).is_relative_to(deps) for f in report["loaded"]), report["loaded"]


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
