"""A call whose answer never came may have bound the WABA (SPEC "Calling CAMS"): its outcome says
`Ambiguous: true`, the claim stays with its owner, and the next call for that WabaId is the
deliberate re-check that learns the CustSpaceId (the owner's retry, or whoever claims after the
claim expires), never beside a call still in flight. A request that never went out (connection
refused) is not ambiguous.

"Sent" and "not sent" are told apart by the exception of the SDK's own requests/urllib3, over
real sockets: the simulator answering late or closing the connection, a port nobody listens on.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from index import http_handler
from tests.fixtures.handlers import signed_event
from wababind.idempotency import RecordStatus, RedisStore
from wababind_local.cams_simulator import Fault

READ_TIMEOUT_S = "0.5"  # CAMS_TIMEOUT_S here; the faults below answer later or never
UNANSWERED: dict[str, Callable[..., Fault]] = {
    "read timeout": lambda times=None: Fault.slow(3.0, times=times),
    "dropped after the request was sent": lambda times=None: Fault.drop(times=times),
}
MAX_DELIVERIES = 40  # the retries after a kept claim, bounded (each waits its own deadline)


@pytest.fixture
def shared(wababind_env: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> RedisStore:
    """The functions on a shared Redis, with a short read timeout; the store as another
    instance sees it."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CAMS_TIMEOUT_S", READ_TIMEOUT_S)
    monkeypatch.setenv("CAMS_QPS", "1000")
    wababind_env.set_qps(None)
    return RedisStore(redis.Redis.from_url(redis_url))


def webhook(waba_id: str, context: Any, timeout: int = 2, **kw: Any) -> tuple[int, dict[str, Any]]:
    response = http_handler(signed_event({"WabaId": waba_id}, **kw), context(timeout=timeout))
    return response["statusCode"], json.loads(response["body"])


def app_log(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"Kind":"AppLog"')]


@pytest.mark.parametrize("fault", list(UNANSWERED))
def test_an_unanswered_call_is_ambiguous_keeps_the_claim_and_the_recheck_learns_the_id(
    fault: str,
    shared: RedisStore,
    wababind_env: Any,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim, waba_id = wababind_env, "7300000000000001"
    sim.set_fault(waba_id, UNANSWERED[fault]())
    status, outcome = webhook(waba_id, context)
    assert status == 503
    assert (outcome["Code"], outcome["Retryable"], outcome["Ambiguous"]) == (
        "CamsNoAnswer",
        True,
        True,
    )
    assert outcome["CustSpaceId"] is None and outcome["Attempts"] >= 1
    assert sim.count(waba_id=waba_id) == outcome["Attempts"]
    warned = [r for r in app_log(capsys.readouterr().err) if r.get("WabaId") == waba_id]
    assert warned and all("may be bound" in r["Message"] for r in warned)

    # the claim stays with its owner: not released, so nobody else calls beside it
    record = shared.get(waba_id)
    assert record is not None and record.status is RecordStatus.IN_PROGRESS
    sim.set_fault(waba_id, None)  # CAMS answers again; only the claim's expiry lets a call out
    calls_before = sim.count(waba_id=waba_id)
    blocked = 0
    for number in range(MAX_DELIVERIES):
        status, again = webhook(waba_id, context, msg_id=f"msg_recheck_{number}")
        if again["Code"] not in ("BindInProgress", "DeadlineExceeded"):
            break
        assert (status, again["Attempts"]) == (503, 0)
        assert sim.count(waba_id=waba_id) == calls_before, "called CAMS beside the claim"
        blocked += again["Code"] == "BindInProgress"  # (or it claimed too late for a call)
    assert blocked, "the kept claim should have held off the next request"
    # the claim expired: the next request's call is the re-check, and it learns the CustSpaceId
    assert status == 200 and again["Status"] == "bound", again
    assert again["CustSpaceId"] == sim.bound()[waba_id] and again["Ambiguous"] is False
    assert sim.count(waba_id=waba_id) == calls_before + 1


@pytest.mark.parametrize("fault", list(UNANSWERED))
def test_the_owners_next_call_is_the_recheck_within_its_invocation(
    fault: str, shared: RedisStore, wababind_env: Any, context: Any
) -> None:
    sim, waba_id = wababind_env, "7300000000000002"
    sim.set_fault(waba_id, UNANSWERED[fault](times=1))
    status, outcome = webhook(waba_id, context, timeout=30)
    assert status == 200 and outcome["Status"] == "bound", outcome
    assert (outcome["Attempts"], outcome["Ambiguous"]) == (2, False)  # settled by the re-check
    assert outcome["CustSpaceId"] == sim.bound()[waba_id]
    ok = [c.request_id for c in sim.calls() if c.waba_id == waba_id and c.code == "OK"]
    assert outcome["RequestId"] == ok[-1]


def test_a_concurrent_request_makes_no_call_beside_a_call_in_flight(
    shared: RedisStore, wababind_env: Any, context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's call is in flight (CAMS answers after the read timeout); B, another request for the
    same WabaId, arrives meanwhile: B waits on A's claim and calls nobody."""
    sim, waba_id = wababind_env, "7300000000000003"
    sim.set_fault(waba_id, Fault.slow(3.0))
    results: dict[str, tuple[int, dict[str, Any]]] = {}
    first = threading.Thread(target=lambda: results.update(a=webhook(waba_id, context)))
    first.start()
    try:
        for _ in range(500):  # bounded: until A's call reached CAMS
            if sim.count(waba_id=waba_id):
                break
            threading.Event().wait(0.01)
        assert sim.count(waba_id=waba_id) == 1
        results["b"] = webhook(waba_id, context, msg_id="msg_beside_1")
    finally:
        first.join(30)
    (a_status, a), (b_status, b) = results["a"], results["b"]
    assert (a_status, a["Ambiguous"]) == (503, True)
    assert (b_status, b["Code"], b["Attempts"], b["Ambiguous"]) == (503, "BindInProgress", 0, False)
    assert sim.count(waba_id=waba_id) == a["Attempts"]  # every call was A's


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_not_ambiguous_and_releases_the_claim(
    shared: RedisStore,
    wababind_env: Any,
    context: Any,
    monkeypatch: pytest.MonkeyPatch,
    closed_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAMS_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    waba_id = "7300000000000004"
    status, outcome = webhook(waba_id, context)
    assert status == 503
    assert (outcome["Code"], outcome["Retryable"], outcome["Ambiguous"]) == (
        "CamsUnreachable",
        True,
        False,
    )
    assert outcome["Attempts"] >= 1
    assert shared.get(waba_id) is None  # released: the sender's retry may call at once
    assert not [r for r in app_log(capsys.readouterr().err) if "may be bound" in r["Message"]]
