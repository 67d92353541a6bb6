"""The callback sink: POST each outcome record, signed as a Standard Webhook, to a vetted host.

Every safety check runs before any connection: the URL rules, then DNS, and the connection goes
to the vetted address (no second lookup, so no DNS rebinding) with SNI and Host for the name.
Redirects are never followed; 5xx, 429 and network errors are retried with backoff and jitter.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import socket
import ssl
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from wababind.credentials import Credentials
from wababind.outcome import Outcome, iso
from wababind.sinks.base import TOO_LATE, SinkError
from wababind.ssrf import SsrfError, callback_url_problem, normalize_host, resolve_public

USER_AGENT = "wababind-callback/1"
MAX_RESPONSE_BYTES = 64 * 1024
MIN_ATTEMPT_S = 0.05  # no point starting a POST with less time than this left


def webhook_id(outcome: Outcome) -> str:
    """Stable across retries of one outcome, different for every other outcome."""
    key = f"{outcome.event_id}|{outcome.waba_id}|{outcome.status}|{iso(outcome.started_at)}"
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class _Attempt:
    """What one POST gave: a status (None for a network error) and the wait a server asked for."""

    status: int | None
    retry_after_s: float | None = None
    error: str = ""

    def describe(self) -> str:
        return self.error if self.status is None else f"answered {self.status}"


def _connect(addresses: list[str], port: int, timeout: float) -> socket.socket:
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain http (tests only) to a vetted address; Host names the original host."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self.port, self.timeout)  # type: ignore[arg-type]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a vetted address, with SNI and certificate checks for the original host."""

    def __init__(
        self, host: str, port: int, addresses: list[str], timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._tls = context

    def connect(self) -> None:
        raw = _connect(self._addresses, self.port, self.timeout)  # type: ignore[arg-type]
        try:
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class CallbackSink:
    """Deliver outcomes to `outcome.callback_url`, else to `default_url`.

    The operator's `default_url` host is allowed implicitly; every other rule applies to it too.
    """

    name = "callback"

    def __init__(
        self,
        *,
        default_url: str | None,
        secret: str | None,
        allowed_hosts: Collection[str],
        allow_insecure: bool = False,
        timeout_s: float = 5.0,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._default_url = default_url
        self._webhook: Any = None
        if secret:
            from standardwebhooks import Webhook

            self._webhook = Webhook(secret)
        hosts = set(allowed_hosts)
        if default_url:
            default_host = urlsplit(default_url).hostname
            if default_host:
                hosts.add(default_host)
        self._allowed_hosts = frozenset(hosts)
        self._allow_insecure = allow_insecure
        self._timeout_s = timeout_s
        self._max_attempts = max(1, max_attempts)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._ssl_context = ssl_context
        self._sleep = sleep

    def send(
        self, outcome: Outcome, credentials: Credentials | None, deadline: float | None = None
    ) -> None:
        url = outcome.callback_url or self._default_url
        if not url:
            raise SinkError("no callback URL")
        if self._webhook is None:
            raise SinkError("no CALLBACK_SECRET configured: refusing to send an unsigned callback")
        target = self._target(url)
        try:
            addresses = resolve_public(
                target.host, target.port, allow_insecure=self._allow_insecure
            )
        except SsrfError as exc:
            raise SinkError(f"callback host not allowed: rule={exc.rule}") from None
        except OSError:
            raise SinkError("callback host name did not resolve") from None

        body = json.dumps(outcome.to_record(), ensure_ascii=False, separators=(",", ":"))
        msg_id = webhook_id(outcome)
        attempt = _Attempt(None)
        for number in range(1, self._max_attempts + 1):
            timeout_s = self._timeout_s
            if deadline is not None:
                timeout_s = min(timeout_s, deadline - time.monotonic())
                if timeout_s < MIN_ATTEMPT_S:
                    raise SinkError(f"{TOO_LATE} (after {number - 1} attempts)")
            attempt = self._post(target, addresses, msg_id, body, timeout_s)
            if attempt.status is not None and 200 <= attempt.status < 300:
                return
            if attempt.status is not None and 300 <= attempt.status < 400:
                raise SinkError(
                    f"callback receiver answered {attempt.status}; redirects are not followed"
                )
            retryable = attempt.status is None or attempt.status == 429 or attempt.status >= 500
            if not retryable:
                raise SinkError(f"callback receiver answered {attempt.status}; not retried")
            if number < self._max_attempts:
                pause = self._delay(number, attempt.retry_after_s)
                if deadline is not None and time.monotonic() + pause + MIN_ATTEMPT_S > deadline:
                    raise SinkError(f"{TOO_LATE} (after {number} attempts: {attempt.describe()})")
                self._sleep(pause)
        if attempt.status is None:
            raise SinkError(f"callback failed after {self._max_attempts} attempts: {attempt.error}")
        raise SinkError(
            f"callback receiver answered {attempt.status} after {self._max_attempts} attempts"
        )

    def _target(self, url: str) -> _Target:
        problem = callback_url_problem(
            url, self._allowed_hosts, allow_insecure=self._allow_insecure
        )
        if problem is not None:
            raise SinkError(f"callback host not allowed: rule={problem[0]}")
        parts = urlsplit(url)
        host = normalize_host(parts.hostname or "") or ""
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return _Target(scheme, host, port, path)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        delay = random.uniform(0.5, 1.0) * min(
            self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1)
        )
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self._max_backoff_s)

    def _connection(
        self, target: _Target, addresses: list[str], timeout_s: float
    ) -> http.client.HTTPConnection:
        if target.scheme == "http":
            return _PinnedHTTPConnection(target.host, target.port, addresses, timeout_s)
        context = self._ssl_context or ssl.create_default_context()
        return _PinnedHTTPSConnection(target.host, target.port, addresses, timeout_s, context)

    def _post(
        self, target: _Target, addresses: list[str], msg_id: str, body: str, timeout_s: float
    ) -> _Attempt:
        assert self._webhook is not None
        now = datetime.now(timezone.utc)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._webhook.sign(msg_id, now, body),
        }
        conn = self._connection(target, addresses, timeout_s)
        try:
            conn.request("POST", target.path, body=body.encode("utf-8"), headers=headers)
            response = conn.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            return _Attempt(response.status, _retry_after(response.getheader("Retry-After")))
        except ssl.SSLCertVerificationError:
            raise SinkError("callback host's TLS certificate did not verify") from None
        except (OSError, http.client.HTTPException) as exc:
            return _Attempt(None, error=_network_error(exc))
        finally:
            conn.close()


def _network_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionError):
        return "connection dropped"
    return type(exc).__name__
