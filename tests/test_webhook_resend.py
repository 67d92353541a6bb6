"""A webhook sender resends: the `webhook-id` is its idempotency key (SPEC "HTTP webhook").

Standard Webhooks senders resend a message that got no answer or a failure with the same
`webhook-id`, a new timestamp and a new signature. Every resend here gets the first bind's
answer, never a refusal, and CAMS is called once per WabaId; in one instance's memory and on
a shared redis-server, including one whose replies arrive after the client's timeout.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from index import http_handler
from tests.fixtures.handlers import http_event, signed_headers
from tests.fixtures.redis_proxy import RedisProxy
from wababind.runtime import get_runtime
from wababind_local.cams_simulator import DOCUMENTED_ERRORS, Fault

LATE_S = 1.5  # a held reply arrives after the Redis client's 1-s socket timeout


class Sender:
    """One message as a Standard Webhooks sender keeps it: the body and the id stay, every
    attempt is signed anew with a newer timestamp (within the 5-minute tolerance)."""

    def __init__(self, body: dict[str, Any]):
        self.text = json.dumps(body)
        self.msg_id = f"msg_{uuid.uuid4().hex}"
        self.signatures: list[str] = []

    def attempt(self) -> bytes:
        when = datetime.now(timezone.utc) - timedelta(seconds=240 - 30 * len(self.signatures))
        headers = signed_headers(self.text, msg_id=self.msg_id, when=when)
        assert headers["webhook-signature"] not in self.signatures  # a new signature
        self.signatures.append(headers["webhook-signature"])
        return http_event(self.text, headers)

    def send(self, context: Any, timeout: int = 30) -> tuple[int, dict[str, str], dict[str, Any]]:
        response = http_handler(self.attempt(), context(timeout=timeout))
        return response["statusCode"], response["headers"], json.loads(response["body"])


@pytest.fixture(params=["memory", "redis"])
def store_env(request: pytest.FixtureRequest, wababind_env: Any, monkeypatch: Any) -> Any:
    """The HTTP function with the in-process store, or on the shared test redis-server."""
    if request.param == "redis":
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    return wababind_env


def test_a_resend_after_a_200_answers_duplicate_with_the_cust_space_id(store_env, context):
    sim, sender = store_env, Sender({"WabaId": "1100000000000001", "Reference": "r-1"})
    status, _, first = sender.send(context)
    assert (status, first["Status"]) == (200, "bound")
    for _ in range(2):
        status, _, again = sender.send(context)
        assert (status, again["Status"], again["Attempts"]) == (200, "duplicate", 0)
        assert again["CustSpaceId"] == first["CustSpaceId"]
        assert again["EventId"] == sender.msg_id and again["Reference"] == "r-1"
    assert sim.count(waba_id="1100000000000001") == 1


def test_a_resend_of_the_very_same_request_answers_duplicate(store_env, context):
    """Some senders resend the first attempt as it was (same timestamp and signature): within
    the tolerance that is a resend too."""
    sim, sender = store_env, Sender({"WabaId": "1100000000000006"})
    event = sender.attempt()
    first = json.loads(http_handler(event, context())["body"])
    again = http_handler(event, context())
    assert again["statusCode"] == 200
    assert json.loads(again["body"])["Status"] == "duplicate" and first["Status"] == "bound"
    assert sim.count(waba_id="1100000000000006") == 1


def test_a_resend_after_a_503_binds_once(store_env, context):
    sim, sender = store_env, Sender({"WabaId": "1100000000000002"})
    sim.set_fault("1100000000000002", Fault.http_status(503, times=100))
    status, headers, first = sender.send(context, timeout=3)
    assert status == 503 and headers["Retry-After"].isdigit() and first["Retryable"]
    sim.set_fault("1100000000000002", None)
    status, _, again = sender.send(context)
    assert (status, again["Status"]) == (200, "bound")
    status, _, third = sender.send(context)
    assert (status, third["Status"], third["CustSpaceId"]) == (
        200,
        "duplicate",
        again["CustSpaceId"],
    )
    assert sim.count(waba_id="1100000000000002", code="OK") == 1


def test_a_resend_after_a_502_gets_the_remembered_failure_without_a_call(store_env, context):
    sim, sender = store_env, Sender({"WabaId": "1100000000000003"})
    code = "Product.Unsubscript"
    sim.set_fault("1100000000000003", Fault.error(code, *DOCUMENTED_ERRORS[code]))
    status, _, first = sender.send(context)
    assert (status, first["Code"], first["Retryable"], first["Attempts"]) == (502, code, False, 1)
    status, _, again = sender.send(context)
    assert (status, again["Code"], again["Retryable"], again["Attempts"]) == (502, code, False, 0)
    assert sim.count(waba_id="1100000000000003") == 1


def concurrently(sender: Sender, context: Any, timeout: int = 30) -> tuple[threading.Thread, list]:
    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
    thread = threading.Thread(target=lambda: answers.append(sender.send(context, timeout)))
    thread.start()
    return thread, answers


def wait_for_call(sim: Any, waba_id: str) -> None:
    for _ in range(1000):  # bounded: 10 s
        if sim.count(waba_id=waba_id):
            return
        threading.Event().wait(0.01)
    raise AssertionError("the first attempt never reached CAMS")


def test_a_resend_while_the_first_is_under_way_gets_its_result(store_env, context):
    sim, sender = store_env, Sender({"WabaId": "1100000000000004"})
    sim.set_latency(0.8)  # the first attempt's call is at CAMS when the resend arrives
    first, answers = concurrently(sender, context)
    try:
        wait_for_call(sim, "1100000000000004")
        status, _, again = sender.send(context)
    finally:
        first.join(30)
        sim.set_latency(0)
    [(first_status, _, first_outcome)] = answers
    assert (first_status, first_outcome["Status"]) == (200, "bound")
    assert (status, again["Status"], again["Attempts"]) == (200, "duplicate", 0)
    assert again["CustSpaceId"] == first_outcome["CustSpaceId"]
    assert sim.count(waba_id="1100000000000004") == 1


def test_a_resend_while_the_first_outlasts_its_deadline_gets_503_then_the_result(
    store_env, context, monkeypatch
):
    sim, sender = store_env, Sender({"WabaId": "1100000000000005"})
    monkeypatch.setenv("CAMS_TIMEOUT_S", "5")
    sim.set_latency(2.5)  # longer than the resend's whole 1-s deadline
    first, answers = concurrently(sender, context)
    try:
        wait_for_call(sim, "1100000000000005")
        status, headers, again = sender.send(context, timeout=2)
    finally:
        first.join(30)
        sim.set_latency(0)
    assert (status, again["Code"], again["Retryable"], again["Attempts"]) == (
        503,
        "BindInProgress",
        True,
        0,
    )
    assert headers["Retry-After"].isdigit()
    [(first_status, _, first_outcome)] = answers
    assert first_status == 200
    status, _, last = sender.send(context)  # after Retry-After: the first bind's answer
    assert (status, last["Status"], last["CustSpaceId"]) == (
        200,
        "duplicate",
        first_outcome["CustSpaceId"],
    )
    assert sim.count(waba_id="1100000000000005") == 1


@pytest.fixture
def slow_redis(wababind_env: Any, redis_server: Any, monkeypatch: Any) -> Any:
    """The HTTP function on a redis-server of its own, through a proxy that can hold replies."""
    with RedisProxy(redis_server.port) as proxy:
        monkeypatch.setenv("REDIS_URL", proxy.url)
        yield proxy


def test_a_late_redis_reply_never_turns_a_first_delivery_into_a_refusal(
    slow_redis: RedisProxy, wababind_env: Any, context: Any
) -> None:
    """Each Redis reply of a bind in turn arrives after the client's timeout: redis-py resends
    that command on a new connection and Redis runs it twice (a claim's SET NX then finds the
    claim the first run took). The first delivery still binds, once; its resend is duplicate."""
    proxy, sim = slow_redis, wababind_env
    warm = Sender({"WabaId": "1100000000000100"})
    before = proxy.replies
    assert warm.send(context)[0] == 200  # a warm instance: counts the replies of one bind
    replies = proxy.replies - before
    get_runtime().store.health.retry_after_s = 0.0
    assert replies >= 2, replies  # at least the claim and the completion
    for late in range(replies):
        waba_id = f"11000000000002{late:02d}"
        sender = Sender({"WabaId": waba_id})
        proxy.hold(proxy.replies + late, LATE_S)
        status, _, first = sender.send(context)
        assert (status, first["Status"], first["Attempts"]) == (200, "bound", 1), (late, first)
        status, _, again = sender.send(context)
        assert (status, again["Status"]) == (200, "duplicate"), (late, again)
        assert again["CustSpaceId"] == first["CustSpaceId"]
        assert sim.count(waba_id=waba_id) == 1, late
