"""The SLS sink: one PutLogs call per outcome, with the function's own credentials.

`aliyun.log` is heavy (requests, protobuf), so it is imported when the sink is built (by FC's
initializer, only when the `sls` sink is configured), never at module import.
The SDK's own retry loop (10 tries, 1 s apart) would break the sink's time bound, so each SDK call
makes one attempt and this module retries a bounded number of times.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from wababind.credentials import Credentials
from wababind.outcome import RECORD_KIND, Outcome
from wababind.sinks.base import SinkError

TOPIC = RECORD_KIND
SOURCE = "wababind"
_CACHED_CLIENTS = 4
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-]{16,}")
_RETRYABLE_CODES = frozenset(
    {"InternalServerError", "RequestTimeout", "ServerBusy", "LogRequestError"}
)


class _Attempt(Exception):
    """Carries an SDK error out of the SDK's retry loop (which only catches LogException)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _content(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def safe_reason(error: Exception, action: str = "PutLogs") -> str:
    """Error code, HTTP status and a short scrubbed message: SLS may echo signatures in messages."""
    code = getattr(error, "get_error_code", lambda: type(error).__name__)()
    status = getattr(error, "resp_status", None)
    message = str(getattr(error, "get_error_message", lambda: "")() or "")
    if code == "LogRequestError" and status in (None, 200):
        short = _transport_problem(message)
    else:
        lines = message.splitlines()
        short = _LONG_TOKEN.sub("[redacted]", lines[0] if lines else "")[:120]
    status_part = f" (HTTP {status})" if status and status != 200 else ""
    return f"SLS {action} failed: {code}{status_part}" + (f": {short}" if short else "")


def _transport_problem(message: str) -> str:
    lowered = message.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    if "refused" in lowered:
        return "connection refused"
    return "connection failed"


def _is_retryable(error: Exception) -> bool:
    status = getattr(error, "resp_status", 0) or 0
    code = getattr(error, "get_error_code", lambda: "")()
    return status >= 500 or code in _RETRYABLE_CODES


class SlsSink:
    """Write each outcome record as one log (topic `WabaBindOutcome`) to project/logstore."""

    name = "sls"

    def __init__(
        self,
        *,
        endpoint: str,
        project: str,
        logstore: str,
        timeout_s: float = 5.0,
        max_attempts: int = 2,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoint = endpoint if "://" in endpoint else "https://" + endpoint
        self._project = project
        self._logstore = logstore
        self._endpoint_is_ip = _is_ip(urlsplit(self._endpoint).hostname or "")
        self._timeout_s = timeout_s
        self._max_attempts = max(1, max_attempts)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._clients: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        _single_attempt_client_class()  # the SDK import, here rather than in the first send

    def send(
        self, outcome: Outcome, credentials: Credentials | None, deadline: float | None = None
    ) -> None:
        if credentials is None or not credentials.access_key_secret:
            raise SinkError("no AccessKey for SLS (the function needs a role)")
        from aliyun.log import LogItem, PutLogsRequest

        client = self._client(credentials)
        item = LogItem(
            timestamp=int(outcome.finished_at.timestamp()),
            time_nano_part=outcome.finished_at.microsecond * 1000,
            contents=[(k, _content(v)) for k, v in outcome.to_record().items()],
        )
        request = PutLogsRequest(
            self._project, self._logstore, TOPIC, SOURCE, [item], compress=True
        )
        for number in range(1, self._max_attempts + 1):
            try:
                client.put_logs(request)
                return
            except _Attempt as wrapped:
                error = wrapped.error
            except Exception as exc:  # the SDK raises LogException and, rarely, others
                error = exc
            if not _is_retryable(error) or number == self._max_attempts:
                raise SinkError(safe_reason(error)) from None
            pause = self._backoff_s * 2 ** (number - 1)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise SinkError(f"{safe_reason(error)}; no time left to retry") from None
            self._sleep(pause)

    def _client(self, credentials: Credentials) -> Any:
        key = (
            credentials.access_key_id,
            credentials.access_key_secret,
            credentials.security_token,
        )
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = _single_attempt_client_class()(
                    self._endpoint,
                    credentials.access_key_id,
                    credentials.access_key_secret,
                    securityToken=credentials.security_token or None,
                    source=SOURCE,
                )
                client.timeout = self._timeout_s
                if self._endpoint_is_ip:
                    # The SDK tests the whole "scheme://ip:port" string for an IP and fails,
                    # then prefixes the project to the IP; this restores "address by IP".
                    client._isRowIp = True
                self._clients[key] = client
                while len(self._clients) > _CACHED_CLIENTS:  # STS tokens rotate
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(key)
            return client


_client_class: type | None = None


def _single_attempt_client_class() -> type:
    """LogClient whose HTTP step raises _Attempt, so `_send` makes exactly one try."""
    global _client_class
    if _client_class is None:
        from aliyun.log import LogClient

        base: Any = LogClient  # the stubs do not declare the private _sendRequest

        class SingleAttemptLogClient(base):
            def _sendRequest(self, *args: Any, **kwargs: Any) -> Any:
                try:
                    return super()._sendRequest(*args, **kwargs)
                except Exception as exc:
                    raise _Attempt(exc) from None

        _client_class = SingleAttemptLogClient
    return _client_class
