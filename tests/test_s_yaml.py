"""s.yaml: both functions exist with their handlers, triggers and least-privilege role policy."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import yaml

from tools.build_package import CODE_ROOT
from wababind.lifecycle import PRE_STOP_FLUSH_S
from wababind_local.fc_emulator.project import resolve

ROOT = Path(__file__).resolve().parent.parent
S_YAML = yaml.safe_load((ROOT / "s.yaml").read_text())
VARS = resolve(S_YAML["vars"], resolve(S_YAML["vars"], {}, {}), {})
FUNCTIONS = {name: resolve(r["props"], VARS, {}) for name, r in S_YAML["resources"].items()}


def test_both_functions_are_fc3_python_event_functions():
    assert {p["functionName"] for p in FUNCTIONS.values()} == {"bind-waba-http", "bind-waba-mq"}
    for name, resource in S_YAML["resources"].items():
        assert resource["component"] == "fc3", name
        assert FUNCTIONS[name]["runtime"] == "python3.10"
        assert "instanceConcurrency" not in resource["props"]


def test_every_handler_and_lifecycle_hook_named_exists_in_the_code_root():
    for props in FUNCTIONS.values():
        assert props["code"] == "./build/bind_waba.zip"  # tools/build_package.py makes it
        hooks = props["instanceLifecycleConfig"]
        names = [props["handler"], hooks["initializer"]["handler"], hooks["preStop"]["handler"]]
        assert names[1:] == ["index.initialize", "index.pre_stop"]
        for name in names:
            module_name, func = name.split(".")
            assert (CODE_ROOT / f"{module_name}.py").is_file()
            assert callable(getattr(importlib.import_module(module_name), func))
        assert hooks["preStop"]["timeout"] > PRE_STOP_FLUSH_S


def test_local_only_tools_are_outside_the_code_root():
    for local in ("local", "tests", "bench", "events", "tools"):
        assert not CODE_ROOT.is_relative_to((ROOT / local).resolve())
        assert not (CODE_ROOT / local).exists()


def test_triggers_cover_every_source():
    triggers = FUNCTIONS["bind-waba-mq"]["triggers"]
    sources = {
        t["triggerConfig"]["eventSourceConfig"]["eventSourceType"]
        for t in triggers
        if t["triggerType"] == "eventbridge"
    }
    assert sources == {"RocketMQ", "MNS", "Kafka"}
    for t in triggers:
        if t["triggerType"] == "eventbridge":
            run = t["triggerConfig"]["runOptions"]
            assert run["batchWindow"] and run["retryStrategy"] and run["deadLetterQueue"]["Arn"]
    assert any(
        t["triggerType"] == "mns_topic" and t["triggerConfig"]["notifyContentFormat"] == "JSON"
        for t in triggers
    )
    http = FUNCTIONS["bind-waba-http"]["triggers"]
    assert [t["triggerConfig"]["methods"] for t in http] == [["POST"]]


def test_environment_names_come_from_the_spec():
    spec_names = {
        "CAMS_ENDPOINT",
        "CAMS_REGION",
        "CAMS_QPS",
        "INTERACTIVE_MAX_SHARE",  # not in SPEC: the lanes' share (README), same in both
        "CAMS_TIMEOUT_S",
        "OUTCOME_SINKS",
        "CALLBACK_URL",
        "CALLBACK_SECRET",
        "CALLBACK_ALLOWED_HOSTS",
        "SLS_ENDPOINT",
        "SLS_PROJECT",
        "SLS_LOGSTORE",
        "REDIS_URL",
        "ON_REDIS_OUTAGE",
        "IDEMPOTENCY_TTL_S",
    }
    for props in FUNCTIONS.values():
        assert spec_names <= set(props["environmentVariables"])
        assert props["logConfig"]["project"] and props["logConfig"]["logstore"]
    assert "WEBHOOK_SECRET" in FUNCTIONS["bind-waba-http"]["environmentVariables"]


def test_the_role_policy_grants_only_the_bind_and_log_writes():
    policy = json.loads((ROOT / "ram-policy.json").read_text())
    actions = sorted(a for st in policy["Statement"] for a in st["Action"])
    assert actions == ["cams:ChatappBindWaba", "log:PostLogStoreLogs"]
    assert all(st["Effect"] == "Allow" for st in policy["Statement"])
    assert not any("*" in a for a in actions)


def test_each_function_is_sized_within_fc3s_cpu_memory_rules():
    sizes = {p["functionName"]: (p["cpu"], p["memorySize"]) for p in FUNCTIONS.values()}
    assert sizes == {"bind-waba-http": (0.5, 512), "bind-waba-mq": (0.25, 256)}
    for cpu, memory in sizes.values():
        assert round(cpu / 0.05, 9).is_integer() and memory % 64 == 0
        assert cpu <= memory / 1024 <= 4 * cpu  # vCPU : memory (GB) from 1:1 to 1:4


def test_one_mq_instance_at_a_time_fills_the_quota_and_no_more_is_billed():
    mq = FUNCTIONS["bind-waba-mq"]
    assert mq["concurrencyConfig"] == {"reservedConcurrency": 1}  # every trigger, direct invokes
    assert "concurrencyConfig" not in FUNCTIONS["bind-waba-http"]  # a person never waits on it
    (kafka,) = [
        t["triggerConfig"]
        for t in mq["triggers"]
        if t["triggerType"] == "eventbridge"
        and t["triggerConfig"]["eventSourceConfig"]["eventSourceType"] == "Kafka"
    ]
    assert kafka["runOptions"]["maximumTasks"] == 1
    assert kafka["eventSinkConfig"]["deliveryOption"]["concurrency"] == 1
