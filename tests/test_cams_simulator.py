"""The CAMS simulator, driven by the real SDK (through wababind.cams) and by hand-built requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from wababind.cams import Bound, CamsClient
from wababind.config import parse_cams_endpoint
from wababind.credentials import Credentials
from wababind.errors import BindError
from wababind_local import cams_simulator
from wababind_local.cams_simulator import (
    DEFAULT_KEY,
    DEFAULT_STS_KEY,
    DEMO_FAULTS,
    DOCUMENTED_ERRORS,
    CallRecord,
    CamsSimulator,
    Fault,
    SimKey,
    cust_space_id,
    sign,
    string_to_sign,
)

ROOT = Path(__file__).resolve().parents[1]
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


# --- helpers ---------------------------------------------------------------------------------


def creds(key: SimKey = DEFAULT_KEY, secret: str | None = None) -> Credentials:
    return Credentials(
        key.access_key_id,
        key.access_key_secret if secret is None else secret,
        key.security_token or "",
    )


def client(sim: CamsSimulator, timeout_s: float = 5.0) -> CamsClient:
    return CamsClient(parse_cams_endpoint(sim.endpoint), "ap-southeast-1", timeout_s)


def bind(sim: CamsSimulator, waba_id: str, key: SimKey = DEFAULT_KEY, timeout_s: float = 5.0):
    return client(sim, timeout_s).bind_waba(waba_id, creds(key))


def pe(value: str) -> str:
    return quote(value, safe="~")


def now_stamp(delta: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed(
    key: SimKey = DEFAULT_KEY,
    waba_id: str | None = "8000000000000001",
    *,
    secret: str | None = None,
    method: str = "POST",
    body: dict[str, str] | None = None,
    **overrides: str | None,
) -> dict[str, str]:
    """The query parameters of a request signed like the SDK does (independent code)."""
    params: dict[str, str | None] = {
        "Action": "ChatappBindWaba",
        "Version": "2020-06-06",
        "Format": "JSON",
        "RegionId": "ap-southeast-1",
        "Timestamp": now_stamp(),
        "SignatureMethod": "HMAC-SHA1",
        "SignatureType": "",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "AccessKeyId": key.access_key_id,
        "SecurityToken": key.security_token,
        "WabaId": waba_id,
    }
    params.update(overrides)
    query = {k: v for k, v in params.items() if v is not None}
    everything = {**query, **(body or {})}
    canonical = "&".join(f"{pe(k)}={pe(v)}" for k, v in sorted(everything.items()))
    text = f"{method}&%2F&{pe(canonical)}"
    key_bytes = ((key.access_key_secret if secret is None else secret) + "&").encode()
    digest = hmac.new(key_bytes, text.encode(), hashlib.sha1).digest()
    query["Signature"] = base64.b64encode(digest).decode()
    return query


def send(
    sim: CamsSimulator,
    params: dict[str, str],
    *,
    method: str = "POST",
    body: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, http.client.HTTPMessage, dict[str, Any]]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        payload = urlencode(body, quote_via=quote) if body else None
        conn.request(method, "/?" + urlencode(params, quote_via=quote), payload, headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw)
    finally:
        if own:
            conn.close()


def control(
    sim: CamsSimulator, method: str, path: str, doc: Any = None
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        body = None if doc is None else (doc if isinstance(doc, bytes) else json.dumps(doc))
        conn.request(method, path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked() -> Iterator[tuple[CamsSimulator, FakeClock]]:
    """A simulator of its own whose quota clock the test moves."""
    clock = FakeClock()
    with CamsSimulator(clock=clock) as sim:
        yield sim, clock


# --- the real SDK is accepted ----------------------------------------------------------------


def test_the_sdk_binds_with_a_plain_key(cams_sim):
    result = bind(cams_sim, "8000000000000001")
    assert isinstance(result, Bound)
    assert result.cust_space_id == cust_space_id("8000000000000001")
    assert cams_sim.bound() == {"8000000000000001": result.cust_space_id}
    record = cams_sim.calls()[-1]
    assert isinstance(record, CallRecord)
    assert (record.access_key_id, record.action, record.waba_id) == (
        DEFAULT_KEY.access_key_id,
        "ChatappBindWaba",
        "8000000000000001",
    )
    assert (record.http_status, record.code, record.request_id) == (200, "OK", result.request_id)


def test_the_sdk_binds_with_an_sts_key(cams_sim):
    assert DEFAULT_STS_KEY.access_key_id.startswith("STS.") and DEFAULT_STS_KEY.security_token
    assert isinstance(bind(cams_sim, "8000000000000002", DEFAULT_STS_KEY), Bound)
    assert cams_sim.calls()[-1].access_key_id == DEFAULT_STS_KEY.access_key_id


def test_rebinding_answers_the_same_cust_space_id(cams_sim):
    first, second = bind(cams_sim, "8000000000000003"), bind(cams_sim, "8000000000000003")
    assert isinstance(first, Bound) and isinstance(second, Bound)
    assert first.cust_space_id == second.cust_space_id != cust_space_id("8000000000000004")
    assert cams_sim.count(waba_id="8000000000000003") == 2


def test_the_sdk_with_wabaid_in_the_form_body_is_accepted(cams_sim):
    """The SDK signs form-body parameters too; the simulator reads both query and body."""
    acs = AcsClient(
        DEFAULT_KEY.access_key_id,
        DEFAULT_KEY.access_key_secret,
        "ap-southeast-1",
        auto_retry=False,
        port=cams_sim.port,
    )
    request = CommonRequest(
        domain="127.0.0.1", version="2020-06-06", action_name="ChatappBindWaba", product="cams"
    )
    request.set_protocol_type("http")
    request.set_method("POST")
    request.set_accept_format("JSON")
    request.add_body_params("WabaId", "8000000000000005")
    doc = json.loads(acs.do_action_with_exception(request))
    assert doc["Code"] == "OK" and doc["Success"] is True
    assert doc["Data"]["CustSpaceId"] == cust_space_id("8000000000000005")


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_string_to_sign_and_signature_match_the_sdks_composer(method):
    params = {"WabaId": "1 2*3~4/5+6=7&8", "Name": "ünïcode", "Empty": ""}
    body = {"Extra": "a b*c"}
    url, sdk_text = rpc_signature_composer.get_signed_url(
        dict(params), "AKID", "s3cr+t", "JSON", method, body
    )
    sent = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert string_to_sign(method, {**sent, **body}) == sdk_text
    assert sign(sdk_text, "s3cr+t") == sent["Signature"]


def test_a_raw_request_signed_independently_is_accepted(cams_sim):
    status, headers, doc = send(cams_sim, signed(waba_id="8000000000000006"))
    assert status == 200 and doc["Code"] == "OK" and doc["Success"] is True
    assert headers["x-acs-request-id"] == doc["RequestId"] == doc["RequestId"].upper()


def test_form_body_parameters_are_signed_and_read(cams_sim):
    body = {"WabaId": "8000000000000007"}
    status, _, doc = send(cams_sim, signed(waba_id=None, body=body), body=body)
    assert status == 200 and doc["Data"]["WabaId"] == "8000000000000007"


def test_get_is_signed_with_its_own_method(cams_sim):
    status, _, doc = send(cams_sim, signed(method="GET"), method="GET")
    assert status == 200 and doc["Code"] == "OK"
    status, _, doc = send(cams_sim, signed(method="POST"), method="GET")
    assert (status, doc["Code"]) == (400, "SignatureDoesNotMatch")


def test_keep_alive_serves_many_requests_on_one_connection(cams_sim):
    conn = http.client.HTTPConnection("127.0.0.1", cams_sim.port, timeout=5)
    try:
        for i in range(5):
            status, _, _ = send(cams_sim, signed(waba_id=f"80000000000001{i}"), conn=conn)
            assert status == 200
    finally:
        conn.close()
    assert cams_sim.count(code="OK") == 5


# --- each gateway check ----------------------------------------------------------------------


def test_a_wrong_secret_is_signature_does_not_match(cams_sim):
    result = client(cams_sim).bind_waba("8000000000000010", creds(secret="not-the-secret"))
    assert isinstance(result, BindError)
    assert (result.code, result.http_status, result.retryable) == (
        "SignatureDoesNotMatch",
        400,
        False,
    )
    assert "string to sign" not in result.message  # our client strips CAMS's echo
    status, _, doc = send(cams_sim, signed(secret="not-the-secret"))
    assert status == 400 and set(doc) == ERROR_KEYS
    assert doc["Code"] == "SignatureDoesNotMatch"
    assert doc["Message"].startswith(
        "Specified signature is not matched with our calculation. "
        "server string to sign is:POST&%2F&AccessKeyId%3D"
    )


def test_a_tampered_request_is_signature_does_not_match(cams_sim):
    params = signed(waba_id="8000000000000011")
    params["WabaId"] = "8000000000000012"
    assert send(cams_sim, params)[2]["Code"] == "SignatureDoesNotMatch"
    params = signed()
    good = params["Signature"]
    params["Signature"] = good[:-2] + ("A=" if good[-2] != "A" else "E=")
    assert send(cams_sim, params)[2]["Code"] == "SignatureDoesNotMatch"
    assert cams_sim.count() == 0 and cams_sim.rejected() == {"SignatureDoesNotMatch": 2}


@pytest.mark.parametrize(
    ("stamp", "code"),
    [
        (now_stamp(timedelta(minutes=-20)), "InvalidTimeStamp.Expired"),
        (now_stamp(timedelta(minutes=20)), "InvalidTimeStamp.Expired"),
        ("2026-11-25 10:00:00", "InvalidTimeStamp.Format"),
        ("yesterday", "InvalidTimeStamp.Format"),
    ],
)
def test_a_bad_timestamp_is_refused(cams_sim, stamp, code):
    status, _, doc = send(cams_sim, signed(Timestamp=stamp))
    assert (status, doc["Code"]) == (400, code)


def test_a_timestamp_within_fifteen_minutes_is_accepted(cams_sim):
    assert send(cams_sim, signed(Timestamp=now_stamp(timedelta(minutes=-14))))[0] == 200


def test_a_reused_nonce_is_refused_per_key(cams_sim):
    assert send(cams_sim, signed(SignatureNonce="nonce-1"))[0] == 200
    status, _, doc = send(cams_sim, signed(SignatureNonce="nonce-1"))
    assert (status, doc["Code"]) == (400, "SignatureNonceUsed")
    # another key has its own nonces
    assert send(cams_sim, signed(DEFAULT_STS_KEY, SignatureNonce="nonce-1"))[0] == 200


def test_a_forged_request_does_not_burn_a_nonce(cams_sim):
    assert send(cams_sim, signed(SignatureNonce="nonce-2", secret="x"))[0] == 400
    assert send(cams_sim, signed(SignatureNonce="nonce-2"))[0] == 200


def test_nonce_memory_is_bounded(cams_sim, monkeypatch):
    monkeypatch.setattr(cams_simulator.simulator, "NONCES_PER_KEY", 3)
    for nonce in ("a", "b", "c", "d"):
        assert send(cams_sim, signed(SignatureNonce=nonce))[0] == 200
    assert send(cams_sim, signed(SignatureNonce="a"))[0] == 200  # evicted, oldest first
    assert send(cams_sim, signed(SignatureNonce="d"))[2]["Code"] == "SignatureNonceUsed"


def test_an_sts_key_needs_its_own_token():
    other = SimKey("STS.OtherSimKey", "other-secret", "other-token", account="other")
    with CamsSimulator(keys=(DEFAULT_KEY, DEFAULT_STS_KEY, other)) as sim:
        cases = [
            (signed(DEFAULT_STS_KEY, SecurityToken=None), "MissingSecurityToken"),
            (signed(DEFAULT_STS_KEY, SecurityToken="garbage"), "InvalidSecurityToken.Malformed"),
            (
                signed(DEFAULT_STS_KEY, SecurityToken="other-token"),
                "InvalidSecurityToken.MismatchWithAccessKey",
            ),
        ]
        for params, code in cases:
            status, _, doc = send(sim, params)
            assert (status, doc["Code"]) == (400, code)
        assert send(sim, signed(other))[0] == 200
        assert sim.count() == 1


def test_the_sdk_with_a_wrong_sts_token_is_refused(cams_sim):
    wrong = Credentials(DEFAULT_STS_KEY.access_key_id, DEFAULT_STS_KEY.access_key_secret, "nope")
    result = client(cams_sim).bind_waba("8000000000000013", wrong)
    assert isinstance(result, BindError) and result.code == "InvalidSecurityToken.Malformed"


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"AccessKeyId": "LTAI5tNobodyKnowsMe"}, 404, "InvalidAccessKeyId.NotFound"),
        ({"Action": "GetChatappPhoneNumberSetting"}, 404, "InvalidAction.NotFound"),
        ({"Version": "2017-06-06"}, 400, "InvalidVersion"),
        ({"SignatureMethod": "HMAC-SHA256"}, 400, "InvalidSignatureMethod"),
        ({"SignatureVersion": "2.0"}, 400, "InvalidSignatureVersion"),
        ({"Timestamp": None}, 400, "MissingTimestamp"),
        ({"SignatureNonce": None}, 400, "MissingSignatureNonce"),
        ({"Action": None}, 400, "MissingAction"),
    ],
)
def test_each_gateway_check_answers_the_cams_error_shape(cams_sim, overrides, status, code):
    got_status, headers, doc = send(cams_sim, signed(**overrides))
    assert (got_status, doc["Code"]) == (status, code)
    assert set(doc) == ERROR_KEYS and doc["Message"]
    assert headers["x-acs-request-id"] == doc["RequestId"]
    assert cams_sim.count() == 0 and cams_sim.rejected() == {code: 1}


def test_a_request_without_signature_is_missing_signature(cams_sim):
    params = signed()
    del params["Signature"]
    assert send(cams_sim, params)[2]["Code"] == "MissingSignature"


def test_a_missing_wabaid_reaches_the_action_and_is_refused(cams_sim):
    status, _, doc = send(cams_sim, signed(waba_id=None))
    assert (status, doc["Code"]) == (400, "MissingWabaId")
    assert cams_sim.count(code="MissingWabaId") == 1


# --- the quota ---------------------------------------------------------------------------------


def test_thirty_concurrent_calls_get_exactly_ten_through(clocked):
    sim, _clock = clocked
    cams = client(sim)
    start = threading.Barrier(30)

    def one(i: int) -> Any:
        start.wait(timeout=10)
        return cams.bind_waba(f"81000000000000{i:02d}", creds())

    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(one, range(30)))
    assert sum(isinstance(r, Bound) for r in results) == 10
    refused = [r for r in results if isinstance(r, BindError)]
    assert len(refused) == 20
    assert {(r.code, r.http_status, r.retryable) for r in refused} == {
        ("System.LimitControl", 400, True)
    }
    assert sim.count(code="OK") == 10 and sim.count(code="System.LimitControl") == 20
    assert len(sim.bound()) == 10 and sim.max_calls_in_window() == 10


def test_the_window_slides_and_throttled_calls_use_no_quota(clocked):
    sim, clock = clocked
    codes = [send(sim, signed(waba_id=f"820000000000{i:03d}"))[2]["Code"] for i in range(15)]
    assert codes == ["OK"] * 10 + ["System.LimitControl"] * 5
    clock.now += 0.999
    assert send(sim, signed())[2]["Code"] == "System.LimitControl"
    clock.now += 0.001  # a second after the first ten: their quota is back
    codes = [send(sim, signed(waba_id=f"821000000000{i:03d}"))[2]["Code"] for i in range(11)]
    assert codes == ["OK"] * 10 + ["System.LimitControl"]
    assert sim.max_calls_in_window() == 10
    assert sim.max_calls_in_window(window_s=2.0) == 20
    assert sim.max_calls_in_window(code="System.LimitControl") == 0
    assert [c.throttled for c in sim.calls()].count(True) == 7


def test_keys_of_one_account_share_its_quota_and_other_accounts_have_their_own():
    clock = FakeClock()
    other = SimKey("LTAI5tOtherAccount", "other-secret", account="other")
    with CamsSimulator(keys=(DEFAULT_KEY, DEFAULT_STS_KEY, other), qps=4, clock=clock) as sim:
        codes = [send(sim, signed(DEFAULT_KEY))[2]["Code"] for _ in range(2)]
        codes += [send(sim, signed(DEFAULT_STS_KEY))[2]["Code"] for _ in range(3)]
        assert codes == ["OK"] * 4 + ["System.LimitControl"]
        assert [send(sim, signed(other))[2]["Code"] for _ in range(4)] == ["OK"] * 4


def test_set_qps_none_lifts_the_quota_and_reset_restores_ten(cams_sim):
    cams_sim.set_qps(None)
    assert all(send(cams_sim, signed())[0] == 200 for _ in range(15))
    cams_sim.reset()
    codes = [send(cams_sim, signed())[2]["Code"] for _ in range(11)]
    assert codes.count("OK") <= 10


def test_a_throttled_call_does_not_use_up_a_fault(clocked):
    sim, clock = clocked
    sim.set_qps(1)
    sim.set_fault("8300000000000001", Fault.http_status(503, times=1))
    assert send(sim, signed(waba_id="8300000000000002"))[0] == 200
    assert send(sim, signed(waba_id="8300000000000001"))[2]["Code"] == "System.LimitControl"
    clock.now += 1
    assert bind(sim, "8300000000000001") == BindError(
        "HTTP503", "CAMS answered HTTP 503", True, None, None, 503
    )
    clock.now += 1
    assert isinstance(bind(sim, "8300000000000001"), Bound)


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(DOCUMENTED_ERRORS))
def test_an_error_fault_answers_the_documented_code(cams_sim, code):
    status, message = DOCUMENTED_ERRORS[code]
    cams_sim.set_fault("8400000000000001", Fault.error(code, status, message))
    result = bind(cams_sim, "8400000000000001")
    assert isinstance(result, BindError)
    assert (result.code, result.http_status, result.message) == (code, status, message)
    assert result.request_id and cams_sim.bound() == {}
    assert cams_sim.calls()[-1].code == code


def test_permission_denial_carries_access_denied_detail(cams_sim):
    cams_sim.set_fault("8400000000000002", Fault.error("Ram.PermissionDeny", 400, "denied"))
    status, _, doc = send(cams_sim, signed(DEFAULT_STS_KEY, waba_id="8400000000000002"))
    assert status == 400 and set(doc) == ERROR_KEYS | {"AccessDeniedDetail"}
    detail = doc["AccessDeniedDetail"]
    assert detail["AuthAction"] == "cams:ChatappBindWaba"
    assert detail["NoPermissionType"] == "ImplicitDeny"
    assert detail["AuthPrincipalType"] == "AssumedRoleUser"
    result = bind(cams_sim, "8400000000000002")
    assert isinstance(result, BindError)
    assert "cams:ChatappBindWaba" in (result.access_denied_detail or "")


def test_success_false_is_http_200_and_not_bound(cams_sim):
    cams_sim.set_fault("8400000000000003", Fault.success_false("ERR-FB-001", "Graph says no"))
    status, headers, doc = send(cams_sim, signed(waba_id="8400000000000003"))
    assert status == 200
    assert doc == {
        "RequestId": headers["x-acs-request-id"],
        "Code": "ERR-FB-001",
        "Message": "Graph says no",
        "Success": False,
    }
    assert cams_sim.bound() == {}


def test_http_status_is_a_bare_html_page(cams_sim):
    cams_sim.set_fault("8400000000000004", Fault.http_status(502))
    conn = http.client.HTTPConnection("127.0.0.1", cams_sim.port, timeout=5)
    try:
        conn.request("POST", "/?" + urlencode(signed(waba_id="8400000000000004")))
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 502 and response.headers["Content-Type"] == "text/html"
    assert response.headers["x-acs-request-id"] and not body.startswith(b"{")
    assert cams_sim.calls()[-1].code == "HTTP502"


def test_garbage_is_http_200_without_json(cams_sim):
    cams_sim.set_fault("8400000000000005", Fault.garbage())
    result = bind(cams_sim, "8400000000000005")
    assert isinstance(result, BindError)
    assert (result.code, result.http_status, result.retryable) == ("CamsBadResponse", 200, True)
    assert cams_sim.bound() == {}


def test_slow_answers_ok_late_and_binds_even_when_the_client_gave_up(cams_sim):
    cams_sim.set_fault("8400000000000006", Fault.slow(1.5, times=1))
    result = bind(cams_sim, "8400000000000006", timeout_s=0.3)
    assert isinstance(result, BindError) and (result.code, result.ambiguous) == (
        "CamsNoAnswer",
        True,
    )
    assert "CAMS_TIMEOUT_S" in result.message
    assert "8400000000000006" in cams_sim.bound()  # CAMS did the work; the answer came late
    assert isinstance(bind(cams_sim, "8400000000000006", timeout_s=2), Bound)
    assert cams_sim.count(waba_id="8400000000000006") == 2


def test_slow_waits_then_answers_normally(cams_sim):
    cams_sim.set_fault("8400000000000007", Fault.slow(0.2))
    assert isinstance(bind(cams_sim, "8400000000000007", timeout_s=5), Bound)


def test_drop_closes_a_keep_alive_connection_without_an_answer(cams_sim):
    cams_sim.set_fault("8400000000000008", Fault.drop())
    conn = http.client.HTTPConnection("127.0.0.1", cams_sim.port, timeout=5)
    try:
        assert send(cams_sim, signed(waba_id="8400000000000009"), conn=conn)[0] == 200
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            send(cams_sim, signed(waba_id="8400000000000008"), conn=conn)
    finally:
        conn.close()
    result = bind(cams_sim, "8400000000000008")
    assert isinstance(result, BindError) and (result.code, result.ambiguous) == (
        "CamsNoAnswer",
        True,
    )
    assert cams_sim.count(waba_id="8400000000000008", code="Dropped") == 2


def test_times_n_fires_n_times_then_the_call_after_binds(cams_sim):
    fault = Fault.error("InternalError", 500, "internal", times=2)
    cams_sim.set_fault("8500000000000001", fault)
    codes = [send(cams_sim, signed(waba_id="8500000000000001"))[2]["Code"] for _ in range(3)]
    assert codes == ["InternalError", "InternalError", "OK"]
    assert fault.times == 2  # the fault object keeps what was asked


def test_times_none_fires_forever_and_times_zero_clears(cams_sim):
    cams_sim.set_fault("8500000000000002", Fault.http_status(503))
    assert [bind(cams_sim, "8500000000000002").code for _ in range(4)] == ["HTTP503"] * 4
    cams_sim.set_fault("8500000000000002", Fault.http_status(503, times=0))
    assert isinstance(bind(cams_sim, "8500000000000002"), Bound)


def test_a_fault_affects_only_its_waba_id(cams_sim):
    cams_sim.set_fault("8500000000000003", Fault.drop())
    assert isinstance(bind(cams_sim, "8500000000000004"), Bound)


def test_the_default_fault_covers_waba_ids_without_their_own(cams_sim):
    cams_sim.set_default_fault(Fault.error("ServiceUnavailable", 503, "busy", times=2))
    cams_sim.set_fault("8500000000000005", Fault.success_false("ERR-FB-001", "no"))
    assert bind(cams_sim, "8500000000000005").code == "ERR-FB-001"
    assert bind(cams_sim, "8500000000000006").code == "ServiceUnavailable"
    assert bind(cams_sim, "8500000000000007").code == "ServiceUnavailable"
    assert isinstance(bind(cams_sim, "8500000000000008"), Bound)
    cams_sim.set_default_fault(Fault.garbage())
    cams_sim.set_default_fault(None)
    assert isinstance(bind(cams_sim, "8500000000000009"), Bound)


def test_latency_delays_every_answer(cams_sim):
    cams_sim.set_latency(1.0, jitter_s=0.1)
    result = bind(cams_sim, "8600000000000001", timeout_s=0.2)
    assert isinstance(result, BindError) and result.code == "CamsNoAnswer"
    cams_sim.set_latency(0)
    assert isinstance(bind(cams_sim, "8600000000000001"), Bound)


def test_fault_constructors_validate_and_describe():
    with pytest.raises(ValueError):
        Fault.error("X", 400, "x", times=-1)
    with pytest.raises(ValueError):
        Fault.http_status(42)
    with pytest.raises(ValueError):
        Fault.slow(-1)
    with pytest.raises(ValueError):
        Fault("sideways")
    assert Fault.drop(times=3).times == 3 and Fault.drop().times is None
    assert "every call" in Fault.drop().description
    assert "next 3 calls" in Fault.garbage(times=3).description
    assert str(Fault.http_status(503, times=1)) == Fault.http_status(503, times=1).description


# --- catalog and demo faults ------------------------------------------------------------------


def test_the_catalog_has_the_documented_codes():
    expected = {
        "Ram.PermissionDeny": 400,
        "Product.Unsubscript": 400,
        "Unknown.ResourceOwnerId": 400,
        "System.LimitControl": 400,
        "Throttling.User": 400,
        "ServiceUnavailable": 503,
        "InternalError": 500,
        "999999": 400,
        "ERR-FB-001": 400,
        "ERR-OPERATION-MAAP-0060": 400,
        "ERR-COMMON-001": 500,
        "CHAT.APIError": 500,
    }
    assert {code: DOCUMENTED_ERRORS[code][0] for code in expected} == expected
    assert all(message for _status, message in DOCUMENTED_ERRORS.values())


def test_demo_faults_are_installed_and_reinstalled_on_reset():
    assert set(DEMO_FAULTS) == {f"90000000000000{i}" for i in range(1, 5)}
    assert all(f.description for f in DEMO_FAULTS.values())
    with CamsSimulator(demo_faults=True) as sim:
        for _ in range(2):
            denied = bind(sim, "900000000000001")
            assert denied.code == "Ram.PermissionDeny" and denied.access_denied_detail
            assert bind(sim, "900000000000002").code == "Product.Unsubscript"
            assert bind(sim, "900000000000003").code == "ERR-FB-001"
            assert bind(sim, "900000000000004").code == "HTTP503"
            assert isinstance(bind(sim, "900000000000004"), Bound)
            assert isinstance(bind(sim, "900000000000005"), Bound)
            sim.reset()


def test_the_shared_fixture_starts_clean(cams_sim):
    assert cams_sim.calls() == [] and cams_sim.bound() == {} and cams_sim.rejected() == {}
    assert cams_sim.summary()["qps"] == 10
    assert control(cams_sim, "POST", "/_sim/config", {})[1] == {
        "qps": 10,
        "latency_ms": 0.0,
        "jitter_ms": 0.0,
    }


# --- control API -------------------------------------------------------------------------------


def test_the_control_api_drives_faults_counts_and_reset(cams_sim):
    fault = {"waba_id": "8700000000000001", "kind": "error", "code": "Product.Unsubscript"}
    status, doc = control(cams_sim, "POST", "/_sim/faults", {**fault, "times": 1})
    assert status == 200 and "Product.Unsubscript" in doc["fault"]
    assert bind(cams_sim, "8700000000000001").code == "Product.Unsubscript"
    assert isinstance(bind(cams_sim, "8700000000000001"), Bound)
    control(cams_sim, "POST", "/_sim/faults", {"waba_id": "*", "kind": "http_status"})
    assert bind(cams_sim, "8700000000000002").code == "HTTP503"
    control(cams_sim, "POST", "/_sim/faults", {"waba_id": "*", "kind": "clear"})

    status, doc = control(cams_sim, "GET", "/_sim/calls?waba_id=8700000000000001")
    assert status == 200
    assert (doc["total"], doc["count"], doc["bound"]) == (3, 2, 1)
    assert doc["by_code"] == {"Product.Unsubscript": 1, "OK": 1, "HTTP503": 1}
    assert control(cams_sim, "GET", "/_sim/bound")[1] == {
        "8700000000000001": cust_space_id("8700000000000001")
    }

    assert control(cams_sim, "POST", "/_sim/config", {"qps": None, "latency_ms": 5})[1] == {
        "qps": None,
        "latency_ms": 5.0,
        "jitter_ms": 0.0,
    }
    assert control(cams_sim, "POST", "/_sim/reset")[1] == {"reset": True}
    assert cams_sim.count() == 0 and control(cams_sim, "GET", "/_sim/calls")[1]["qps"] == 10


@pytest.mark.parametrize(
    ("method", "path", "doc", "status"),
    [
        ("POST", "/_sim/faults", {"waba_id": "1", "kind": "sideways"}, 400),
        ("POST", "/_sim/faults", {"kind": "drop"}, 400),
        ("POST", "/_sim/faults", {"waba_id": "1", "kind": "error"}, 400),
        ("POST", "/_sim/faults", b"{not json", 400),
        ("POST", "/_sim/faults", [1, 2], 400),
        ("GET", "/_sim/nothing", None, 404),
        ("GET", "/_sim/reset", None, 404),
    ],
)
def test_the_control_api_refuses_bad_requests(cams_sim, method, path, doc, status):
    got, body = control(cams_sim, method, path, doc)
    assert got == status and body["error"]


# --- lifecycle and CLI -------------------------------------------------------------------------


def test_stop_cuts_keep_alive_connections():
    sim = CamsSimulator().start()
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        assert send(sim, signed(), conn=conn)[0] == 200
        params = signed()
        sim.stop()
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            send(sim, params, conn=conn)
    finally:
        conn.close()


def test_the_cli_prints_its_endpoint_and_serves_until_terminated():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "functions" / "bind_waba"), str(ROOT / "local"), str(ROOT)]
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "wababind_local.cams_simulator", "--qps", "5", "--demo-faults"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = json.loads(lines.get(timeout=30))
        assert line == {
            "endpoint": line["endpoint"],
            "access_key_id": DEFAULT_KEY.access_key_id,
            "access_key_secret": DEFAULT_KEY.access_key_secret,
        }
        assert line["endpoint"].startswith("http://127.0.0.1:")
        endpoint = parse_cams_endpoint(line["endpoint"])
        cams = CamsClient(endpoint, "ap-southeast-1", 5)
        assert isinstance(cams.bind_waba("8800000000000001", creds()), Bound)
        assert cams.bind_waba("900000000000002", creds()).code == "Product.Unsubscript"
        conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
        conn.request("GET", "/_sim/calls")
        summary = json.loads(conn.getresponse().read())
        conn.close()
        assert (summary["total"], summary["bound"], summary["qps"]) == (2, 1, 5.0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    assert proc.stderr is not None and proc.stderr.read() == ""


def test_gateway_jitter_delays_the_moment_the_quota_counts_a_call(cams_sim):
    cams_sim.set_qps(None)
    cams_sim.set_latency(0, jitter_s=0.05)
    client_ = client(cams_sim)
    delays = []
    for n in range(20):
        sent = time.monotonic()  # the simulator's clock is this process's monotonic clock
        assert isinstance(client_.bind_waba(f"86100000000000{n:02d}", creds()), Bound)
        delays.append(cams_sim.calls()[-1].at - sent)
    assert min(delays) >= 0
    assert max(delays) - min(delays) >= 0.005  # random: 20 uniform draws in 0..50 ms


def test_the_quota_is_a_strict_sliding_one_second_window():
    now = [0.0]
    sim = CamsSimulator(qps=2, clock=lambda: now[0]).start()
    try:
        for at, admitted in [(0.0, True), (0.5, True), (0.999, False), (1.0, True), (1.4, False)]:
            now[0] = at
            result = bind(sim, f"86200000000000{int(at * 1000):04d}")
            assert isinstance(result, Bound) is admitted, (at, result)
    finally:
        sim.stop()


def test_an_idle_keep_alive_connection_is_closed_after_idle_timeout_s() -> None:
    """As CAMS's gateway does: a client's pooled connection may be gone when it is reused."""
    sim = CamsSimulator(qps=None, idle_timeout_s=0.3).start()
    try:
        host, port = urlsplit(sim.endpoint).hostname, urlsplit(sim.endpoint).port
        conn = http.client.HTTPConnection(str(host), port, timeout=5)
        conn.request("GET", "/_sim/calls")
        conn.getresponse().read()
        assert sim.idle_closed() == 0
        assert conn.sock is not None
        conn.sock.settimeout(5)
        assert conn.sock.recv(1) == b"", "the server kept the idle connection open"
        assert sim.idle_closed() == 1
        conn.close()
    finally:
        sim.stop()


# --- the after-bind steps (issue 18) ---------------------------------------------------------


def test_the_steps_answer_on_a_cust_space_id_it_issued_with_numbers_from_the_waba(cams_sim):
    from wababind_local.cams_simulator import SYNC_ACTION, WEBHOOK_ACTION, phone_numbers

    cams = client(cams_sim)
    bound = cams.bind_waba("8900000000000001", creds())
    assert isinstance(bound, Bound) and bound.cust_space_id
    synced = cams.call(SYNC_ACTION, {"CustSpaceId": bound.cust_space_id}, creds())
    assert not isinstance(synced, BindError)
    assert synced.doc["PhoneNumbers"] == phone_numbers("8900000000000001")
    hook = {"CustSpaceId": bound.cust_space_id, "HttpFlag": "N", "QueueFlag": "Y"}
    assert not isinstance(cams.call(WEBHOOK_ACTION, hook, creds()), BindError)
    assert cams_sim.webhooks()[bound.cust_space_id]["QueueFlag"] == "Y"
    # what CAMS checks: the CustSpaceId (required, and one of the account's), the signature
    missing = cams.call(SYNC_ACTION, {}, creds())
    unknown = cams.call(SYNC_ACTION, {"CustSpaceId": "cs-never-issued"}, creds())
    forged = cams.call(SYNC_ACTION, {"CustSpaceId": bound.cust_space_id}, creds(secret="x"))
    assert isinstance(missing, BindError) and missing.code == "MissingCustSpaceId"
    assert isinstance(unknown, BindError) and unknown.code == "Unknown.ResourceOwnerId"
    assert isinstance(forged, BindError) and forged.code == "SignatureDoesNotMatch"
    assert cams_sim.count(action=SYNC_ACTION) == 3  # the forged one never reached the action
    assert cams_sim.count() == 1  # the bind's own count is the bind's only


def test_a_steps_fault_and_quota_are_its_own(cams_sim):
    from wababind_local.cams_simulator import SYNC_ACTION

    cams = client(cams_sim)
    waba_id = "8900000000000002"
    bound = cams.bind_waba(waba_id, creds())
    assert isinstance(bound, Bound)
    cams_sim.set_fault(waba_id, Fault.error("System.LimitControl", 400, "x", 1).on(SYNC_ACTION))
    throttled = cams.call(SYNC_ACTION, {"CustSpaceId": str(bound.cust_space_id)}, creds())
    assert isinstance(throttled, BindError) and throttled.retryable
    assert isinstance(cams.bind_waba(waba_id, creds()), Bound)  # the bind has no fault
    # ten syncs in a second pass beside the binds' quota use; the eleventh is refused
    cams_sim.reset()
    for n in range(10):
        assert isinstance(cams.bind_waba(f"89100000000000{n:02d}", creds()), Bound)
    space = cust_space_id("8910000000000000")
    answers = [cams.call(SYNC_ACTION, {"CustSpaceId": space}, creds()) for _ in range(11)]
    codes = [a.code if isinstance(a, BindError) else "OK" for a in answers]
    assert codes[:10] == ["OK"] * 10 and codes[10] == "System.LimitControl"
