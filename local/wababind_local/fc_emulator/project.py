"""s.yaml as the emulator reads it: each function's code, handler, timeout, environment, trigger."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_ASYNC_RETRIES = 3  # FC's default maxAsyncRetryAttempts


@dataclass(frozen=True)
class FunctionSpec:
    """One fc3 resource of s.yaml, as far as running it locally needs."""

    name: str
    handler: str
    code: Path
    memory: int = 512
    timeout: int = 3
    environment: dict[str, str] = field(default_factory=dict)
    http_trigger: bool = False
    async_retries: int = DEFAULT_ASYNC_RETRIES
    region: str = "ap-southeast-1"
    log_project: str = ""
    log_store: str = ""
    initializer: str | None = None  # instanceLifecycleConfig.initializer.handler
    initializer_timeout: int = 3
    pre_stop: str | None = None  # instanceLifecycleConfig.preStop.handler
    pre_stop_timeout: int = 3
    runtime: str = "python3.10"  # the context's layout follows it (fc_context.py)


@dataclass(frozen=True)
class Project:
    name: str
    functions: dict[str, FunctionSpec]

    @property
    def http_function(self) -> FunctionSpec | None:
        return next((f for f in self.functions.values() if f.http_trigger), None)


_TEMPLATE = re.compile(r"\$\{([^{}]*)\}")
_ENV_CALL = re.compile(r"""^env\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]*)['"]\s*)?\)$""")
_UNRESOLVED = object()


def _lookup(expr: str, variables: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    expr = expr.strip()
    if m := _ENV_CALL.match(expr):
        return env.get(m.group(1), m.group(2) if m.group(2) is not None else "")
    if expr.startswith("vars."):
        node: Any = variables
        for part in expr[len("vars.") :].split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _UNRESOLVED
            node = node[part]
        return node
    return _UNRESOLVED


def resolve(value: Any, variables: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Resolve `${env('X', 'd')}` and `${vars.a.b}` in a YAML value; others stay as written."""
    if isinstance(value, Mapping):
        return {k: resolve(v, variables, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables, env) for v in value]
    if not isinstance(value, str):
        return value
    whole = _TEMPLATE.fullmatch(value)
    if whole:
        found = _lookup(whole.group(1), variables, env)
        return value if found is _UNRESOLVED else found

    def substitute(m: re.Match[str]) -> str:
        found = _lookup(m.group(1), variables, env)
        return m.group(0) if found is _UNRESOLVED else str(found)

    return _TEMPLATE.sub(substitute, value)


def source_root(code: Path) -> Path:
    """Where the emulator imports a function's code from: `code` itself, or for the package
    that tools/build_package.py zips (build/NAME.zip, wheels built for FC's runtime, not this
    machine's) the folder it was built from, functions/NAME."""
    if code.suffix != ".zip":
        return code
    source = ROOT / "functions" / code.stem
    if not source.is_dir():
        raise ValueError(f"{code}: no functions/{code.stem} to run it from")
    return source


def _hook(props: Mapping[str, Any], name: str) -> tuple[str | None, int]:
    hook = ((props.get("instanceLifecycleConfig") or {}).get(name)) or {}
    return hook.get("handler") or None, int(hook.get("timeout", 3))


def load_project(s_yaml: Path, env: Mapping[str, str] | None = None) -> Project:
    """The project name and its fc3 functions, templates resolved against `env` (os.environ)."""
    env = os.environ if env is None else env
    doc = yaml.safe_load(s_yaml.read_text()) or {}
    raw_vars = doc.get("vars") or {}
    variables = resolve(raw_vars, resolve(raw_vars, {}, env), env)
    functions: dict[str, FunctionSpec] = {}
    for resource in (doc.get("resources") or {}).values():
        props = resolve((resource or {}).get("props") or {}, variables, env)
        if "functionName" not in props or "handler" not in props:
            continue
        log = props.get("logConfig") if isinstance(props.get("logConfig"), Mapping) else {}
        async_cfg = props.get("asyncInvokeConfig") or {}
        initializer, initializer_timeout = _hook(props, "initializer")
        pre_stop, pre_stop_timeout = _hook(props, "preStop")
        spec = FunctionSpec(
            name=str(props["functionName"]),
            handler=str(props["handler"]),
            runtime=str(props.get("runtime") or "python3.10"),
            code=source_root((s_yaml.parent / str(props.get("code", "."))).resolve()),
            memory=int(props.get("memorySize", 512)),
            timeout=int(props.get("timeout", 3)),
            environment={
                str(k): "" if v is None else str(v)
                for k, v in (props.get("environmentVariables") or {}).items()
            },
            http_trigger=any(
                (t or {}).get("triggerType") == "http" for t in props.get("triggers") or []
            ),
            async_retries=int(async_cfg.get("maxAsyncRetryAttempts", DEFAULT_ASYNC_RETRIES)),
            region=str(props.get("region", "ap-southeast-1")),
            log_project=str(log.get("project", "")),
            log_store=str(log.get("logstore", "")),
            initializer=initializer,
            initializer_timeout=initializer_timeout,
            pre_stop=pre_stop,
            pre_stop_timeout=pre_stop_timeout,
        )
        functions[spec.name] = spec
    return Project(name=str(doc.get("name", "")), functions=functions)
