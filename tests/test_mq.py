"""The MQ function: concurrent binds inside the quota, one outcome per message, redelivery safe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from index import mq_handler
from tests.fixtures.handlers import OUTCOME_FIELDS, outcome_lines
from wababind.errors import EventFormatError, RetryableBatchError
from wababind_local.cams_simulator import Fault

EVENTS = Path(__file__).resolve().parent.parent / "events"
SOURCES = {
    "rocketmq": "rocketmq",
    "mns-queue": "mns",
    "kafka": "kafka",
    "mns-topic": "mns",
    "direct": "direct",
}


def mq_samples() -> list[Path]:
    return sorted(
        p
        for p in EVENTS.glob("*.json")
        if not p.name.startswith("http")
        and not any(word in p.name for word in ("demo", "duplicate", "invalid"))
    )


def run(payload: Any, context: Any, **kw: Any) -> dict[str, Any]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return json.loads(mq_handler(data, context(**kw)))


@pytest.mark.parametrize("sample", mq_samples(), ids=lambda p: p.name)
def test_every_queue_sample_binds_each_message(wababind_env, context, capsys, sample):
    summary = json.loads(mq_handler(sample.read_bytes(), context()))
    assert summary["Total"] >= 1
    assert summary["Bound"] == summary["Total"], summary
    source = next(v for k, v in SOURCES.items() if sample.name.startswith(k))
    records = outcome_lines(capsys.readouterr().out)
    assert len(records) == summary["Total"]
    assert {r["Source"] for r in records} == {source}
    assert len({r["EventId"] for r in records}) == len(records)
    assert wababind_env.count() == summary["Total"]


def test_an_undecodable_body_is_one_invalid_message_outcome(wababind_env, context, capsys):
    summary = json.loads(
        mq_handler((EVENTS / "mns-queue-invalid-body.json").read_bytes(), context())
    )
    assert (summary["Total"], summary["Failed"], summary["Retryable"]) == (1, 1, 0)
    (record,) = outcome_lines(capsys.readouterr().out)
    assert record["Code"] == "InvalidMessage" and "messageBody" in record["Message"]
    assert wababind_env.count() == 0


def test_a_batch_delivered_twice_is_all_duplicate_the_second_time(wababind_env, context):
    batch = [{"WabaId": f"30000000000000{i:02d}"} for i in range(20)]
    first = run(batch, context)
    second = run(batch, context)
    assert first["Bound"] == 20 and second["Duplicate"] == 20
    assert [o["CustSpaceId"] for o in first["Outcomes"]] == [
        o["CustSpaceId"] for o in second["Outcomes"]
    ]
    assert all(wababind_env.count(waba_id=b["WabaId"]) == 1 for b in batch)


def test_the_same_waba_twice_in_one_batch_makes_one_call(wababind_env, context):
    summary = run([{"WabaId": "3100000000000001"}] * 5, context)
    assert (summary["Bound"], summary["Duplicate"]) == (1, 4)
    assert wababind_env.count(waba_id="3100000000000001") == 1


def test_a_retryable_failure_raises_and_redelivery_finishes_the_batch(
    wababind_env, context, capsys
):
    batch = [{"WabaId": "3200000000000001"}, {"WabaId": "3200000000000002"}]
    wababind_env.set_fault("3200000000000002", Fault.http_status(503))
    with pytest.raises(RetryableBatchError):
        run(batch, context, timeout=3)
    first = {r["WabaId"]: r for r in outcome_lines(capsys.readouterr().out)}
    assert first["3200000000000001"]["Status"] == "bound"
    assert first["3200000000000002"]["Retryable"] is True

    wababind_env.set_fault("3200000000000002", Fault.http_status(503, times=0))
    summary = run(batch, context)
    statuses = {o["WabaId"]: o["Status"] for o in summary["Outcomes"]}
    assert statuses == {"3200000000000001": "duplicate", "3200000000000002": "bound"}
    assert wababind_env.count(waba_id="3200000000000001") == 1


INVALID = [
    ({"WabaId": "12ab"}, "WabaId"),
    ({"WabaId": ""}, "WabaId"),
    ({"WabaId": True}, "WabaId"),
    ({"Reference": "no id"}, "WabaId"),
    ({"WabaId": "1", "Reference": "x" * 129}, "Reference"),
    ({"WabaId": "1", "CallbackUrl": "http://example.com/cb"}, "CallbackUrl"),
]


@pytest.mark.parametrize(("message", "field"), INVALID, ids=[str(m) for m, _ in INVALID])
def test_an_invalid_message_fails_alone_and_is_not_retried(wababind_env, context, message, field):
    summary = run([{"WabaId": "3300000000000001"}, message], context)
    assert (summary["Total"], summary["Bound"], summary["Failed"], summary["Retryable"]) == (
        2,
        1,
        1,
        0,
    )
    bad = summary["Outcomes"][1]
    assert bad["Code"] == "InvalidMessage" and bad["Retryable"] is False and field in bad["Message"]
    wababind_env.reset()


def test_an_empty_batch_answers_an_empty_summary(wababind_env, context):
    assert run([], context)["Total"] == 0


@pytest.mark.parametrize("event", [b'{"hello": "world"}', b"42", b"not json at all", b'"text"'])
def test_an_event_of_no_known_shape_is_rejected_clearly(wababind_env, context, event):
    with pytest.raises(EventFormatError):
        mq_handler(event, context())
    assert wababind_env.count() == 0


def test_every_outcome_has_every_field(wababind_env, context):
    summary = run([{"WabaId": "3400000000000001", "Reference": "ref"}, {"WabaId": "x"}], context)
    for record in summary["Outcomes"]:
        assert set(record) == OUTCOME_FIELDS
        assert record["Kind"] == "WabaBindOutcome" and record["Source"] == "direct"


@pytest.mark.parametrize(("qps", "workers"), [(1, 4), (10, 15), (20, 30), (100, 32)])
def test_batches_bind_with_just_enough_concurrency_to_fill_the_quota(qps, workers):
    from wababind.runtime import batch_workers

    assert batch_workers(qps) == workers
