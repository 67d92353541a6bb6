"""An HTTP request as FC 3.0's HTTP trigger event, and the handler's answer as an HTTP reply."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from wababind_local.fc_emulator.fc_api import Reply, _output


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    protocol: str
    headers: _Headers
    body: bytes
    client_ip: str


class _Headers(dict[str, str]):
    """Header name → value, case-insensitive lookups; repeated headers joined with commas."""

    def get(self, name: str, default: Any = None) -> Any:
        lname = name.lower()
        return next((v for k, v in self.items() if k.lower() == lname), default)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)


def http_trigger_event(request: _Request, request_id: str) -> bytes:
    """The FC 3.0 HTTP trigger event (payload format v1) for one request."""
    parts = urlsplit(request.target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    try:
        body, encoded = request.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(request.body).decode(), True
    host = (request.headers.get("Host") or "127.0.0.1").split(":")[0]
    now = datetime.now(timezone.utc)
    return json.dumps(
        {
            "version": "v1",
            "rawPath": parts.path or "/",
            "body": body,
            "isBase64Encoded": encoded,
            "headers": dict(request.headers),
            "queryParameters": query,
            "requestContext": {
                "accountId": "1234567890123456",
                "domainName": host,
                "domainPrefix": host.split(".")[0],
                "http": {
                    "method": request.method,
                    "path": parts.path or "/",
                    "protocol": request.protocol,
                    "sourceIp": request.client_ip,
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": request_id,
                "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "timeEpoch": str(int(now.timestamp() * 1000)),
            },
        }
    ).encode()


def http_reply(result: Any) -> Reply:
    """The handler's `{statusCode, headers, body, isBase64Encoded}` as an HTTP answer."""
    if not isinstance(result, Mapping) or "statusCode" not in result:
        body, content_type = _output(result)
        return Reply(200, [("Content-Type", content_type)], body)
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        values = value if isinstance(value, list) else [value]
        headers.extend((str(name), str(v)) for v in values)
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw)
        except (binascii.Error, TypeError):
            body = str(raw).encode()
    elif isinstance(raw, bytes):
        body = raw
    elif isinstance(raw, str):
        body = raw.encode()
    else:
        body = json.dumps(raw).encode()
    return Reply(int(result["statusCode"]), headers, body)
