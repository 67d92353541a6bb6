"""The README's deploy section: every command in it is one the tests run."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

from tests.fixtures.fc3_schema import ROOT, fc3_props, s_cli
from tests.test_fc3_schema import VPC_ENV

SECTION, NEXT = "## Deploy and invoke", "\n## "


def deploy_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    section = text[start : text.index(NEXT, start + len(SECTION))]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_deploy_section_names_only_commands_the_tests_run():
    commands = deploy_commands()
    assert commands == [
        "make package",
        "OUTCOME_SINKS=log,sls make package",
        "node_modules/.bin/s preview -t s.vpc.yaml -o json --silent",
    ]


def test_make_package_runs_the_build_that_test_package_checks():
    """`make package` is tools/build_package.py (test_package builds through s.yaml's own
    pre-deploy command, with and without the sls sink); -n prints it without running it."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    recipe = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.runtime", "package"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert recipe[1:] == ["tools/build_package.py", "--compare-tea"]


def test_the_vpc_preview_command_renders_the_vpc_profile(tmp_path):
    command = shlex.split(deploy_commands()[-1])
    assert ROOT / command[0] == s_cli()
    done = subprocess.run(
        [str(ROOT / command[0]), *command[1:]],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **VPC_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    props = fc3_props(json.loads(done.stdout))
    assert {p["vpcConfig"]["vpcId"] for p in props.values()} == {VPC_ENV["VPC_ID"]}
