"""The HTTP layer: a threaded server whose handler reads each request and hands it to a backend.

The backend (FcEmulator) is known here only by its shape, `Backend`: the emulator imports this
module, never the other way round.
"""

from __future__ import annotations

import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from wababind_local.fc_emulator.fc_api import MAX_SYNC_PAYLOAD, Reply, fc_error
from wababind_local.fc_emulator.http_trigger import _Headers, _Request


class Backend(Protocol):
    """What answers each request (FcEmulator)."""

    def handle(self, request: _Request) -> Reply:
        """FC's answer to one HTTP request."""
        ...

    def log(self, line: str) -> None:
        """One line for the operator (verbose mode)."""
        ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: Backend
    ):
        self.emulator = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer: one line when verbose, never a traceback."""
        exc = sys.exc_info()[1]
        self.emulator.log(f"connection from {client_address[0]}: {type(exc).__name__}")


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # StreamRequestHandler sets TCP_NODELAY on each connection
    server: _Server

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self._send(fc_error(400, "InvalidArgument", str(exc), str(uuid.uuid4())))
            return
        headers = _Headers()
        for name, value in self.headers.items():
            existing = headers.get(name)
            if existing is None:
                headers[name] = value
            else:
                key = next(k for k in headers if k.lower() == name.lower())
                headers[key] = f"{existing},{value}"
        request = _Request(
            self.command, self.path, self.request_version, headers, body, self.client_address[0]
        )
        reply = self.server.emulator.handle(request)
        self._send(reply)
        self.server.emulator.log(f"{self.command} {self.path} → {reply.status}")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_SYNC_PAYLOAD:
            raise ValueError("payload too large")
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator logs one line per request itself when verbose."""
