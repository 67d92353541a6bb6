"""A loopback SLS server that the real aliyun-log-python-sdk talks to: PutLogs, and the index,
saved search, dashboard and alert APIs (their behaviour is in sls_resources.py).

It checks what SLS checks on every call (v1 `LOG ak:sig` HMAC-SHA1 signature, STS token,
Content-MD5) and on PutLogs (x-log-bodyrawsize, lz4/deflate/uncompressed bodies), decodes the
protobuf LogGroup with the SDK's own definitions, and keeps every log for tests. The SDK addresses
a `http://127.0.0.1:PORT` endpoint by IP and names the project in the Host header as
`{project}.127.0.0.1`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from wababind_local.sls_resources import ApiCall, SlsError, SlsResources

_PUT_LOGS = re.compile(r"^/logstores/([A-Za-z0-9_-]+)/shards/(lb|route)$")
_DATE_TOLERANCE_S = 15 * 60
_ERROR_CODES = {
    400: "PostBodyInvalid",
    401: "Unauthorized",
    403: "Unauthorized",
    404: "LogStoreNotExist",
    429: "WriteQuotaExceed",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServerBusy",
}


@dataclass(frozen=True)
class StoredLog:
    project: str
    logstore: str
    fields: dict[str, str]


def _decompress(body: bytes, kind: str, raw_size: int) -> bytes:
    if kind == "":
        return body
    if kind == "lz4":
        import lz4.block

        data: bytes = lz4.block.decompress(body, uncompressed_size=raw_size)
        return data
    if kind == "deflate":
        return zlib.decompress(body)
    raise SlsError(400, "PostBodyInvalid", f"unsupported x-log-compresstype {kind!r}")


def _decode_log_group(raw: bytes) -> list[dict[str, str]]:
    from aliyun.log.proto import LogGroup

    group = LogGroup()
    group.ParseFromString(raw)
    logs = []
    for log in group.Logs:
        fields = {c.Key: c.Value for c in log.Contents}
        fields.update(
            {"__topic__": group.Topic, "__source__": group.Source, "__time__": str(log.Time)}
        )
        for tag in group.LogTags:
            fields[f"__tag__:{tag.Key}"] = tag.Value
        logs.append(fields)
    return logs


class SlsServer:
    """`SlsServer(key_id, key_secret, security_token=None).start()`; `.endpoint`, `.records()`,
    `.api_calls()`, and `.resources` for what the configuration calls left behind."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        security_token: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token or ""
        self._host = host
        self._lock = threading.Lock()
        self._logs: list[StoredLog] = []
        self._faults: list[tuple[int, float]] = []  # (status or 0 for slow, delay)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.calls = 0
        self.refusals: list[str] = []
        self.resources = SlsResources()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self._host}:{self._server.server_address[1]}"

    def start(self) -> SlsServer:
        server = ThreadingHTTPServer((self._host, 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sls-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SlsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def records(
        self, project: str | None = None, logstore: str | None = None
    ) -> list[dict[str, str]]:
        """Every stored log (its contents plus __topic__, __source__, __time__), oldest first."""
        with self._lock:
            return [
                dict(log.fields)
                for log in self._logs
                if (project is None or log.project == project)
                and (logstore is None or log.logstore == logstore)
            ]

    def api_calls(self) -> list[ApiCall]:
        """Every index, saved search, dashboard and alert call, in order (PutLogs: records())."""
        return list(self.resources.calls)

    def fail_next(self, n: int, status: int) -> None:
        """The next `n` calls answer `status` with an SLS error body (and store nothing)."""
        with self._lock:
            self._faults.extend([(status, 0.0)] * n)

    def slow_next(self, n: int, delay_s: float) -> None:
        """The next `n` calls wait `delay_s` (cut short by stop()) before answering normally."""
        with self._lock:
            self._faults.extend([(0, delay_s)] * n)

    def _next_fault(self) -> tuple[int, float] | None:
        with self._lock:
            self.calls += 1
            return self._faults.pop(0) if self._faults else None

    def _store(self, project: str, logstore: str, logs: list[dict[str, str]]) -> None:
        with self._lock:
            self._logs.extend(StoredLog(project, logstore, fields) for fields in logs)

    def check(self, method: str, path: str, query: str, headers: Any, body: bytes) -> None:
        """Raise SlsError unless this request is signed with our key and well formed."""
        auth = headers.get("Authorization", "")
        if not auth.startswith("LOG ") or ":" not in auth:
            raise SlsError(401, "Unauthorized", "missing or malformed Authorization")
        key_id, _, signature = auth[4:].partition(":")
        if key_id != self.access_key_id:
            raise SlsError(401, "InvalidAccessKeyId", "the AccessKeyId does not exist")
        if headers.get("x-acs-security-token", "") != self.security_token:
            raise SlsError(401, "SecurityTokenExpired", "the security token is invalid")
        if headers.get("x-log-signaturemethod") != "hmac-sha1":
            raise SlsError(400, "InvalidSignatureMethod", "only hmac-sha1 is supported")
        date = headers.get("Date", "")
        try:
            sent = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            raise SlsError(400, "InvalidDate", "Date header missing or malformed") from None
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=timezone.utc)
        if abs((datetime.now(timezone.utc) - sent).total_seconds()) > _DATE_TOLERANCE_S:
            raise SlsError(400, "RequestTimeTooSkewed", "Date is too far from server time")
        content_md5 = headers.get("Content-MD5", "")
        if body and content_md5 != hashlib.md5(body).hexdigest().upper():
            raise SlsError(400, "InvalidContentMD5", "Content-MD5 does not match the body")
        expected = self._signature(method, path, query, headers, content_md5)
        if not hmac.compare_digest(expected, signature):
            raise SlsError(401, "SignatureNotMatch", "signature does not match")

    def _signature(self, method: str, path: str, query: str, headers: Any, md5: str) -> str:
        log_headers = sorted(
            (k.lower(), v)
            for k, v in headers.items()
            if (k.lower().startswith(("x-log-", "x-acs-")))
            and not k.lower().startswith("x-log-meta-")
            and k.lower() != "x-log-date"  # the SDK adds it after signing
        )
        resource = path
        if query:
            pairs = sorted(
                (unquote(k), unquote(v)) for k, _, v in (p.partition("=") for p in query.split("&"))
            )
            resource += "?" + "&".join(f"{k}={v}" for k, v in pairs)
        content = (
            "\n".join([method, md5, headers.get("Content-Type", ""), headers.get("Date", "")])
            + "\n"
        )
        content += "".join(f"{k}:{v}\n" for k, v in log_headers) + resource
        digest = hmac.new(self.access_key_secret.encode(), content.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def project_of(self, headers: Any) -> str:
        """The project the SDK names in the Host header (`{project}.127.0.0.1`)."""
        host = headers.get("Host", "").split(":", 1)[0]
        suffix = "." + self._host
        project = host[: -len(suffix)] if host.endswith(suffix) else ""
        if not project:
            raise SlsError(400, "ProjectNotExist", "the Host header names no project")
        return project

    def put_logs(self, headers: Any, logstore: str, body: bytes) -> None:
        project = self.project_of(headers)
        try:
            raw_size = int(headers.get("x-log-bodyrawsize", ""))
        except ValueError:
            raise SlsError(400, "InvalidBodyRawSize", "x-log-bodyrawsize is missing") from None
        kind = headers.get("x-log-compresstype", "").lower()
        try:
            raw = _decompress(body, kind, raw_size)
        except SlsError:
            raise
        except Exception:
            raise SlsError(400, "PostBodyInvalid", "body does not decompress") from None
        if len(raw) != raw_size:
            raise SlsError(400, "InvalidBodyRawSize", "x-log-bodyrawsize does not match")
        try:
            logs = _decode_log_group(raw)
        except Exception:
            raise SlsError(400, "PostBodyInvalid", "body is not a LogGroup") from None
        self._store(project, logstore, logs)


def _handler_for(server: SlsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            put_logs = _PUT_LOGS.match(path) if method == "POST" else None
            if put_logs is None and not server.resources.handles(path):
                self._answer(404, "RequestNotSupported", f"{method} {path} is not served here")
                return
            fault = server._next_fault()
            if fault is not None:
                status, delay = fault
                if status:
                    code = _ERROR_CODES.get(status, "InternalServerError")
                    self._answer(status, code, "injected fault")
                    return
                server._stopping.wait(delay)
            try:
                server.check(method, path, query, self.headers, body)
                if put_logs is not None:
                    server.put_logs(self.headers, put_logs.group(1), body)
                    payload = None
                else:
                    project = server.project_of(self.headers)
                    params = dict(parse_qsl(query, keep_blank_values=True))
                    payload = server.resources.handle(project, method, path, params, body)
            except SlsError as refusal:
                server.refusals.append(refusal.code)
                self._answer(refusal.status, refusal.code, refusal.message)
                return
            self._answer(200, payload=payload)

        def _answer(
            self, status: int, code: str = "", message: str = "", payload: Any = None
        ) -> None:
            if code:
                payload = {"errorCode": code, "errorMessage": message}
            body = json.dumps(payload).encode() if payload is not None else b""
            head = [
                f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                f"x-log-requestid: {uuid.uuid4().hex.upper()[:24]}",
                "Server: wababind-sls-server",
                f"Content-Length: {len(body)}",
            ]
            if body:
                head.append("Content-Type: application/json")
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            self.wfile.flush()

    return Handler
