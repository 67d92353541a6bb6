"""`wababind sign BODY`: Standard Webhooks headers for a body, or a whole curl command."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

from wababind_local.cli.base import CliError, Commands
from wababind_local.fc_emulator import (
    LOCAL_WEBHOOK_SECRET,
)


def signature_headers(secret: str, body: str, msg_id: str | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed now."""
    from standardwebhooks import Webhook

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def cmd_sign(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET
    if not secret.startswith("whsec_"):
        raise CliError("the secret must be a Standard Webhooks secret (whsec_…)")
    body = _body(args.body)
    try:
        headers = signature_headers(secret, body, args.id)
    except Exception as exc:  # a secret that is not base64
        raise CliError(f"cannot sign with that secret ({type(exc).__name__})") from None
    if args.curl:
        parts = ["curl", "-sS", "-X", "POST", args.curl, "-H", "Content-Type: application/json"]
        for name, value in headers.items():
            parts += ["-H", f"{name}: {value}"]
        parts += ["--data-raw", body]
        print(shlex.join(parts))
    else:
        for name, value in headers.items():
            print(f"{name}: {value}")
    return 0


def _body(arg: str) -> str:
    if arg == "-":
        return sys.stdin.read()
    if arg.startswith("@"):
        try:
            return Path(arg[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {arg[1:]}: {exc.strerror}") from None
    return arg


def register(commands: Commands) -> None:
    sign = commands.add_parser("sign", help="Standard Webhooks headers for a body")
    sign.add_argument("body", metavar="BODY_OR_@FILE", help="the body, @file, or - for stdin")
    sign.add_argument("--secret", help="whsec_… (env WEBHOOK_SECRET; else the local dev one)")
    sign.add_argument("--id", help="webhook-id (default: a new msg_…)")
    sign.add_argument("--curl", metavar="URL", help="print a complete curl command instead")
    sign.set_defaults(run=cmd_sign)
