"""The HTTP layer: a threaded loopback server whose handler hands each request to a backend.

The backend (CamsSimulator) is known here only by its shape, `Backend`: the simulator imports
this module, never the other way round.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from wababind_local.cams_simulator.answers import _Answer, _json

MAX_BODY = 1 << 20


class Backend(Protocol):
    """What answers each request (CamsSimulator)."""

    def handle_control(self, method: str, path: str, query: str, body: bytes) -> _Answer:
        """A `/_sim/` control request."""
        ...

    def handle_rpc(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> _Answer:
        """An API request, as CAMS answers it."""
        ...

    def pause(self, seconds: float) -> bool:
        """Wait `seconds` (an answer's latency); True when the backend stops meanwhile."""
        ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of new connections overflowed it, and the
    # dropped SYNs came back after Linux's 1-s retransmit, as no real CAMS endpoint behaves
    request_queue_size = 128
    sim: Backend
    # A keep-alive connection idle this long is closed by the server, as CAMS's gateway (and
    # any HTTP server) closes idle connections; clients must then reconnect, not fail.
    idle_timeout_s: float = 120.0
    idle_closed = 0  # keep-alive connections closed for idling

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-answer are normal here: stay silent."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120
    server_version = "CamsSimulator/1.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout_s)  # idle keep-alive ends then

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the tests and the CLI print what matters."""

    def log_error(self, format: str, *args: Any) -> None:
        """Silent too; counts the idle connections closed (http.server logs each one as a
        "Request timed out" when the socket's timeout ends the wait for the next request)."""
        if format.startswith("Request timed out"):
            with self.server._open_lock:
                self.server.idle_closed += 1

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(_Answer(413 if length > MAX_BODY else 411, _json({"error": "bad length"})))
            return
        body = self.rfile.read(length) if length > 0 else b""
        path, _, query = self.path.partition("?")
        sim = self.server.sim
        if path.startswith("/_sim/"):
            self._send(sim.handle_control(self.command, path, query, body))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = sim.handle_rpc(self.command, path, query, headers, body)
        if answer.delay_s > 0 and sim.pause(answer.delay_s):
            answer.drop = True
        if answer.drop:
            self.close_connection = True
            return
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            if answer.request_id:
                self.send_header("x-acs-request-id", answer.request_id)
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
