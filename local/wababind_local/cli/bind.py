"""`wababind bind WABA_ID`: one bind through the function, or in this process with --local."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wababind_local.cli.base import EXIT_FAILED_ROWS, Commands
from wababind_local.cli.remote import InvokeFailed, _remote_flags, invoke, remote_from
from wababind_local.fc_emulator import (
    ROOT,
    load_project,
)


def bind_request(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"WabaId": args.waba_id}
    if args.reference:
        request["Reference"] = args.reference
    if args.callback_url:
        request["CallbackUrl"] = args.callback_url
    return request


def cmd_bind(args: argparse.Namespace) -> int:
    request = bind_request(args)
    if args.local:
        records = bind_locally(request, Path(args.s_yaml), args.function)
    else:
        try:
            answer = invoke(remote_from(args), request)
        except InvokeFailed as exc:
            print(f"the function failed: {exc}", file=sys.stderr)
            return EXIT_FAILED_ROWS
        records = answer.get("Outcomes", []) if isinstance(answer, dict) else []
    for record in records:
        print(json.dumps(record, ensure_ascii=False, indent=2))
    ok = records and all(r.get("Status") in ("bound", "duplicate") for r in records)
    return 0 if ok else EXIT_FAILED_ROWS


def bind_locally(request: dict[str, Any], s_yaml: Path, function: str) -> list[dict[str, Any]]:
    """The MQ handler in this process, configured from the environment; its logged outcomes."""
    from wababind_local.fc_context import FCContext, FunctionMeta

    code_root = ROOT / "functions" / "bind_waba"
    timeout, handler = 600, "index.mq_handler"
    if s_yaml.is_file():
        spec = load_project(s_yaml).functions.get(function)
        if spec is not None:
            code_root, timeout, handler = spec.code, spec.timeout, spec.handler
    if str(code_root) not in sys.path:
        sys.path.insert(0, str(code_root))
    import importlib

    module_name, _, attr = handler.rpartition(".")
    mq_handler = getattr(importlib.import_module(module_name), attr)
    context = FCContext(function=FunctionMeta(function, handler, 512, timeout))
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        try:
            mq_handler(json.dumps(request).encode(), context)
        except Exception as exc:  # retryable failures raise; the outcome is still logged
            print(f"the handler raised {type(exc).__name__}: {exc}", file=sys.stderr)
    return list(_outcome_lines(captured.getvalue()))


def _outcome_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("Kind") == "WabaBindOutcome":
                    yield doc


def register(commands: Commands) -> None:
    bind = commands.add_parser("bind", help="bind one WABA through the function (or --local)")
    bind.add_argument("waba_id", metavar="WABA_ID")
    bind.add_argument("--reference")
    bind.add_argument("--callback-url")
    bind.add_argument("--local", action="store_true", help="call index.mq_handler in-process")
    _remote_flags(bind)
    bind.set_defaults(run=cmd_bind)
