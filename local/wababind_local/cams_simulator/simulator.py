"""CamsSimulator, the behaviour: the gateway's checks, the per-account quota, faults, records."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from wababind_local.cams_simulator.answers import (
    ACTION,
    ACTIONS,
    SYNC_ACTION,
    VERSION,
    _access_denied_detail,
    _Answer,
    _error_doc,
    _json,
    _request_id,
)
from wababind_local.cams_simulator.errors import DOCUMENTED_ERRORS, QUOTA_CODE, _Refusal
from wababind_local.cams_simulator.faults import DEMO_FAULTS, Fault, _answer_code
from wababind_local.cams_simulator.server import _Handler, _Server
from wababind_local.cams_simulator.signing import (
    DEFAULT_KEY,
    DEFAULT_STS_KEY,
    SimKey,
    _parse_timestamp,
    sign,
    string_to_sign,
)

TIMESTAMP_TOLERANCE_S = 15 * 60
NONCE_MEMORY_S = 15 * 60
NONCES_PER_KEY = 100_000


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
class CallRecord:
    """One authenticated request of an action, refused by the quota or not; `waba_id` is the
    one bound to the CustSpaceId for an after-bind step."""

    at: float
    access_key_id: str
    action: str
    waba_id: str
    http_status: int
    code: str
    request_id: str
    throttled: bool = False  # refused by the simulator's own quota


def cust_space_id(waba_id: str) -> str:
    """The CustSpaceId CAMS gives a WabaId here: stable, so rebinding answers the same."""
    return "cs-" + hashlib.sha256(f"cams-sim:{waba_id}".encode()).hexdigest()[:20]


def phone_numbers(waba_id: str) -> list[dict[str, str]]:
    """The numbers CAMS syncs for a WabaId here: one or two, stable, the first CONNECTED. The
    fields of ChatappSyncPhoneNumber's PhoneNumbers (a few of them):
    https://www.alibabacloud.com/help/en/chatapp/developer-reference/api-cams-2020-06-06-chatappsyncphonenumber"""
    digest = hashlib.sha256(f"cams-sim-phone:{waba_id}".encode()).digest()
    numbers = []
    for i in range(1 + digest[0] % 2):
        local = int.from_bytes(digest[1 + 4 * i : 5 + 4 * i], "big") % 10_000_000
        numbers.append(
            {
                "PhoneNumber": f"1555{local:07d}",
                "VerifiedName": f"Business {waba_id[-4:]}",
                "Status": "CONNECTED" if i == 0 else "PENDING",
                "QualityRating": "GREEN" if i == 0 else "YELLOW",
                "CodeVerificationStatus": "VERIFIED" if i == 0 else "NOT_VERIFIED",
                "NameStatus": "APPROVED",
                "MessagingLimitTier": "TIER_1K",
            }
        )
    return numbers


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
        idle_timeout_s: float | None = None,
    ) -> None:
        """`idle_timeout_s`: close a keep-alive connection idle that long (default 120 s)."""
        self._keys = {k.access_key_id: k for k in keys}
        self._tokens = {k.security_token: k for k in self._keys.values() if k.security_token}
        if latency_ms is not None:
            latency_s = latency_ms / 1000
        self._initial = (qps, latency_s, jitter_s)
        self._demo_faults = demo_faults
        self._host = host
        self._port = port
        self._clock = clock
        self._idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._qps: float | None = qps
        self._latency_s = latency_s
        self._jitter_s = jitter_s
        self._faults: dict[tuple[str, str], tuple[Fault, int | None]] = {}  # (action, WabaId)
        self._default_fault: tuple[Fault, int | None] | None = None
        self._calls: list[CallRecord] = []
        self._bound: dict[str, str] = {}
        self._spaces: dict[str, str] = {}  # CustSpaceId → WabaId, for the after-bind steps
        self._webhooks: dict[str, dict[str, str]] = {}  # CustSpaceId → UpdateAccountWebhook's
        self._rejected: Counter[str] = Counter()
        self._nonces: dict[str, OrderedDict[str, float]] = {}
        self._quota: dict[tuple[str, str], deque[float]] = {}  # (account, action): a quota each
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> CamsSimulator:
        """Listen and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.sim = self
        if self._idle_timeout_s is not None:
            server.idle_timeout_s = self._idle_timeout_s
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def idle_closed(self) -> int:
        """Keep-alive connections closed because they idled past `idle_timeout_s`."""
        return self._server.idle_closed if self._server is not None else 0

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

    def set_fault(self, waba_id: str, fault: Fault | None, action: str = ACTION) -> None:
        """Install (or with None or times=0, clear) the fault for one WabaId, for the action
        `fault.action` (None clears `action`'s)."""
        with self._lock:
            slot = (fault.action if fault is not None else action, waba_id)
            if fault is None or fault.times == 0:
                self._faults.pop(slot, None)
            else:
                self._faults[slot] = (fault, fault.times)

    def set_default_fault(self, fault: Fault | None) -> None:
        """A fault for every WabaId that has none of its own (times counted across them)."""
        with self._lock:
            cleared = fault is None or fault.times == 0
            self._default_fault = None if fault is None or cleared else (fault, fault.times)

    def set_latency(self, latency_s: float, jitter_s: float = 0.0) -> None:
        """Every call first crosses the gateway: uniform(0, jitter_s) before the quota counts it
        (`--jitter-ms`); then its answer waits latency_s."""
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
                {(f.action, w): (f, f.times) for w, f in DEMO_FAULTS.items()}
                if self._demo_faults
                else {}
            )
            self._default_fault = None
            self._calls = []
            self._bound = {}
            self._spaces = {}
            self._webhooks = {}
            self._rejected = Counter()
            self._nonces = {}
            self._quota = {}

    # --- observation -----------------------------------------------------------------------

    def calls(self) -> list[CallRecord]:
        """Every authenticated request of every action, in arrival order (throttled included)."""
        with self._lock:
            return list(self._calls)

    def count(
        self, waba_id: str | None = None, code: str | None = None, action: str | None = ACTION
    ) -> int:
        """How many calls of `action` (None: of any) (of that WabaId, answered with that code)."""
        with self._lock:
            return sum(
                1
                for c in self._calls
                if (waba_id is None or c.waba_id == waba_id)
                and (code is None or c.code == code)
                and (action is None or c.action == action)
            )

    def webhooks(self) -> dict[str, dict[str, str]]:
        """CustSpaceId → the StatusCallbackUrl, HttpFlag and QueueFlag UpdateAccountWebhook set."""
        with self._lock:
            return {space: dict(hook) for space, hook in self._webhooks.items()}

    def bound(self) -> dict[str, str]:
        """WabaId → CustSpaceId for every WABA bound so far."""
        with self._lock:
            return dict(self._bound)

    def rejected(self) -> dict[str, int]:
        """Requests refused before the action (signature, key, timestamp, ...), by code."""
        with self._lock:
            return dict(self._rejected)

    def max_calls_in_window(
        self, window_s: float = 1.0, code: str | None = None, action: str = ACTION
    ) -> int:
        """Most calls of `action` that passed its quota (optionally: answered with `code`) in any
        window.

        A window is any half-open interval [t, t + window_s) of arrival times; calls refused
        by the simulator's own quota are never counted (they did not use quota).
        """
        with self._lock:
            times = [
                c.at
                for c in self._calls
                if not c.throttled and c.action == action and (code is None or c.code == code)
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
            "by_action": dict(Counter(c.action for c in calls)),
            "throttled": sum(1 for c in calls if c.throttled),
            "bound": bound,
            "rejected": rejected,
            "qps": qps,
            "max_calls_in_window": self.max_calls_in_window(),
        }

    # --- the RPC action --------------------------------------------------------------------

    def handle_rpc(
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
        with self._lock:
            jitter_s = self._jitter_s
        if jitter_s:  # the gateway's delay: the quota counts the call when it arrives after it
            time.sleep(random.uniform(0, jitter_s))
        if params["Action"] == ACTION:
            return self._bind(key, params.get("WabaId", ""), request_id)
        return self._step(key, params, request_id)

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
        if params["Action"] not in ACTIONS:
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
            if not self._take_quota((key.account, ACTION), now):
                status, message = DOCUMENTED_ERRORS[QUOTA_CODE]
                return self._record_error(
                    key, waba_id, request_id, now, QUOTA_CODE, status, message, throttled=True
                )
            delay = self._latency_s
            fault = self._next_fault(waba_id, ACTION)
            answer = self._answer(key, waba_id, request_id, fault)
            answer.delay_s = delay + (fault.seconds if fault is not None else 0.0)
            code = _answer_code(fault)
            self._calls.append(
                CallRecord(now, key.access_key_id, ACTION, waba_id, answer.status, code, request_id)
            )
            if code == "OK":
                self._bound[waba_id] = cust_space_id(waba_id)
                self._spaces[cust_space_id(waba_id)] = waba_id
            return answer

    def _step(self, key: SimKey, params: dict[str, str], request_id: str) -> _Answer:
        """An after-bind step on a CustSpaceId this simulator issued: CustSpaceId required (as
        documented for both), its own quota, the WabaId's fault for the action, then success."""
        action = params["Action"]
        with self._lock:
            now = self._clock()
            space = params.get("CustSpaceId", "")
            waba_id = self._spaces.get(space, "")
            if not space or not waba_id:
                code = "MissingCustSpaceId" if not space else "Unknown.ResourceOwnerId"
                message = (
                    "CustSpaceId is mandatory for this action."
                    if not space
                    else DOCUMENTED_ERRORS[code][1]
                )
                return self._record_error(
                    key, "", request_id, now, code, 400, message, action=action
                )
            if not self._take_quota((key.account, action), now):
                status, message = DOCUMENTED_ERRORS[QUOTA_CODE]
                return self._record_error(
                    key, waba_id, request_id, now, QUOTA_CODE, status, message, True, action
                )
            fault = self._next_fault(waba_id, action)
            if fault is None or fault.kind == "slow":
                doc: dict[str, Any] = {"RequestId": request_id, "Code": "OK", "Message": "SUCCESS"}
                if action == SYNC_ACTION:
                    doc["PhoneNumbers"] = phone_numbers(waba_id)
                else:
                    self._webhooks[space] = {
                        name: params.get(name, "")
                        for name in ("StatusCallbackUrl", "HttpFlag", "QueueFlag")
                    }
                answer = _Answer(200, _json(doc), request_id=request_id)
            else:
                answer = self._fault_answer(key, request_id, fault)
            answer.delay_s = self._latency_s + (fault.seconds if fault is not None else 0.0)
            code = _answer_code(fault)
            self._calls.append(
                CallRecord(now, key.access_key_id, action, waba_id, answer.status, code, request_id)
            )
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
        action: str = ACTION,
    ) -> _Answer:
        self._calls.append(
            CallRecord(now, key.access_key_id, action, waba_id, status, code, request_id, throttled)
        )
        return self._error(status, code, message, request_id)

    def _take_quota(self, account: tuple[str, str], now: float) -> bool:
        """A strict sliding window: at most int(qps) admitted calls in any (now - 1 s, now], per
        account and action (each action has a quota of its own)."""
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

    def _next_fault(self, waba_id: str, action: str) -> Fault | None:
        slot = self._faults.get((action, waba_id))
        if slot is not None:
            fault, left = slot
            if left is not None:
                if left <= 1:
                    del self._faults[(action, waba_id)]
                else:
                    self._faults[(action, waba_id)] = (fault, left - 1)
            return fault
        if self._default_fault is not None and self._default_fault[0].action == action:
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
        return self._fault_answer(key, request_id, fault)

    def _fault_answer(self, key: SimKey, request_id: str, fault: Fault) -> _Answer:
        if fault.kind == "error":
            doc = _error_doc(fault.code, fault.message, request_id)
            if fault.code == "Ram.PermissionDeny":
                doc["AccessDeniedDetail"] = _access_denied_detail(key, fault.action)
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

    def pause(self, seconds: float) -> bool:
        """An answer's latency; True when the simulator stops meanwhile (server.Backend)."""
        return self._stopping.wait(seconds)

    def handle_control(self, method: str, path: str, query: str, body: bytes) -> _Answer:
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
        if route == ("GET", "/_sim/webhooks"):
            return self.webhooks()
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
            action = str(doc.get("action") or ACTION)
            if waba_id == "*":
                self.set_default_fault(fault)
            else:
                self.set_fault(waba_id, fault, action)
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
