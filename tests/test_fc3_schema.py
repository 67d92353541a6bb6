"""Every s*.yaml, rendered by the Serverless Devs CLI, fits fc3's own schema, closed to typos."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsonschema
import pytest

from tests.fixtures.fc3_schema import ROOT, closed_schema, fc3_props, render

# What the VPC profile reads from the environment (it has no defaults on purpose).
VPC_ENV = {
    "VPC_ID": "vpc-t4nexample",
    "VSWITCH_IDS": "vsw-t4na,vsw-t4nb",
    "SECURITY_GROUP_ID": "sg-t4nexample",
    "REDIS_URL": "redis://r-t4nexample.redis.singapore.rds.aliyuncs.com:6379/0",
}
PROFILES = sorted(p.name for p in ROOT.glob("s*.yaml"))


def sizing_errors(props: dict) -> list[str]:
    """FC 3.0's rules the schema does not hold (instance types and specifications,
    https://www.alibabacloud.com/help/en/function-compute/latest/instance-types-and-instance-modes):
    vCPU 0.05-16 in steps of 0.05, memory 128-32768 MB in steps of 64, and memory (GB) from 1x
    to 4x the vCPU. fc3's default cpu is 0.35 when a function names none."""
    cpu, memory = props.get("cpu", 0.35), props.get("memorySize", 512)
    found = []
    if not 0.05 <= cpu <= 16 or abs(cpu / 0.05 - round(cpu / 0.05)) > 1e-9:
        found.append(f"cpu: {cpu} is not 0.05-16 in steps of 0.05")
    if not 128 <= memory <= 32768 or memory % 64:
        found.append(f"memorySize: {memory} is not 128-32768 in steps of 64")
    if not cpu <= memory / 1024 <= 4 * cpu:
        found.append(f"cpu/memorySize: {memory} MB is not 1x-4x of {cpu} vCPU in GB")
    return found


def errors(props: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(closed_schema())
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(props)
    ] + sizing_errors(props)


def rendered_props(tmp_path: Path, edit=None) -> dict[str, dict]:
    """Render a copy of the project's s*.yaml files (after `edit` on s.yaml's text)."""
    for name in PROFILES:
        shutil.copy(ROOT / name, tmp_path / name)
    if edit is not None:
        source = (tmp_path / "s.yaml").read_text()
        edited = edit(source)
        assert edited != source, "the edit did not apply"
        (tmp_path / "s.yaml").write_text(edited)
    return fc3_props(render(tmp_path / "s.yaml", VPC_ENV, tmp_path / "home"))


def test_the_project_has_the_default_and_the_vpc_profile():
    assert PROFILES == ["s.vpc.yaml", "s.yaml"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_function_of_every_profile_fits_the_schema(profile, tmp_path):
    props = fc3_props(render(ROOT / profile, VPC_ENV, tmp_path))
    assert set(props) == {"bind-waba-http", "bind-waba-mq"}
    for name, function in props.items():
        assert errors(function) == [], name


def test_the_vpc_profile_puts_both_functions_in_the_redis_vpc_with_internet(tmp_path):
    props = fc3_props(render(ROOT / "s.vpc.yaml", VPC_ENV, tmp_path))
    for function in props.values():
        assert function["vpcConfig"] == {
            "vpcId": "vpc-t4nexample",
            "vSwitchIds": ["vsw-t4na", "vsw-t4nb"],
            "securityGroupId": "sg-t4nexample",
        }
        assert function["internetAccess"] is True  # CAMS is a public endpoint
        assert function["environmentVariables"]["REDIS_URL"] == VPC_ENV["REDIS_URL"]
        assert function["triggers"]  # everything else is s.yaml's


BROKEN = [
    (
        "misspelled function key",
        lambda s: s.replace("memorySize: 256", "memorySise: 256"),
        "Additional properties are not allowed ('memorySise' was unexpected)",
    ),
    (
        "number-typed environment value",
        lambda s: s.replace("CAMS_QPS: ${vars.environment.CAMS_QPS}\n", "CAMS_QPS: 10\n", 1),
        "environmentVariables/CAMS_QPS: 10 is not of type 'string'",
    ),
    (
        "unknown trigger key",
        lambda s: s.replace("authType: anonymous", "authTyp: anonymous"),
        "'authTyp' was unexpected",
    ),
    (
        "trigger config of another trigger type",
        lambda s: s.replace(
            "notifyContentFormat: 'JSON'",
            "notifyContentFormat: 'JSON'\n            methods: [POST]",
        ),
        "'methods' was unexpected",
    ),
    (
        "misspelled key in a lifecycle hook",
        lambda s: s.replace("handler: index.pre_stop", "hanlder: index.pre_stop", 1),
        "'hanlder' was unexpected",
    ),
    (
        "memory below 1 GB per vCPU",
        lambda s: s.replace("cpu: 0.5\n", "cpu: 1.0\n", 1),
        "cpu/memorySize: 512 MB is not 1x-4x of 1 vCPU in GB",
    ),
    (
        "memory above 4 GB per vCPU",
        lambda s: s.replace("cpu: 0.25\n", "cpu: 0.05\n", 1),
        "cpu/memorySize: 256 MB is not 1x-4x of 0.05 vCPU in GB",
    ),
    (
        "vCPU off its 0.05 steps",
        lambda s: s.replace("cpu: 0.5\n", "cpu: 0.33\n", 1),
        "cpu: 0.33 is not 0.05-16 in steps of 0.05",
    ),
    (
        "memory off its 64-MB steps",
        lambda s: s.replace("memorySize: 512\n", "memorySize: 500\n", 1),
        "memorySize: 500 is not 128-32768 in steps of 64",
    ),
    (
        "misspelled log config key",
        lambda s: s.replace("logstore: ${vars.logStore}", "logStore: ${vars.logStore}", 1),
        "logConfig: {'project': 'wababind-logs', 'logStore'",
    ),
]


@pytest.mark.parametrize(("case", "edit", "expected"), BROKEN, ids=[c[0] for c in BROKEN])
def test_a_broken_s_yaml_fails(case, edit, expected, tmp_path):
    found = [e for props in rendered_props(tmp_path, edit).values() for e in errors(props)]
    assert any(expected in e for e in found), (case, found)
