"""AFTER_BIND: ChatappSyncPhoneNumber and UpdateAccountWebhook after a bind, against the CAMS
simulator over real HTTP: the order of the calls, a retryable step retried on the next delivery
without a second bind, a terminal step reported on a bind that stays bound, each operation's
quota kept across processes on one redis-server, and AFTER_BIND empty calling what it always
did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from index import http_handler, mq_handler
from tests.fixtures.handlers import OUTCOME_FIELDS, signed_event
from tests.test_duplicates import rocketmq
from wababind.errors import RetryableBatchError
from wababind.runtime import reset_runtime
from wababind_local.cams_simulator import (
    ACTION,
    SYNC_ACTION,
    WEBHOOK_ACTION,
    Fault,
    cust_space_id,
    max_in_window,
    phone_numbers,
)

REPO = Path(__file__).resolve().parent.parent
CHILD_PATH = os.pathsep.join(
    str(p) for p in (REPO / "functions" / "bind_waba", REPO / "local", REPO)
)
HOOK = "https://hooks.example.com/cams-status"
BOTH = {"AFTER_BIND": "sync-phone-numbers,account-webhook", "ACCOUNT_WEBHOOK_URL": HOOK}


def bind(context: Any, waba_id: str, timeout: int = 30) -> tuple[int, dict[str, Any]]:
    """One bind through the HTTP function: (status code, outcome record)."""
    answer = http_handler(signed_event({"WabaId": waba_id}), context(timeout=timeout))
    return answer["statusCode"], json.loads(answer["body"])


def calls_of(sim: Any, waba_id: str) -> list[tuple[str, str]]:
    return [(c.action, c.code) for c in sim.calls() if c.waba_id == waba_id]


@pytest.fixture(params=["memory", "redis"])
def steps_on(
    request: pytest.FixtureRequest, wababind_env: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Both steps on, with this instance's memory or the shared redis-server as the store."""
    for name, value in BOTH.items():
        monkeypatch.setenv(name, value)
    if request.param == "redis":
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    reset_runtime()
    return wababind_env


def test_both_steps_run_in_order_after_the_bind_and_the_outcome_carries_the_numbers(
    steps_on: Any, context: Any
) -> None:
    waba_id = "7100000000000001"
    status, outcome = bind(context, waba_id)
    assert status == 200 and outcome["Status"] == "bound"
    assert calls_of(steps_on, waba_id) == [
        (ACTION, "OK"),
        (SYNC_ACTION, "OK"),
        (WEBHOOK_ACTION, "OK"),
    ]
    assert set(outcome) == OUTCOME_FIELDS
    assert outcome["AfterBind"] == {
        "sync-phone-numbers": {"Code": "OK", "Retryable": False},
        "account-webhook": {"Code": "OK", "Retryable": False},
    }
    expected = [
        {
            k: n[k]
            for k in (
                "PhoneNumber",
                "VerifiedName",
                "Status",
                "QualityRating",
                "CodeVerificationStatus",
            )
        }
        for n in phone_numbers(waba_id)
    ]
    assert outcome["PhoneNumbers"] == expected and expected
    assert steps_on.webhooks()[cust_space_id(waba_id)] == {
        "StatusCallbackUrl": HOOK,
        "HttpFlag": "Y",
        "QueueFlag": "N",
    }
    # A resend (on Redis, to another instance): duplicate, with what is stored, and no call.
    if os.environ.get("REDIS_URL"):
        reset_runtime()
    status, again = bind(context, waba_id)
    assert status == 200 and again["Status"] == "duplicate"
    assert (again["AfterBind"], again["PhoneNumbers"]) == (
        outcome["AfterBind"],
        outcome["PhoneNumbers"],
    )
    assert len(calls_of(steps_on, waba_id)) == 3


def test_a_retryable_step_failure_runs_again_on_the_next_delivery_without_a_second_bind(
    steps_on: Any, context: Any
) -> None:
    waba_id = "7100000000000002"
    # Throttled on every call until cleared: the sync cannot succeed within this invocation.
    steps_on.set_fault(
        waba_id, Fault.error("System.LimitControl", 400, "flow control").on(SYNC_ACTION)
    )
    status, outcome = bind(context, waba_id, timeout=3)
    assert status == 200 and outcome["Status"] == "bound" and outcome["Code"] == "OK"
    assert outcome["AfterBind"]["sync-phone-numbers"]["Retryable"] is True
    assert outcome["AfterBind"]["sync-phone-numbers"]["Code"] == "System.LimitControl"
    # The sync's retries ran to the deadline: the webhook had time for its call, or was left
    # for the next delivery (DeadlineExceeded, retryable).
    assert outcome["AfterBind"]["account-webhook"] in (
        {"Code": "OK", "Retryable": False},
        {"Code": "DeadlineExceeded", "Retryable": True},
    )
    assert outcome["PhoneNumbers"] is None
    synced_before = steps_on.count(waba_id, action=SYNC_ACTION)
    assert synced_before >= 1

    steps_on.set_fault(waba_id, None, SYNC_ACTION)
    status, again = bind(context, waba_id)
    assert status == 200 and again["Status"] == "duplicate"
    assert again["AfterBind"]["sync-phone-numbers"] == {"Code": "OK", "Retryable": False}
    assert again["PhoneNumbers"] and again["PhoneNumbers"][0]["PhoneNumber"]
    assert steps_on.count(waba_id, action=ACTION) == 1  # never bound again
    assert again["AfterBind"]["account-webhook"] == {"Code": "OK", "Retryable": False}
    assert steps_on.count(waba_id, action=WEBHOOK_ACTION) == 1  # a done step is not repeated
    assert steps_on.count(waba_id, action=SYNC_ACTION, code="OK") == 1

    # Everything done: a third delivery makes no call.
    before = len(steps_on.calls())
    status, third = bind(context, waba_id)
    assert third["Status"] == "duplicate" and len(steps_on.calls()) == before
    assert third["PhoneNumbers"] == again["PhoneNumbers"]


def test_a_terminal_step_failure_is_reported_and_the_bind_stays_bound(
    steps_on: Any, context: Any
) -> None:
    waba_id = "7100000000000003"
    denied = Fault.error(
        "Ram.PermissionDeny", 400, "You are not authorized to perform the operation."
    )
    steps_on.set_fault(waba_id, denied.on(WEBHOOK_ACTION))
    status, outcome = bind(context, waba_id)
    assert status == 200 and (outcome["Status"], outcome["Code"]) == ("bound", "OK")
    assert outcome["CustSpaceId"] == cust_space_id(waba_id)
    assert outcome["AfterBind"]["account-webhook"] == {
        "Code": "Ram.PermissionDeny",
        "Retryable": False,
    }
    assert outcome["AfterBind"]["sync-phone-numbers"]["Code"] == "OK"
    assert steps_on.count(waba_id, action=WEBHOOK_ACTION) == 1  # terminal: no retry

    status, again = bind(context, waba_id)  # the resend runs nothing: the failure is terminal
    assert again["Status"] == "duplicate"
    assert again["AfterBind"]["account-webhook"]["Code"] == "Ram.PermissionDeny"
    assert steps_on.count(waba_id, action=None) == 3


def test_after_bind_empty_makes_exactly_the_calls_it_made_before(
    wababind_env: Any, context: Any
) -> None:
    waba_id = "7100000000000004"
    status, outcome = bind(context, waba_id)
    assert status == 200 and outcome["Status"] == "bound"
    assert calls_of(wababind_env, waba_id) == [(ACTION, "OK")]
    assert (outcome["AfterBind"], outcome["PhoneNumbers"]) == (None, None)
    status, again = bind(context, waba_id)
    assert again["Status"] == "duplicate" and calls_of(wababind_env, waba_id) == [(ACTION, "OK")]
    assert (again["AfterBind"], again["PhoneNumbers"]) == (None, None)


def test_a_queue_only_webhook_sets_queue_flag_without_a_url(
    wababind_env: Any, context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTER_BIND", "account-webhook")
    monkeypatch.setenv("ACCOUNT_WEBHOOK_QUEUE", "Y")
    reset_runtime()
    waba_id = "7100000000000005"
    status, outcome = bind(context, waba_id)
    assert status == 200
    assert outcome["AfterBind"] == {"account-webhook": {"Code": "OK", "Retryable": False}}
    assert outcome["PhoneNumbers"] is None
    assert wababind_env.webhooks()[cust_space_id(waba_id)] == {
        "StatusCallbackUrl": "",
        "HttpFlag": "N",
        "QueueFlag": "Y",
    }


CHILD = """
import json, sys
from index import mq_handler
from tests.fixtures.handlers import FakeContext, FakeFunction
from wababind.after_bind import STEP_ACTIONS
from wababind.runtime import get_runtime
binder = get_runtime().binder
books = {"ChatappBindWaba": binder._limiter}
books.update({STEP_ACTIONS[s]: book for s, book in binder.after_bind.limiters.items()})
for book in books.values():
    book.sent = []  # each call's send time, on the book's clock (Redis TIME)
batch = json.loads(sys.argv[1])
summary = mq_handler(json.dumps(batch).encode(), FakeContext(function=FakeFunction(timeout=60)))
print(json.dumps({action: book.sent for action, book in books.items()}))
print(summary)
"""


def test_each_operation_keeps_its_own_quota_across_processes_on_one_redis(
    wababind_env: Any, redis_url: str
) -> None:
    """Three instances, bulk batches with both steps, CAMS_QPS=10: on the books' own clock
    (Redis TIME, shared by the instances) no operation sends more than 10 calls in any second,
    and the three operations together do: each has a book of its own. Every step ends OK."""
    wababind_env.set_qps(10)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=CHILD_PATH,
        REDIS_URL=redis_url,
        CAMS_QPS="10",
        AFTER_BIND=BOTH["AFTER_BIND"],
        ACCOUNT_WEBHOOK_URL=HOOK,
    )
    sent: dict[str, list[float]] = {ACTION: [], SYNC_ACTION: [], WEBHOOK_ACTION: []}
    children = []
    for p in range(3):
        batch = [rocketmq(f"quota-{p}-{i}", f"72{p:02d}{i:012d}") for i in range(12)]
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(batch)],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        *_, sends, last = out.strip().splitlines()
        for action, times in json.loads(sends).items():
            sent[action] += times
        summary = json.loads(last)
        assert summary["Bound"] == 12, summary
        assert all(
            o["AfterBind"] and all(s["Code"] == "OK" for s in o["AfterBind"].values())
            for o in summary["Outcomes"]
        )
    for action, times in sent.items():
        assert len(times) >= 36, action  # every call of every bind and step had its slot
        assert max_in_window(times) <= 10, action
        assert wababind_env.count(action=action, code="OK") == 36, action
    everything = [t for times in sent.values() for t in times]
    assert max_in_window(everything) > 10  # one shared book could not do this


def test_mq_outcomes_carry_the_steps(steps_on: Any, context: Any) -> None:
    batch = [rocketmq("mq-steps-1", "7300000000000001")]
    summary = json.loads(mq_handler(json.dumps(batch).encode(), context(timeout=30)))
    (outcome,) = summary["Outcomes"]
    assert outcome["Status"] == "bound" and outcome["Lane"] == "bulk"
    assert set(outcome["AfterBind"]) == {"sync-phone-numbers", "account-webhook"}


def test_a_batch_with_a_step_still_due_is_redelivered_and_the_redelivery_only_runs_it(
    steps_on: Any, context: Any
) -> None:
    waba_id = "7300000000000002"
    batch = json.dumps([rocketmq("mq-steps-2", waba_id)]).encode()
    steps_on.set_fault(waba_id, Fault.error("System.LimitControl", 400, "x").on(SYNC_ACTION))
    with pytest.raises(RetryableBatchError, match="after-bind steps still due"):
        mq_handler(batch, context(timeout=3))
    assert steps_on.count(waba_id) == 1
    steps_on.set_fault(waba_id, None, SYNC_ACTION)
    summary = json.loads(mq_handler(batch, context(timeout=30)))  # the trigger redelivers
    (outcome,) = summary["Outcomes"]
    assert outcome["Status"] == "duplicate" and outcome["PhoneNumbers"]
    assert all(s["Code"] == "OK" for s in outcome["AfterBind"].values())
    assert steps_on.count(waba_id) == 1  # bound once
    assert steps_on.count(waba_id, action=SYNC_ACTION, code="OK") == 1
