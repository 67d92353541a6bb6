"""FC's invoke API as fc2 sees it: its limits, its request signature, its answers and errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

API_VERSION = "2016-08-15"
INVOKE_PATH = re.compile(rf"^/{API_VERSION}/services/([^/]+)/functions/([^/]+)/invocations/?$")
MAX_SKEW_S = 15 * 60
MAX_SYNC_PAYLOAD = 32 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 128 * 1024
UNHANDLED = "UnhandledInvocationError"


def string_to_sign(method: str, path: str, headers: Mapping[str, str]) -> str:
    """As fc2.auth builds it: method, content-md5, content-type, date, x-fc-* headers, path."""
    lower = {k.lower(): v for k, v in headers.items()}
    fc_headers = sorted((k, v) for k, v in lower.items() if k.startswith("x-fc-"))
    canonical = "".join(f"{k}:{v}\n" for k, v in fc_headers)
    return "\n".join(
        [
            method.upper(),
            lower.get("content-md5", ""),
            lower.get("content-type", ""),
            lower.get("date", ""),
            canonical + path,
        ]
    )


def sign(secret: str, method: str, path: str, headers: Mapping[str, str]) -> str:
    digest = hmac.new(
        secret.encode(), string_to_sign(method, path, headers).encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (a list, so a header may repeat) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def fc_error(status: int, code: str, message: str, request_id: str) -> Reply:
    body = json.dumps({"ErrorCode": code, "ErrorMessage": message}).encode()
    return Reply(
        status,
        [("Content-Type", "application/json"), ("x-fc-request-id", request_id)],
        body,
    )


class FunctionTimeout(Exception):
    """The handler ran past the function's timeout; FC answers without waiting for it."""

    def __init__(self, timeout_s: float):
        super().__init__(f"Function timed out after {timeout_s:g} seconds")


def _error_body(exc: BaseException) -> bytes:
    """What FC answers for an exception that left a handler: its message, its type and its
    `stackTrace`, one `[File "path", line N, in function, code]` entry per frame from the
    handler down, the runtime's own frames left out (FC docs, "Error handling":
    https://www.alibabacloud.com/help/en/functioncompute/fc/error-handling-1-1)."""
    if isinstance(exc, FunctionTimeout):
        return json.dumps({"errorMessage": str(exc)}).encode()
    import traceback
    from pathlib import Path

    ours = str(Path(__file__).parent)
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and frames[0].filename.startswith(ours):  # the emulator's, not the handler's
        frames.pop(0)
    trace = [[f'File "{f.filename}"', f"line {f.lineno}", f"in {f.name}", f.line] for f in frames]
    body = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": trace}
    return json.dumps(body).encode()


def _output(result: Any) -> tuple[bytes, str]:
    if result is None:
        return b"", "application/octet-stream"
    if isinstance(result, bytes):
        return result, "application/octet-stream"
    if isinstance(result, str):
        return result.encode(), "application/octet-stream"
    return json.dumps(result).encode(), "application/json"
