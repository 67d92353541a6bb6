"""One CAMS RPC call via aliyun-python-sdk-core (ChatappBindWaba, and the after-bind steps'
ChatappSyncPhoneNumber and UpdateAccountWebhook): answered, terminal or retryable."""

from __future__ import annotations

import json
import logging
import os
import threading
from types import ModuleType
from typing import Any

from wababind.config import CamsEndpoint
from wababind.credentials import Credentials
from wababind.errors import CAMS_BAD_RESPONSE, CAMS_NO_ANSWER, CAMS_UNREACHABLE, BindError

PRODUCT, VERSION, ACTION = "cams", "2020-06-06", "ChatappBindWaba"
# The after-bind steps (wababind.after_bind); each is 10 calls/s per account, a quota apart:
# https://www.alibabacloud.com/help/en/chatapp/developer-reference/api-cams-2020-06-06-chatappsyncphonenumber
# https://help.aliyun.com/zh/chatapp/developer-reference/api-cams-2020-06-06-updateaccountwebhook
SYNC_PHONE_NUMBERS, ACCOUNT_WEBHOOK = "ChatappSyncPhoneNumber", "UpdateAccountWebhook"
RETRYABLE_CODES = frozenset({"System.LimitControl", "ServiceUnavailable", "InternalError"})
THROTTLE_CODES = frozenset({"System.LimitControl"})
MAX_MESSAGE = 512
# Connecting (TCP, TLS) is a round trip or two; a call waits a quarter of its read timeout for
# it, at most this (a lost SYN is sent again after 1 s). A call's whole span is both (call_s).
CONNECT_TIMEOUT_S = 2.0
# Answers without CAMS's JSON that may succeed later: a gateway's timeout or rate limit page.
RETRYABLE_PAGES = frozenset({408, 429})

_sdk_lock = threading.Lock()
_sdk_module: ModuleType | None = None
_last_error = threading.local()  # `error`: what this thread's last CAMS request raised, if anything


def _sdk() -> ModuleType:
    """aliyun-python-sdk-core, imported once (at `prepare`, or at the first CAMS call): it is half
    of our import time, and requests that are refused or answered as duplicates never need it.
    What it imports but our calls never run is left unloaded (wababind.deferred)."""
    global _sdk_module
    if _sdk_module is not None:  # the hot path: no lock, no logging setup
        return _sdk_module
    with _sdk_lock:
        if _sdk_module is None:
            from wababind.deferred import SDK_UNUSED, deferring

            with deferring(SDK_UNUSED):
                import aliyunsdkcore.acs_exception.exceptions
                import aliyunsdkcore.auth.credentials
                import aliyunsdkcore.client
                import aliyunsdkcore.request

            _quiet_sdk_logging()
            _sdk_module = aliyunsdkcore
        return _sdk_module


def _quiet_sdk_logging() -> None:
    """The SDK logs every error answer at ERROR level, and CAMS's SignatureDoesNotMatch message
    carries the server's string-to-sign, SecurityToken included: keep it quiet, once."""
    sdk_log = logging.getLogger("aliyunsdkcore")
    if not sdk_log.handlers:
        sdk_log.addHandler(logging.NullHandler())
    sdk_log.setLevel(logging.CRITICAL + 1)
    sdk_log.propagate = False
    logging.getLogger("aliyunsdkcore.http.http_response").handlers.clear()


# Plain classes, not @dataclass: a dataclass execs its generated __init__ at import (~0.3 ms
# each, every cold start).
class Bound:
    """CAMS bound the WABA: its CustSpaceId and the call's RequestId."""

    def __init__(self, cust_space_id: str | None, request_id: str | None) -> None:
        self.cust_space_id = cust_space_id
        self.request_id = request_id


class Answered:
    """CAMS answered an after-bind step with Code OK: its JSON document and RequestId."""

    def __init__(self, doc: dict[str, Any], request_id: str | None) -> None:
        self.doc = doc
        self.request_id = request_id


CallResult = Bound | BindError


def is_retryable(http_status: int | None, code: str) -> bool:
    """SPEC.md "Calling CAMS": throttling, unavailability and 5xx may succeed later."""
    if http_status is not None and http_status >= 500:
        return True
    return code in RETRYABLE_CODES or code.startswith("Throttling")


def is_throttle(error: BindError) -> bool:
    return error.code in THROTTLE_CODES or error.code.startswith("Throttling")


def safe_message(message: object) -> str:
    """CAMS's message, minus the echoed string-to-sign (it holds the SecurityToken)."""
    text = str(message or "")
    cut = text.find("string to sign is:")
    if cut >= 0:
        text = text[:cut].rstrip(" .:") + "."
    return text[:MAX_MESSAGE]


class CamsClient:
    """Reuses one AcsClient (and its keep-alive pool) per credential triple."""

    def __init__(self, endpoint: CamsEndpoint, region: str, timeout_s: float, pool_size: int = 32):
        self._endpoint = endpoint
        self._region = region
        self._timeout_s = timeout_s  # CAMS_TIMEOUT_S: the read timeout of every call
        self._connect_s = min(CONNECT_TIMEOUT_S, timeout_s / 4)
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._clients: dict[Credentials, Any] = {}  # AcsClient per key
        self._connected: set[Credentials] = set()  # clients prepare() opened a connection for

    @property
    def call_s(self) -> float:
        """The longest a call can take: connecting, then the whole read timeout. The binder
        starts a call only with this much time left, so it never gives up on one."""
        return self._connect_s + self._timeout_s

    def prepare(self, creds: Credentials | None) -> None:
        """Everything slow before a call, done ahead of it: the SDK import, the AcsClient for
        `creds` and its keep-alive connection. The FC initializer calls it, and the binder calls
        it before taking a quota slot, so nothing slow sits between a slot and its call. Never
        raises: a connection that cannot be opened now is opened by the call, as before."""
        _sdk()
        if creds is None or creds in self._connected:
            return
        client = self._client(creds)
        with self._lock:
            if creds in self._connected:
                return
            self._connected.add(creds)  # one try per client: an unreachable CAMS costs it once
        try:
            _open_keep_alive(client, self._endpoint, self._connect_s)
        except Exception:  # the call itself connects again and reports any real failure
            return

    def _client(self, creds: Credentials) -> Any:
        client = self._clients.get(creds)  # dict reads are atomic; creation takes the lock
        if client is not None:
            return client
        sdk = _sdk()
        with self._lock:
            client = self._clients.get(creds)
            if client is None:
                credential: Any = (
                    sdk.auth.credentials.StsTokenCredential(
                        creds.access_key_id, creds.access_key_secret, creds.security_token
                    )
                    if creds.security_token
                    else sdk.auth.credentials.AccessKeyCredential(
                        creds.access_key_id, creds.access_key_secret
                    )
                )
                client = sdk.client.AcsClient(
                    region_id=self._region,
                    credential=credential,
                    auto_retry=False,  # wababind.binder owns retries, bounded by the deadline
                    port=self._endpoint.port,
                    connect_timeout=self._connect_s,
                    timeout=self._timeout_s,
                    pool_size=self._pool_size,
                )
                # requests would look for ~/.netrc and proxy variables on every call (file
                # stats, and a lazy import on the first); the SDK passes proxies and TLS
                # verification itself (aliyunsdkcore.http.http_response), so nothing is lost.
                client.session.trust_env = False
                client.session.send = _noting_errors(client.session.send)
                _fixed_user_agent(client)
                # STS keys rotate; keep only the newest few clients.
                if len(self._clients) >= 4:
                    old = next(iter(self._clients))
                    self._clients.pop(old)
                    self._connected.discard(old)
                self._clients[creds] = client
            return client

    def bind_waba(self, waba_id: str, creds: Credentials) -> CallResult:
        """One signed ChatappBindWaba call, with CAMS_TIMEOUT_S as its read timeout; never
        raises for anything CAMS or the network does."""
        return _as_bound(self.call(ACTION, {"WabaId": waba_id}, creds))

    def call(self, action: str, params: dict[str, str], creds: Credentials) -> Answered | BindError:
        """One signed RPC call of `action` (POST, the query parameters `params`); Answered only
        on HTTP 200 with Code OK. Never raises for anything CAMS or the network does."""
        sdk = _sdk()
        request = sdk.request.CommonRequest(
            domain=self._endpoint.host, version=VERSION, action_name=action, product=PRODUCT
        )
        request.set_protocol_type(self._endpoint.scheme)
        request.set_method("POST")
        request.set_accept_format("JSON")
        for name, value in params.items():
            request.add_query_param(name, value)
        request.set_read_timeout(self._timeout_s)
        request.set_connect_timeout(self._connect_s)
        _last_error.error = None
        try:
            # The public do_action_with_exception drops the body of an error answer, and with it
            # AccessDeniedDetail; this returns status and body for every answer.
            status, _headers, body, _exc = self._client(creds)._implementation_of_do_action(request)
        except sdk.acs_exception.exceptions.ClientException as exc:
            if exc.get_error_code() == "SDK.HttpError":
                return network_error(_last_error.error)
            return BindError(exc.get_error_code(), safe_message(exc.get_error_msg()), False)
        return parse_rpc(status, body)


def _fixed_user_agent(client: Any) -> None:
    """The SDK rebuilds its User-Agent parts (platform and package versions, in fresh dicts) on
    every call (aliyunsdkcore.client.AcsClient.user_agent_header / default_user_agent); they
    never change in a process, so this client computes them once. merge_user_agent copies the
    default before it adds to it, so the one dict is never changed."""
    header, default = client.user_agent_header(), client.default_user_agent()
    client.user_agent_header = lambda: header
    client.default_user_agent = lambda: default


def _open_keep_alive(client: Any, endpoint: CamsEndpoint, timeout_s: float) -> None:
    """Open one connection in the AcsClient's own pool, the way its next request would pick it
    (same pool key, same TLS verification), without sending anything. Skipped behind a proxy."""
    if client.proxy or any(
        os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
    ):
        return
    url = f"{endpoint.scheme}://{endpoint.host}:{endpoint.port}/"
    verify = client.get_verify()
    if verify is None:  # as aliyunsdkcore.http.http_response.HttpResponse.get_verify_value
        verify = os.environ.get("ALIBABA_CLOUD_CA_BUNDLE", True)
    adapter = client.session.get_adapter(url)
    pool = adapter.get_connection(url)
    adapter.cert_verify(pool, url, verify, None)
    conn = pool._get_conn()
    try:
        conn.timeout = timeout_s
        conn.connect()
    except Exception:
        conn.close()
        pool._put_conn(conn)
        raise
    pool._put_conn(conn)


def _noting_errors(send: Any) -> Any:
    """The session's `send`, noting what it raises: the SDK turns every network error into a
    ClientException holding only its text (aliyunsdkcore.client.AcsClient._handle_single_request,
    `except IOError`), and whether the request went out is in the exception's type."""

    def send_noting(*args: Any, **kwargs: Any) -> Any:
        try:
            return send(*args, **kwargs)
        except Exception as exc:
            _last_error.error = exc
            raise

    return send_noting


def network_error(exc: BaseException | None) -> BindError:
    """A call without an answer, by the exception of the SDK's own (vendored) requests 2.18 and
    urllib3 1.24. Not sent: the connection was never made (refused, unknown host: urllib3's
    NewConnectionError; or a connect timeout). Everything else — a read timeout, a connection
    dropped after the request went out, an error we cannot place — may have reached CAMS, which
    may have bound the WABA: ambiguous. (A TLS handshake that times out is a read timeout to
    urllib3 1.24: counted as ambiguous, the safe side.)"""
    from aliyunsdkcore.vendored.requests import exceptions as rq
    from aliyunsdkcore.vendored.requests.packages.urllib3 import exceptions as u3

    if isinstance(exc, rq.ConnectTimeout):
        return BindError(CAMS_UNREACHABLE, "CAMS did not accept the connection in time", True)
    cause = exc.args[0] if isinstance(exc, rq.ConnectionError) and exc.args else None
    if isinstance(cause, u3.MaxRetryError) and isinstance(cause.reason, u3.NewConnectionError):
        return BindError(CAMS_UNREACHABLE, "CAMS refused the connection or did not resolve", True)
    message = (  # a timeout while the body arrives is a ConnectionError(ReadTimeoutError)
        "CAMS did not answer within CAMS_TIMEOUT_S"
        if isinstance(exc, rq.Timeout) or isinstance(cause, u3.ReadTimeoutError)
        else "the connection to CAMS dropped after the request was sent"
    )
    return BindError(
        CAMS_NO_ANSWER, f"{message}; CAMS may have bound the WABA", True, ambiguous=True
    )


def parse_answer(status: int, body: bytes | None) -> CallResult:
    """A ChatappBindWaba answer: Bound only on HTTP 200 with Code OK."""
    return _as_bound(parse_rpc(status, body))


def _as_bound(answer: Answered | BindError) -> CallResult:
    if isinstance(answer, BindError):
        return answer
    data = answer.doc.get("Data")
    cust_space_id = data.get("CustSpaceId") if isinstance(data, dict) else None
    return Bound(_text(cust_space_id), answer.request_id)


def parse_rpc(status: int, body: bytes | None) -> Answered | BindError:
    """Answered only on HTTP 200 with Code OK; HTTP 200 with Success false is a failure."""
    try:
        doc = json.loads(body or b"")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return _page(status)
    request_id = _text(doc.get("RequestId"))
    code = _text(doc.get("Code")) or f"HTTP{status}"
    if status == 200 and code == "OK" and doc.get("Success") is not False:
        return Answered(doc, request_id)
    detail = doc.get("AccessDeniedDetail")
    return BindError(
        code=code,
        message=safe_message(doc.get("Message")),
        retryable=is_retryable(status, code),
        request_id=request_id,
        access_denied_detail=(
            json.dumps(detail, separators=(",", ":")) if isinstance(detail, dict) else _text(detail)
        ),
        http_status=status,
    )


def _page(status: int) -> BindError:
    """An answer without CAMS's JSON. 5xx: CAMS or a gateway is down, retry. 2xx: CAMS answered
    but the body is unreadable (cut short?): it may have bound, so retry as a re-check. 3xx and
    4xx: a firewall, a proxy or a wrong CAMS_ENDPOINT answered, and will again: terminal (a 408
    or 429 page is a gateway's timeout or rate limit: retry)."""
    if status >= 500 or status in RETRYABLE_PAGES:
        return BindError(f"HTTP{status}", f"CAMS answered HTTP {status}", True, http_status=status)
    if status < 300:
        message = f"CAMS answered HTTP {status} without JSON; it may have bound the WABA"
        return BindError(CAMS_BAD_RESPONSE, message, True, http_status=status, ambiguous=True)
    message = (
        f"HTTP {status} without CAMS's JSON: not CAMS (a firewall, a proxy, or a wrong "
        "CAMS_ENDPOINT); fix it, then send the request again"
    )
    return BindError(f"HTTP{status}", message, False, http_status=status)


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
