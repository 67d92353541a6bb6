"""Calling the MQ function through FC's invoke API with the `fc2` client, as production does."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wababind_local.cli.base import CliError
from wababind_local.fc_emulator import (
    LOCAL_FC_KEY_ID,
    LOCAL_FC_KEY_SECRET,
    ROOT,
    load_project,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
DEFAULT_FUNCTION = "bind-waba-mq"


@dataclass(frozen=True)
class Remote:
    """Where the MQ function is and the AccessKey that may invoke it."""

    endpoint: str
    access_key_id: str
    access_key_secret: str
    security_token: str
    service: str
    function: str
    timeout_s: float

    def client(self) -> Any:
        import fc2

        return fc2.Client(
            endpoint=self.endpoint,
            accessKeyID=self.access_key_id,
            accessKeySecret=self.access_key_secret,
            securityToken=self.security_token,
            Timeout=self.timeout_s,
        )


class InvokeFailed(Exception):
    """An invocation that gave no result; `retryable` when a later try may succeed."""

    def __init__(self, code: str, message: str, retryable: bool):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retryable = code, message, retryable


def _is_loopback(endpoint: str) -> bool:
    return (urlsplit(endpoint).hostname or "") in ("127.0.0.1", "localhost", "::1")


def remote_from(args: argparse.Namespace) -> Remote:
    """Flags, then the environment. A loopback endpoint is `make serve`: its key is the local
    one (WABABIND_LOCAL_FC_KEY_ID/_SECRET, else the built-in dev key), never your cloud key."""
    endpoint = args.endpoint or os.environ.get("FC_ENDPOINT") or DEFAULT_ENDPOINT
    env = os.environ
    if _is_loopback(endpoint):
        env_id, env_secret, token = "WABABIND_LOCAL_FC_KEY_ID", "WABABIND_LOCAL_FC_KEY_SECRET", ""
        default_id, default_secret = LOCAL_FC_KEY_ID, LOCAL_FC_KEY_SECRET
    else:
        env_id, env_secret = "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        token = env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "")
        default_id = default_secret = ""
    key_id = args.access_key_id or env.get(env_id) or default_id
    secret = args.access_key_secret or env.get(env_secret) or default_secret
    if not key_id or not secret:
        raise CliError(
            "no AccessKey: set --access-key-id/--access-key-secret or "
            "ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        )
    service, timeout_s = args.service, 660.0
    s_yaml = Path(args.s_yaml)
    if s_yaml.is_file():
        project = load_project(s_yaml)
        service = service or project.name
        spec = project.functions.get(args.function)
        timeout_s = float(spec.timeout + 60) if spec else timeout_s
    return Remote(
        endpoint=endpoint,
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        service=service or "wababind",
        function=args.function,
        timeout_s=timeout_s,
    )


def invoke(remote: Remote, payload: Any) -> Any:
    """A synchronous invoke; the function's JSON answer, or InvokeFailed."""
    import fc2
    import requests

    body = json.dumps(payload, ensure_ascii=False).encode()
    try:
        response = remote.client().invoke_function(remote.service, remote.function, payload=body)
    except fc2.fc_exceptions.FcError as exc:
        raise _invoke_error(exc) from None
    except requests.RequestException as exc:
        raise InvokeFailed(
            "Unreachable", f"{remote.endpoint}: {type(exc).__name__}", True
        ) from None
    try:
        return json.loads(response.data)
    except ValueError:
        raise InvokeFailed("BadAnswer", "the function did not answer JSON", False) from None


def _invoke_error(exc: Any) -> InvokeFailed:
    try:
        detail = json.loads(exc.message)
    except (TypeError, ValueError):
        detail = {}
    status = int(exc.status_code or 0)
    if status < 400:  # the function raised: FC answered 200 with x-fc-error-type
        return InvokeFailed(
            str(detail.get("errorType") or "UnhandledInvocationError"),
            str(detail.get("errorMessage") or ""),
            True,
        )
    code = str(detail.get("ErrorCode") or exc.err_code or f"HTTP{status}")
    message = str(detail.get("ErrorMessage") or "")
    return InvokeFailed(code, f"{message} (HTTP {status})", status >= 500 or status == 429)


def _remote_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help=f"FC endpoint (env FC_ENDPOINT; {DEFAULT_ENDPOINT})")
    parser.add_argument("--access-key-id", help="env ALIBABA_CLOUD_ACCESS_KEY_ID")
    parser.add_argument("--access-key-secret", help="env ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    parser.add_argument("--service", help="FC service (default: the s.yaml project name)")
    parser.add_argument("--function", default=DEFAULT_FUNCTION)
    parser.add_argument("--s-yaml", default=str(ROOT / "s.yaml"))
