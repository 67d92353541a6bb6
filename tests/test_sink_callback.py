"""The callback sink against a real local receiver that verifies signatures on its own."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from wababind.outcome import Outcome
from wababind.sinks.base import SinkError
from wababind.sinks.callback import CallbackSink, webhook_id

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """Answers from a script (status, headers, delay), then 200; verifies every signature."""

    secret: str = SECRET
    script: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    tls: ssl.SSLContext | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/wababind?tenant=7"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-path"] = self.path
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except Exception:
                    verified = False
                with receiver.lock:
                    receiver.received.append(Received(headers, body, verified))
                    status, extra, delay = (
                        receiver.script.pop(0) if receiver.script else (200, {}, 0.0)
                    )
                if delay:
                    receiver.stopping.wait(delay)
                answer = b'{"ok":true}'
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(answer)}"]
                head += [f"{k}: {v}" for k, v in extra.items()]
                with contextlib.suppress(OSError):
                    self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket nobody accepts on: any connection attempt would sit in its backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def connections_made(sock: socket.socket) -> int:
    sock.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


class Sleeps(list[float]):
    """Records the waits the sink asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def outcome(callback_url: str | None = None, event_id: str = "evt-1", **kw: Any) -> Outcome:
    started = dt.datetime(2026, 11, 25, 8, 0, 0, tzinfo=dt.timezone.utc)
    fields: dict[str, Any] = {
        "event_id": event_id,
        "source": "http",
        "waba_id": "1234567890",
        "reference": "signup-42",
        "status": "bound",
        "code": "OK",
        "message": "OK",
        "attempts": 1,
        "cust_space_id": "cs-1",
        "request_id": "REQ-1",
        "started_at": started,
        "finished_at": started + dt.timedelta(milliseconds=250),
        "callback_url": callback_url,
    }
    fields.update(kw)
    return Outcome(**fields)


def sink(**kw: Any) -> CallbackSink:
    args: dict[str, Any] = {
        "default_url": None,
        "secret": SECRET,
        "allowed_hosts": ["receiver.test"],
        "allow_insecure": True,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_s": 0.01,
        "max_backoff_s": 3.0,
        "sleep": Sleeps(),
    }
    args.update(kw)
    return CallbackSink(**args)


def test_delivers_signed_record(receiver: Receiver) -> None:
    o = outcome(receiver.url)
    sink().send(o, None)
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.verified
    assert json.loads(got.body) == o.to_record()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == webhook_id(o)
    assert got.headers["x-path"] == "/hooks/wababind?tenant=7"


def test_default_url_when_the_request_names_none(receiver: Receiver) -> None:
    sink(default_url=receiver.url, allowed_hosts=[]).send(outcome(None), None)
    assert [r.verified for r in receiver.received] == [True]


def test_receiver_with_another_secret_rejects_the_signature(receiver: Receiver) -> None:
    sink(secret=OTHER_SECRET).send(outcome(receiver.url), None)
    assert [r.verified for r in receiver.received] == [False]


def test_webhook_id_is_stable_across_retries(receiver: Receiver) -> None:
    receiver.script = [(500, {}, 0.0)]
    sleeps = Sleeps()
    sink(sleep=sleeps).send(outcome(receiver.url), None)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert all(r.verified for r in receiver.received)
    assert len(sleeps) == 1


def test_webhook_id_differs_per_outcome() -> None:
    ids = {
        webhook_id(outcome(event_id="a")),
        webhook_id(outcome(event_id="b")),
        webhook_id(outcome(event_id="a", status="failed")),
        webhook_id(outcome(event_id="a", waba_id="42")),
    }
    assert len(ids) == 4
    assert webhook_id(outcome(event_id="a")) == webhook_id(outcome(event_id="a"))


def test_500_forever_gives_up_after_max_attempts(receiver: Receiver) -> None:
    receiver.script = [(500, {}, 0.0)] * 5
    sleeps = Sleeps()
    with pytest.raises(SinkError) as caught:
        sink(sleep=sleeps).send(outcome(receiver.url), None)
    assert caught.value.reason == "callback receiver answered 500 after 3 attempts"
    assert len(receiver.received) == 3
    assert len(sleeps) == 2
    assert sleeps[0] <= sleeps[1] <= 3.0  # exponential, capped


@pytest.mark.parametrize(("retry_after", "expected"), [("2", 2.0), ("100", 3.0)])
def test_429_honours_retry_after_up_to_the_cap(
    receiver: Receiver, retry_after: str, expected: float
) -> None:
    receiver.script = [(429, {"Retry-After": retry_after}, 0.0)]
    sleeps = Sleeps()
    sink(sleep=sleeps).send(outcome(receiver.url), None)
    assert len(receiver.received) == 2
    assert sleeps == [expected]


@pytest.mark.parametrize(
    ("status", "extra", "reason"),
    [
        (404, {}, "callback receiver answered 404; not retried"),
        (410, {}, "callback receiver answered 410; not retried"),
        (
            302,
            {"Location": "/elsewhere"},
            "callback receiver answered 302; redirects are not followed",
        ),
        (
            307,
            {"Location": "/elsewhere"},
            "callback receiver answered 307; redirects are not followed",
        ),
    ],
)
def test_no_retry_on_4xx_and_redirects_are_not_followed(
    receiver: Receiver, status: int, extra: dict[str, str], reason: str
) -> None:
    receiver.script = [(status, extra, 0.0)]
    with pytest.raises(SinkError) as caught:
        sink().send(outcome(receiver.url), None)
    assert caught.value.reason == reason
    assert len(receiver.received) == 1


def test_receiver_down() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sleeps = Sleeps()
    with pytest.raises(SinkError) as caught:
        sink(sleep=sleeps).send(outcome(f"http://127.0.0.1:{port}/cb"), None)
    assert caught.value.reason == "callback failed after 3 attempts: connection refused"
    assert len(sleeps) == 2


def test_slow_receiver_times_out_each_attempt(receiver: Receiver) -> None:
    receiver.script = [(200, {}, 5.0)] * 2
    with pytest.raises(SinkError) as caught:
        sink(timeout_s=0.2, max_attempts=2).send(outcome(receiver.url), None)
    assert caught.value.reason == "callback failed after 2 attempts: timed out"
    assert len(receiver.received) == 2


def test_no_secret_refuses_to_send_unsigned(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(SinkError) as caught:
        sink(secret=None).send(outcome(f"http://127.0.0.1:{port}/cb"), None)
    assert "unsigned" in caught.value.reason
    assert connections_made(listener) == 0


def test_no_url_at_all() -> None:
    with pytest.raises(SinkError) as caught:
        sink().send(outcome(None), None)
    assert caught.value.reason == "no callback URL"


def _resolve_receiver_test_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    real = socket.getaddrinfo

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "receiver.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize(
    ("template", "insecure", "rule"),
    [
        ("http://127.0.0.1:{port}/cb", False, "scheme"),
        ("https://127.0.0.1:{port}/cb", False, "ip-literal"),
        ("https://[::ffff:127.0.0.1]:{port}/cb", False, "ip-literal"),
        ("https://2130706433:{port}/cb", False, "ip-literal"),
        ("https://127.1:{port}/cb", True, "ip-literal"),
        ("https://localhost:{port}/cb", False, "host"),
        ("https://sub.localhost:{port}/cb", False, "host"),
        ("https://elsewhere.test:{port}/cb", False, "host"),
        ("https://u:p@receiver.test:{port}/cb", False, "userinfo"),
        ("https://receiver.test:{port}/cb", False, "loopback"),  # allowed name, loopback address
    ],
)
def test_ssrf_refused_before_any_connection(
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    template: str,
    insecure: bool,
    rule: str,
) -> None:
    _resolve_receiver_test_to(monkeypatch, "127.0.0.1")
    url = template.format(port=listener.getsockname()[1])
    with pytest.raises(SinkError) as caught:
        sink(allow_insecure=insecure).send(outcome(url), None)
    assert caught.value.reason == f"callback host not allowed: rule={rule}"
    assert connections_made(listener) == 0


def test_connects_to_the_vetted_address_with_the_host_name(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _resolve_receiver_test_to(monkeypatch, "127.0.0.1")
    sink().send(outcome(f"http://receiver.test:{receiver.port}/cb"), None)
    assert receiver.received[0].headers["host"] == f"receiver.test:{receiver.port}"


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(
    ("cert_name", "delivered"), [("receiver.test", True), ("other.test", False)]
)
def test_https_uses_sni_and_verifies_the_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cert_name: str, delivered: bool
) -> None:
    cert, key = _self_signed(tmp_path, cert_name)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    client_tls = ssl.create_default_context(cafile=str(cert))
    r = Receiver(tls=server_tls).start()
    try:
        _resolve_receiver_test_to(monkeypatch, "127.0.0.1")
        target = sink(ssl_context=client_tls)
        if delivered:
            target.send(outcome(f"https://receiver.test:{r.port}/cb"), None)
            assert [x.verified for x in r.received] == [True]
        else:
            with pytest.raises(SinkError) as caught:
                target.send(outcome(f"https://receiver.test:{r.port}/cb"), None)
            assert caught.value.reason == "callback host's TLS certificate did not verify"
            assert r.received == []
        assert seen_sni and seen_sni[0] == "receiver.test"
    finally:
        r.stop()


def test_reasons_never_carry_the_secret(receiver: Receiver) -> None:
    receiver.script = [(500, {}, 0.0)] * 3
    with pytest.raises(SinkError) as caught:
        sink().send(outcome(receiver.url), None)
    assert SECRET not in caught.value.reason
    assert SECRET.removeprefix("whsec_") not in caught.value.reason
