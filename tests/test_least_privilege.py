"""Least privilege: the functions' RAM role may do exactly what the code does, and nothing more.

The role's policy lives in `ram-policy.json` (s.yaml names the role and points at the file);
`ram-policy-after-bind.json` adds the after-bind steps' CAMS actions, attached only when
AFTER_BIND names them.
The test derives what the code needs from the code itself: every cloud API it calls (the CAMS
action given to `CommonRequest`, every `LogClient` method used) and every logstore written to
(each function's `logConfig`, and `SLS_PROJECT`/`SLS_LOGSTORE` when s.yaml sets them). The policy
must grant exactly those actions, on exactly those logstores.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from wababind import after_bind, cams
from wababind_local.fc_emulator import load_project, resolve

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "functions" / "bind_waba"
POLICY_FILE = ROOT / "ram-policy.json"
AFTER_BIND_POLICY = ROOT / "ram-policy-after-bind.json"
S_YAML = ROOT / "s.yaml"

# The RAM action behind each SLS SDK method the functions may call.
LOG_METHOD_ACTIONS = {"put_logs": "log:PostLogStoreLogs"}
# Cloud SDKs the functions may import: CAMS through the core SDK, SLS through aliyun.log.
ALLOWED_CLOUD_SDKS = {"aliyunsdkcore", "aliyun.log"}
CLOUD_SDK_PREFIXES = ("aliyun", "alibabacloud", "oss2", "mns", "fc2", "tablestore", "darabonba")
BROAD_ROLE_NAMES = re.compile(r"(?i)default|admin|fullaccess|poweruser")


def policy(path: Path = POLICY_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def statements(path: Path = POLICY_FILE) -> list[dict[str, Any]]:
    return list(policy(path)["Statement"])


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def granted_actions(path: Path = POLICY_FILE) -> set[str]:
    return {a for st in statements(path) for a in as_list(st["Action"])}


def resources_of(action: str, path: Path = POLICY_FILE) -> set[str]:
    return {
        r
        for st in statements(path)
        if action in as_list(st["Action"])
        for r in as_list(st["Resource"])
    }


STEP_ACTIONS = {f"cams:{a}" for a in after_bind.STEP_ACTIONS.values()}


def step_actions_called() -> set[str]:
    """`cams:<Action>` for every after-bind step: the actions after_bind hands `cams.call`
    (STEP_ACTIONS), found in the code as that one call with that one table."""
    calls = [
        node
        for path, tree in code_modules()
        if path.name == "after_bind.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _callee(node) == "call" and node.args
    ]
    assert calls, "after_bind calls CAMS through CamsClient.call"
    return STEP_ACTIONS


def code_modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(CODE.rglob("*.py"))]


def log_client_methods() -> set[str]:
    from aliyun.log import LogClient

    members = inspect.getmembers(LogClient, inspect.isfunction)
    return {name for name, _ in members if not name.startswith("_")}


def sls_methods_called() -> set[str]:
    """Names of LogClient API methods called anywhere in the function code."""
    api = log_client_methods()
    called = set()
    for _, tree in code_modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in api
            ):
                called.add(node.func.attr)
    return called


def _callee(call: ast.Call) -> str:
    """The called name, bare (`CommonRequest(...)`) or qualified (`sdk.request.CommonRequest`)."""
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def cams_actions_called() -> set[str]:
    """`cams:<Action>` for every CommonRequest the function code builds."""
    names = {"ACTION": cams.ACTION, "PRODUCT": cams.PRODUCT}
    actions = set()
    for path, tree in code_modules():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _callee(node) == "CommonRequest"):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            values = []
            for key in ("product", "action_name"):
                value = kw.get(key)
                if isinstance(value, ast.Constant):
                    values.append(str(value.value))
                elif isinstance(value, ast.Name) and value.id in names:
                    values.append(names[value.id])
                elif key == "action_name" and isinstance(value, ast.Name) and value.id == "action":
                    # CamsClient.call(action, ...): the bind's ACTION, and the steps' actions
                    actions |= step_actions_called()
                    values.append(cams.ACTION)
                else:
                    pytest.fail(f"{path.name}: CommonRequest {key} is not a known constant")
            actions.add(f"{values[0].lower()}:{values[1]}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("set_action_name", "set_product"):
                pytest.fail(f"{path.name}: the action is changed after CommonRequest is built")
    return actions


def cloud_sdk_imports() -> set[str]:
    """The cloud SDKs the function code imports, by the allowed name they fall under."""
    found = set()
    for _, tree in code_modules():
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name.startswith(CLOUD_SDK_PREFIXES):
                    allowed = [s for s in ALLOWED_CLOUD_SDKS if f"{name}.".startswith(f"{s}.")]
                    found.add(allowed[0] if allowed else name)
    return found


def logstores_written() -> set[tuple[str, str]]:
    """(project, logstore) of every function's logConfig and, when set, of the sls sink."""
    project = load_project(S_YAML, env={})
    stores = set()
    for spec in project.functions.values():
        assert spec.log_project and spec.log_store, spec.name
        stores.add((spec.log_project, spec.log_store))
        sls_project = spec.environment.get("SLS_PROJECT", "")
        sls_store = spec.environment.get("SLS_LOGSTORE", "")
        if sls_project or sls_store:
            stores.add((sls_project, sls_store))
    return stores


def raw_props() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(S_YAML.read_text())
    variables = resolve(doc.get("vars") or {}, {}, {})
    return {
        name: resolve(res["props"], {**doc.get("vars", {}), **variables}, {})
        for name, res in doc["resources"].items()
    }


# ---- the code's needs ------------------------------------------------------------------------


def test_the_code_calls_only_the_bind_and_the_after_bind_steps_on_cams() -> None:
    assert cams_actions_called() == {
        "cams:ChatappBindWaba",
        "cams:ChatappSyncPhoneNumber",
        "cams:UpdateAccountWebhook",
    }


def test_the_code_calls_only_put_logs_on_sls() -> None:
    called = sls_methods_called()
    assert called <= set(LOG_METHOD_ACTIONS), f"map these SLS calls to RAM actions: {called}"
    assert called == {"put_logs"}


def test_the_code_uses_no_other_cloud_sdk() -> None:
    assert cloud_sdk_imports() <= ALLOWED_CLOUD_SDKS


# ---- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [POLICY_FILE, AFTER_BIND_POLICY], ids=lambda p: p.name)
def test_the_policy_is_a_plain_allow_list(path: Path) -> None:
    doc = policy(path)
    assert doc["Version"] == "1"
    assert set(doc) == {"Version", "Statement"}
    for st in statements(path):
        assert st["Effect"] == "Allow"
        assert set(st) <= {"Effect", "Action", "Resource", "Condition"}
        assert "NotAction" not in st and "NotResource" not in st


def test_the_policy_grants_exactly_what_the_code_needs() -> None:
    """The bind's policy: everything but the after-bind steps; the steps' policy: them alone."""
    needed = cams_actions_called() | {LOG_METHOD_ACTIONS[m] for m in sls_methods_called()}
    assert granted_actions() == needed - STEP_ACTIONS
    assert granted_actions(AFTER_BIND_POLICY) == STEP_ACTIONS
    assert len(statements(AFTER_BIND_POLICY)) == 1  # one statement to attach, or not
    for path in (POLICY_FILE, AFTER_BIND_POLICY):
        assert not any("*" in a or "?" in a for a in granted_actions(path))


def test_cams_is_granted_on_all_resources_because_the_action_has_no_resource_type() -> None:
    assert resources_of("cams:ChatappBindWaba") == {"*"}
    for action in STEP_ACTIONS:  # "All Resources" on both API pages (after_bind's citations)
        assert resources_of(action, AFTER_BIND_POLICY) == {"*"}


def test_log_writes_name_each_logstore_and_nothing_else() -> None:
    expected = {
        f"acs:log:*:*:project/{project}/logstore/{store}" for project, store in logstores_written()
    }
    granted = resources_of("log:PostLogStoreLogs")
    assert granted == expected
    for resource in granted:
        _, _, _, _, path = resource.split(":", 4)
        assert "*" not in path and "?" not in path, resource


@pytest.mark.parametrize("env", [{}, {"WABABIND_LOG_PROJECT": "p2", "WABABIND_LOG_STORE": "s2"}])
def test_log_config_and_policy_name_the_same_defaults(env: dict[str, str]) -> None:
    """Changing the log target at deploy time needs the policy changed too; the defaults agree."""
    project = load_project(S_YAML, env=env)
    stores = {(f.log_project, f.log_store) for f in project.functions.values()}
    assert len(stores) == 1
    if not env:
        assert stores == logstores_written()


# ---- s.yaml uses it --------------------------------------------------------------------------


def test_every_function_runs_as_the_one_least_privilege_role() -> None:
    props = raw_props()
    roles = {p["role"] for p in props.values()}
    assert len(roles) == 1, roles
    (role,) = roles
    assert re.fullmatch(r"acs:ram::.+:role/[A-Za-z0-9.-]+", role), role
    assert not BROAD_ROLE_NAMES.search(role.rsplit("/", 1)[1]), role


def test_s_yaml_points_at_the_policy_and_grants_nothing_else() -> None:
    text = S_YAML.read_text()
    assert "ram-policy.json" in text
    for word in ("AliyunFCFullAccess", "AdministratorAccess", "FullAccess", "policies:"):
        assert word not in text, word
    for p in raw_props().values():
        assert "policies" not in p
