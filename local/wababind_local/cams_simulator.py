"""A loopback CAMS (Chat App Message Service) that the real aliyun-python-sdk-core talks to.

It answers the one action the functions call, `ChatappBindWaba` (RPC, version 2020-06-06), after
the checks the Alibaba Cloud API gateway makes, in its order: required parameters, AccessKeyId,
STS SecurityToken, signature method/version, the v1 HMAC-SHA1 signature (over the query string
and any form body, as the SDK signs them), Timestamp (±15 min), SignatureNonce reuse, Action,
Version, WabaId. Then CAMS's per-account quota (a sliding one-second window, `System.LimitControl`
above it), latency, an injected fault for the WabaId if any, and success.

Tests drive it in-process (`set_fault`, `calls`, `count`, ...); other processes drive it over
`/_sim/` (GET /_sim/calls, GET /_sim/bound, POST /_sim/faults, /_sim/config, /_sim/reset).
`python -m wababind_local.cams_simulator` serves it in the foreground.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote

PRODUCT, VERSION, ACTION = "cams", "2020-06-06", "ChatappBindWaba"
HOST_ID = "cams.ap-southeast-1.aliyuncs.com"
TIMESTAMP_TOLERANCE_S = 15 * 60
NONCE_MEMORY_S = 15 * 60
NONCES_PER_KEY = 100_000
MAX_BODY = 1 << 20
QUOTA_CODE = "System.LimitControl"

# Error codes and messages, from:
# - ChatappBindWaba (its own codes, all HTTP 400):
#   https://www.alibabacloud.com/help/en/chatapp/developer-reference/api-cams-2020-06-06-chatappbindwaba
# - CAMS public error codes:
#   https://help.aliyun.com/en/chatapp/developer-reference/api-cams-2020-06-06-errorcodes
# - Alibaba Cloud OpenAPI gateway client errors (Missing{Name}, InvalidAccessKeyId.NotFound,
#   InvalidTimeStamp.*, SignatureNonceUsed, SignatureDoesNotMatch, Throttling.User):
#   https://help.aliyun.com/en/document_detail/434846.html, https://developer.aliyun.com/ask/278265
# - server errors InternalError 500, ServiceUnavailable 503:
#   https://help.aliyun.com/en/dns/error-code
# - MissingSecurityToken: https://github.com/denverdino/aliyungo/issues/204
DOCUMENTED_ERRORS: dict[str, tuple[int, str]] = {
    "Ram.PermissionDeny": (400, "You are not authorized to perform the operation."),
    "Product.Unsubscript": (400, "You have not subscribed to the specified product."),
    "Unknown.ResourceOwnerId": (400, "The resource does not belong to the current user."),
    "System.LimitControl": (400, "The system is under flow control."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "Throttling.Api": (400, "Request was denied due to api flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    "999999": (400, "System Exception. Please refresh the page and try again"),
    "ERR-FB-001": (
        400,
        "Unsupported get request. Does not exist, cannot be loaded due to missing permissions, "
        "Or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api.",
    ),
    "ERR-OPERATION-MAAP-0060": (400, "The subscriber has not bind WABA."),
    "ERR-COMMON-001": (500, "System exception, please contact administrator."),
    "CHAT.APIError": (500, "You are not authorized to do this operation."),
}

_GATEWAY_ERRORS: dict[str, tuple[int, str]] = {
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "MissingSecurityToken": (400, "SecurityToken is mandatory for this action."),
    "InvalidSecurityToken.Malformed": (400, "Specified SecurityToken is malformed."),
    "InvalidSecurityToken.MismatchWithAccessKey": (
        400,
        "Specified SecurityToken mismatch with the AccessKey.",
    ),
    "InvalidSignatureMethod": (400, "Specified signature method is not valid."),
    "InvalidSignatureVersion": (400, "Specified signature version is not valid."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAction.NotFound": (
        404,
        "Specified api is not found, please check your url and method.",
    ),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
}

_REQUIRED = (
    "Action",
    "Version",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
)


@dataclass(frozen=True)
class SimKey:
    """An AccessKey the simulator accepts; keys of one account share its quota."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    account: str = "default"

    def __repr__(self) -> str:
        return f"SimKey(access_key_id={self.access_key_id!r}, account={self.account!r}, ...)"


DEFAULT_KEY = SimKey("LTAI5tSimulatorKey0001", "SimulatorSecret0001NotARealKey")
DEFAULT_STS_KEY = SimKey(
    "STS.NTSimulatorStsKey0001",
    "SimulatorStsSecret0001NotARealKey",
    security_token="CAISimulatorSecurityToken0001+NotAReal/Token==",
    account=DEFAULT_KEY.account,
)


@dataclass(frozen=True)
class Fault:
    """What the simulator answers for a WabaId instead of a plain success.

    `times=None` fires on every call; `times=N` on the next N calls of that WabaId (those that
    pass the quota), after which it clears; `times=0` clears it at once.
    """

    kind: str
    status: int = 200
    code: str = ""
    message: str = ""
    seconds: float = 0.0
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.times is not None and (isinstance(self.times, bool) or self.times < 0):
            raise ValueError("times must be None or a count >= 0")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")

    @classmethod
    def error(cls, code: str, status: int, message: str, times: int | None = None) -> Fault:
        """CAMS's JSON error answer with `code` at HTTP `status`."""
        return cls("error", status=status, code=code, message=message, times=times)

    @classmethod
    def success_false(cls, code: str, message: str, times: int | None = None) -> Fault:
        """HTTP 200 whose JSON says `Success: false` with `code`."""
        return cls("success_false", code=code, message=message, times=times)

    @classmethod
    def http_status(cls, status: int, times: int | None = None) -> Fault:
        """A bare HTTP `status` with an HTML body, as a load balancer in front would send."""
        return cls("http_status", status=status, times=times)

    @classmethod
    def garbage(cls, times: int | None = None) -> Fault:
        """HTTP 200 with a body that is not JSON."""
        return cls("garbage", times=times)

    @classmethod
    def slow(cls, seconds: float, times: int | None = None) -> Fault:
        """Answer a normal success (and bind) after `seconds` more."""
        return cls("slow", seconds=seconds, times=times)

    @classmethod
    def drop(cls, times: int | None = None) -> Fault:
        """Close the connection without answering."""
        return cls("drop", times=times)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Fault:
        """The control API's form: {"kind": ..., "code"/"status"/"message"/"seconds", "times"}."""
        kind = str(doc.get("kind", ""))
        times = doc.get("times")
        if times is not None and not isinstance(times, int):
            raise ValueError("times must be an integer or null")
        if kind == "error":
            code = str(doc.get("code") or "")
            if not code:
                raise ValueError("an error fault needs a code")
            status, message = DOCUMENTED_ERRORS.get(code, (400, code))
            return cls.error(
                code, int(doc.get("status", status)), str(doc.get("message", message)), times
            )
        if kind == "success_false":
            code = str(doc.get("code") or "")
            if not code:
                raise ValueError("a success_false fault needs a code")
            message = DOCUMENTED_ERRORS.get(code, (200, code))[1]
            return cls.success_false(code, str(doc.get("message", message)), times)
        if kind == "http_status":
            return cls.http_status(int(doc.get("status", 503)), times)
        if kind == "slow":
            return cls.slow(float(doc.get("seconds", 1.0)), times)
        if kind == "garbage":
            return cls.garbage(times)
        if kind == "drop":
            return cls.drop(times)
        raise ValueError(f"unknown fault kind {kind!r}; one of: {', '.join(_FAULT_KINDS)}, clear")

    @property
    def description(self) -> str:
        """One line for people: what CAMS answers, and for how many calls."""
        what = {
            "error": f"CAMS answers {self.code} (HTTP {self.status}): {_short(self.message)}",
            "success_false": (
                f"CAMS answers HTTP 200, Success false, {self.code}: {_short(self.message)}"
            ),
            "http_status": f"a bare HTTP {self.status} page, no JSON",
            "garbage": "HTTP 200 with a body that is not JSON",
            "slow": f"answers OK {self.seconds:g} s late",
            "drop": "closes the connection without answering",
        }[self.kind]
        if self.times is None:
            return f"{what} — every call"
        if self.times == 0:
            return f"{what} — cleared"
        if self.times == 1:
            return f"{what} — the next call only, then binds"
        return f"{what} — the next {self.times} calls, then binds"

    def __str__(self) -> str:
        return self.description


_FAULT_KINDS = ("error", "success_false", "http_status", "garbage", "slow", "drop")


def _short(text: str, limit: int = 80) -> str:
    text = text.rstrip(" .")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


DEMO_FAULTS: dict[str, Fault] = {
    "900000000000001": Fault.error("Ram.PermissionDeny", *DOCUMENTED_ERRORS["Ram.PermissionDeny"]),
    "900000000000002": Fault.error(
        "Product.Unsubscript", *DOCUMENTED_ERRORS["Product.Unsubscript"]
    ),
    "900000000000003": Fault.success_false(
        "ERR-FB-001", "Graph API refused the WABA: missing permissions."
    ),
    "900000000000004": Fault.http_status(503, times=1),
}


@dataclass(frozen=True)
class CallRecord:
    """One request that reached ChatappBindWaba (authenticated), refused by the quota or not."""

    at: float
    access_key_id: str
    action: str
    waba_id: str
    http_status: int
    code: str
    request_id: str
    throttled: bool = False  # refused by the simulator's own quota


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json;charset=utf-8"
    request_id: str | None = None
    delay_s: float = 0.0
    drop: bool = False


class _Refusal(Exception):
    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        known_status, known_message = _GATEWAY_ERRORS.get(code, (400, code))
        super().__init__(code)
        self.code = code
        self.status = status or known_status
        self.message = message or known_message


def percent_encode(value: str) -> str:
    """RFC 3986 encoding, as Alibaba Cloud's v1 signature wants it (space %20, `~` kept)."""
    return quote(value, safe="~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    """`METHOD&%2F&` + the encoded, sorted canonical query (every parameter but Signature)."""
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )
    return f"{method}&%2F&{percent_encode(canonical)}"


def sign(text: str, secret: str) -> str:
    """v1 HMAC-SHA1 signature, key = secret + "&"."""
    digest = hmac.new(f"{secret}&".encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def cust_space_id(waba_id: str) -> str:
    """The CustSpaceId CAMS gives a WabaId here: stable, so rebinding answers the same."""
    return "cs-" + hashlib.sha256(f"cams-sim:{waba_id}".encode()).hexdigest()[:20]


def _parse_timestamp(value: str) -> float:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise _Refusal("InvalidTimeStamp.Format")


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _error_doc(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": code,
        "Message": message,
        "Recommend": (
            f"https://api.aliyun.com/troubleshoot?q={code}&product={PRODUCT}&requestId={request_id}"
        ),
    }


def _access_denied_detail(key: SimKey) -> dict[str, str]:
    return {
        "AuthAction": f"{PRODUCT}:{ACTION}",
        "AuthPrincipalType": "AssumedRoleUser" if key.security_token else "SubUser",
        "AuthPrincipalDisplayName": key.access_key_id,
        "AuthPrincipalOwnerId": "1234567890",
        "NoPermissionType": "ImplicitDeny",
        "PolicyType": "AccountLevelIdentityBasedPolicy",
        "EncodedDiagnosticMessage": "simulated",
    }


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most of `times` that fall in any half-open window [t, t + window_s)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, at in enumerate(times):
        while times[lo] <= at - window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class CamsSimulator:
    """A threaded HTTP server on loopback; all state sits behind one lock."""

    def __init__(
        self,
        keys: Iterable[SimKey] = (DEFAULT_KEY, DEFAULT_STS_KEY),
        qps: float | None = 10,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        demo_faults: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = {k.access_key_id: k for k in keys}
        self._tokens = {k.security_token: k for k in self._keys.values() if k.security_token}
        if latency_ms is not None:
            latency_s = latency_ms / 1000
        self._initial = (qps, latency_s, jitter_s)
        self._demo_faults = demo_faults
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._qps: float | None = qps
        self._latency_s = latency_s
        self._jitter_s = jitter_s
        self._faults: dict[str, tuple[Fault, int | None]] = {}
        self._default_fault: tuple[Fault, int | None] | None = None
        self._calls: list[CallRecord] = []
        self._bound: dict[str, str] = {}
        self._rejected: Counter[str] = Counter()
        self._nonces: dict[str, OrderedDict[str, float]] = {}
        self._quota: dict[str, deque[float]] = {}
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> CamsSimulator:
        """Listen and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.sim = self
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut the open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CamsSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (after stop(), the one it listened on)."""
        if self._port == 0:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """`http://127.0.0.1:PORT`, for CAMS_ENDPOINT."""
        return f"http://{self._host}:{self.port}"

    # --- control ---------------------------------------------------------------------------

    def set_fault(self, waba_id: str, fault: Fault | None) -> None:
        """Install (or with None or times=0, clear) the fault for one WabaId."""
        with self._lock:
            if fault is None or fault.times == 0:
                self._faults.pop(waba_id, None)
            else:
                self._faults[waba_id] = (fault, fault.times)

    def set_default_fault(self, fault: Fault | None) -> None:
        """A fault for every WabaId that has none of its own (times counted across them)."""
        with self._lock:
            cleared = fault is None or fault.times == 0
            self._default_fault = None if fault is None or cleared else (fault, fault.times)

    def set_latency(self, latency_s: float, jitter_s: float = 0.0) -> None:
        """Every answer waits latency_s plus uniform(0, jitter_s)."""
        with self._lock:
            self._latency_s, self._jitter_s = max(0.0, latency_s), max(0.0, jitter_s)

    def set_qps(self, qps: float | None) -> None:
        """The per-account quota per one-second window; None = no quota."""
        with self._lock:
            self._qps = qps
            self._quota.clear()

    def reset(self) -> None:
        """Forget calls, bindings, nonces, quota and faults; back to the constructor's settings."""
        with self._lock:
            self._qps, self._latency_s, self._jitter_s = self._initial
            self._faults = (
                {w: (f, f.times) for w, f in DEMO_FAULTS.items()} if self._demo_faults else {}
            )
            self._default_fault = None
            self._calls = []
            self._bound = {}
            self._rejected = Counter()
            self._nonces = {}
            self._quota = {}

    # --- observation -----------------------------------------------------------------------

    def calls(self) -> list[CallRecord]:
        """Every authenticated ChatappBindWaba request, in arrival order (throttled included)."""
        with self._lock:
            return list(self._calls)

    def count(self, waba_id: str | None = None, code: str | None = None) -> int:
        """How many calls (of that WabaId, answered with that code)."""
        with self._lock:
            return sum(
                1
                for c in self._calls
                if (waba_id is None or c.waba_id == waba_id) and (code is None or c.code == code)
            )

    def bound(self) -> dict[str, str]:
        """WabaId → CustSpaceId for every WABA bound so far."""
        with self._lock:
            return dict(self._bound)

    def rejected(self) -> dict[str, int]:
        """Requests refused before the action (signature, key, timestamp, ...), by code."""
        with self._lock:
            return dict(self._rejected)

    def max_calls_in_window(self, window_s: float = 1.0, code: str | None = None) -> int:
        """Most calls that passed the quota (optionally: answered with `code`) in any window.

        A window is any half-open interval [t, t + window_s) of arrival times; calls refused
        by the simulator's own quota are never counted (they did not use quota).
        """
        with self._lock:
            times = [
                c.at for c in self._calls if not c.throttled and (code is None or c.code == code)
            ]
        return max_in_window(times, window_s)

    def summary(self, waba_id: str | None = None, code: str | None = None) -> dict[str, Any]:
        """Counts for the control API."""
        with self._lock:
            calls = list(self._calls)
            bound = len(self._bound)
            rejected = dict(self._rejected)
            qps = self._qps
        return {
            "total": len(calls),
            "count": sum(
                1
                for c in calls
                if (waba_id is None or c.waba_id == waba_id) and (code is None or c.code == code)
            ),
            "by_code": dict(Counter(c.code for c in calls)),
            "throttled": sum(1 for c in calls if c.throttled),
            "bound": bound,
            "rejected": rejected,
            "qps": qps,
            "max_calls_in_window": self.max_calls_in_window(),
        }

    # --- the RPC action --------------------------------------------------------------------

    def _handle_rpc(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> _Answer:
        request_id = _request_id()
        params = dict(parse_qsl(query, keep_blank_values=True))
        content_type = headers.get("content-type", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            key = self._authenticate(method, path, params)
        except _Refusal as refusal:
            with self._lock:
                self._rejected[refusal.code] += 1
            return self._error(refusal.status, refusal.code, refusal.message, request_id)
        return self._bind(key, params.get("WabaId", ""), request_id)

    def _authenticate(self, method: str, path: str, params: dict[str, str]) -> SimKey:
        if path not in ("", "/"):
            raise _Refusal("InvalidAction.NotFound")
        for name in _REQUIRED:
            if not params.get(name):
                raise _Refusal(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        key = self._keys.get(params["AccessKeyId"])
        if key is None:
            raise _Refusal("InvalidAccessKeyId.NotFound")
        if key.security_token:
            token = params.get("SecurityToken", "")
            if not token:
                raise _Refusal("MissingSecurityToken")
            if not hmac.compare_digest(token.encode(), key.security_token.encode()):
                other = self._tokens.get(token)
                raise _Refusal(
                    "InvalidSecurityToken.MismatchWithAccessKey"
                    if other is not None
                    else "InvalidSecurityToken.Malformed"
                )
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise _Refusal("InvalidSignatureMethod")
        if params["SignatureVersion"] != "1.0":
            raise _Refusal("InvalidSignatureVersion")
        expected_text = string_to_sign(method, params)
        expected = sign(expected_text, key.access_key_secret)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise _Refusal(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. "
                f"server string to sign is:{expected_text}",
            )
        sent_at = _parse_timestamp(params["Timestamp"])
        if abs(time.time() - sent_at) > TIMESTAMP_TOLERANCE_S:
            raise _Refusal("InvalidTimeStamp.Expired")
        self._use_nonce(key.access_key_id, params["SignatureNonce"])
        if params["Action"] != ACTION:
            raise _Refusal("InvalidAction.NotFound")
        if params["Version"] != VERSION:
            raise _Refusal("InvalidVersion")
        return key

    def _use_nonce(self, key_id: str, nonce: str) -> None:
        now = self._clock()
        with self._lock:
            seen = self._nonces.setdefault(key_id, OrderedDict())
            while seen and next(iter(seen.values())) <= now - NONCE_MEMORY_S:
                seen.popitem(last=False)
            if nonce in seen:
                raise _Refusal("SignatureNonceUsed")
            seen[nonce] = now
            while len(seen) > NONCES_PER_KEY:
                seen.popitem(last=False)

    def _bind(self, key: SimKey, waba_id: str, request_id: str) -> _Answer:
        with self._lock:
            now = self._clock()
            if not waba_id:
                message = "WabaId is mandatory for this action."
                return self._record_error(
                    key, waba_id, request_id, now, "MissingWabaId", 400, message
                )
            if not self._take_quota(key.account, now):
                status, message = DOCUMENTED_ERRORS[QUOTA_CODE]
                return self._record_error(
                    key, waba_id, request_id, now, QUOTA_CODE, status, message, throttled=True
                )
            delay = self._latency_s + (random.uniform(0, self._jitter_s) if self._jitter_s else 0)
            fault = self._next_fault(waba_id)
            answer = self._answer(key, waba_id, request_id, fault)
            answer.delay_s = delay + (fault.seconds if fault is not None else 0.0)
            code = _answer_code(fault)
            self._calls.append(
                CallRecord(now, key.access_key_id, ACTION, waba_id, answer.status, code, request_id)
            )
            if code == "OK":
                self._bound[waba_id] = cust_space_id(waba_id)
            return answer

    def _record_error(
        self,
        key: SimKey,
        waba_id: str,
        request_id: str,
        now: float,
        code: str,
        status: int,
        message: str,
        throttled: bool = False,
    ) -> _Answer:
        self._calls.append(
            CallRecord(now, key.access_key_id, ACTION, waba_id, status, code, request_id, throttled)
        )
        return self._error(status, code, message, request_id)

    def _take_quota(self, account: str, now: float) -> bool:
        if self._qps is None:
            return True
        if self._qps <= 0:
            return False
        window, limit = (1.0, int(self._qps)) if self._qps >= 1 else (1.0 / self._qps, 1)
        used = self._quota.setdefault(account, deque())
        while used and used[0] <= now - window:
            used.popleft()
        if len(used) >= limit:
            return False
        used.append(now)
        return True

    def _next_fault(self, waba_id: str) -> Fault | None:
        slot = self._faults.get(waba_id)
        if slot is not None:
            fault, left = slot
            if left is not None:
                if left <= 1:
                    del self._faults[waba_id]
                else:
                    self._faults[waba_id] = (fault, left - 1)
            return fault
        if self._default_fault is not None:
            fault, left = self._default_fault
            if left is not None:
                self._default_fault = None if left <= 1 else (fault, left - 1)
            return fault
        return None

    def _answer(self, key: SimKey, waba_id: str, request_id: str, fault: Fault | None) -> _Answer:
        if fault is None or fault.kind == "slow":
            doc = {
                "RequestId": request_id,
                "Code": "OK",
                "Success": True,
                "Data": {"CustSpaceId": cust_space_id(waba_id), "WabaId": waba_id},
            }
            return _Answer(200, _json(doc), request_id=request_id)
        if fault.kind == "error":
            doc = _error_doc(fault.code, fault.message, request_id)
            if fault.code == "Ram.PermissionDeny":
                doc["AccessDeniedDetail"] = _access_denied_detail(key)
            return _Answer(fault.status, _json(doc), request_id=request_id)
        if fault.kind == "success_false":
            doc = {
                "RequestId": request_id,
                "Code": fault.code,
                "Message": fault.message,
                "Success": False,
            }
            return _Answer(200, _json(doc), request_id=request_id)
        if fault.kind == "http_status":
            html = f"<html><body><h1>{fault.status}</h1><p>simulated</p></body></html>"
            return _Answer(fault.status, html.encode(), "text/html", request_id)
        if fault.kind == "garbage":
            text = f'{{"RequestId":"{request_id}","Code":"OK","Data":{{"CustSp'
            return _Answer(200, text.encode(), request_id=request_id)
        return _Answer(0, b"", drop=True)

    def _error(self, status: int, code: str, message: str, request_id: str) -> _Answer:
        return _Answer(status, _json(_error_doc(code, message, request_id)), request_id=request_id)

    # --- the control API -------------------------------------------------------------------

    def _handle_control(self, method: str, path: str, query: str, body: bytes) -> _Answer:
        try:
            doc = json.loads(body) if body.strip() else {}
            if not isinstance(doc, dict):
                raise ValueError("the body must be a JSON object")
            result = self._control(method, path, dict(parse_qsl(query)), doc)
        except LookupError:
            return _Answer(404, _json({"error": f"no {method} {path}"}))
        except (ValueError, TypeError) as exc:
            return _Answer(400, _json({"error": str(exc)}))
        return _Answer(200, _json(result))

    def _control(
        self, method: str, path: str, args: dict[str, str], doc: dict[str, Any]
    ) -> dict[str, Any]:
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_sim/calls"):
            return self.summary(args.get("waba_id"), args.get("code"))
        if route == ("GET", "/_sim/bound"):
            return self.bound()
        if route == ("POST", "/_sim/reset"):
            self.reset()
            return {"reset": True}
        if route == ("POST", "/_sim/faults"):
            waba_id = str(doc.get("waba_id") or "")
            if not waba_id:
                raise ValueError('a fault needs "waba_id" ("*" for every WabaId)')
            fault = None if doc.get("kind") in ("clear", "none") else Fault.from_dict(doc)
            if waba_id == "*":
                self.set_default_fault(fault)
            else:
                self.set_fault(waba_id, fault)
            return {"waba_id": waba_id, "fault": fault.description if fault else None}
        if route == ("POST", "/_sim/config"):
            if "qps" in doc:
                self.set_qps(None if doc["qps"] is None else float(doc["qps"]))
            if "latency_ms" in doc or "jitter_ms" in doc:
                self.set_latency(
                    float(doc.get("latency_ms", 0)) / 1000, float(doc.get("jitter_ms", 0)) / 1000
                )
            with self._lock:
                return {
                    "qps": self._qps,
                    "latency_ms": self._latency_s * 1000,
                    "jitter_ms": self._jitter_s * 1000,
                }
        raise LookupError(path)


def _answer_code(fault: Fault | None) -> str:
    if fault is None or fault.kind == "slow":
        return "OK"
    return {
        "error": fault.code,
        "success_false": fault.code,
        "http_status": f"HTTP{fault.status}",
        "garbage": "Garbage",
        "drop": "Dropped",
    }[fault.kind]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: CamsSimulator

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

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the tests and the CLI print what matters."""

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
            self._send(sim._handle_control(self.command, path, query, body))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = sim._handle_rpc(self.command, path, query, headers, body)
        if answer.delay_s > 0 and sim._stopping.wait(answer.delay_s):
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


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground; print one JSON line with the endpoint and key first."""
    parser = argparse.ArgumentParser(
        prog="python -m wababind_local.cams_simulator",
        description="A local CAMS ChatappBindWaba endpoint for wababind.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--qps", type=float, default=10.0, help="per-account quota; 0 = none")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--demo-faults", action="store_true", help="the demo's fault WabaIds")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = CamsSimulator(
        qps=args.qps if args.qps > 0 else None,
        latency_s=args.latency_ms / 1000,
        jitter_s=args.jitter_ms / 1000,
        demo_faults=args.demo_faults,
        host=args.host,
        port=args.port,
    )
    try:
        sim.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr)
        return 1
    try:
        line = {
            "endpoint": sim.endpoint,
            "access_key_id": DEFAULT_KEY.access_key_id,
            "access_key_secret": DEFAULT_KEY.access_key_secret,
        }
        print(json.dumps(line), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
