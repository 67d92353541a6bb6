"""The MQ function: a batch of queue messages → concurrent binds → one outcome each → a summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wababind.errors import INVALID_MESSAGE, RetryableBatchError
from wababind.events import QueueMessage, parse_mq_event
from wababind.models import parse_bind_request
from wababind.outcome import Outcome, utcnow
from wababind.runtime import Runtime, get_runtime, start_invocation
from wababind.sinks.dispatch import Delivery


def mq_handler(event: bytes | str, context: Any) -> str:
    """Returns the JSON summary; raises RetryableBatchError so the trigger redelivers."""
    started = time.monotonic()
    runtime = get_runtime()
    inv = start_invocation(context, started)
    messages = parse_mq_event(event, inv.request_id)
    deliveries: list[Delivery] = []

    def bind_one(message: QueueMessage) -> Outcome:
        outcome = _bind_message(runtime, message, inv)
        deliveries.extend(runtime.dispatcher.deliver(outcome, inv.credentials, inv.finish_by))
        return outcome

    workers = max(1, min(runtime.workers, len(messages)))
    with ThreadPoolExecutor(workers, "bind") as pool:
        outcomes = list(pool.map(bind_one, messages))
    runtime.dispatcher.settle(deliveries, inv.finish_by)

    summary = summarize(outcomes)
    if summary["Retryable"]:
        raise RetryableBatchError(
            f"{summary['Retryable']} of {summary['Total']} messages failed retryably; "
            "redeliver the batch (bound messages will answer duplicate)"
        )
    return json.dumps(
        {**summary, "Outcomes": [o.to_record() for o in outcomes]}, separators=(",", ":")
    )


def _bind_message(runtime: Runtime, message: QueueMessage, inv: Any) -> Outcome:
    if message.error is not None:
        return _invalid(message, message.error)
    request, problems = parse_bind_request(message.body, runtime.policy)
    if request is None:
        detail = "; ".join(f"{p.field}: {p.message} (rule {p.rule})" for p in problems)
        waba_id = message.body.get("WabaId") if isinstance(message.body, dict) else None
        return _invalid(message, detail, waba_id if isinstance(waba_id, str) else None)
    return runtime.binder.bind(request, event_id=message.event_id, source=message.source, inv=inv)


def _invalid(message: QueueMessage, detail: str, waba_id: str | None = None) -> Outcome:
    now = utcnow()
    return Outcome(
        event_id=message.event_id,
        source=message.source,
        waba_id=waba_id,
        reference=None,
        status="failed",
        code=INVALID_MESSAGE,
        message=detail,
        started_at=now,
        finished_at=now,
    )


def summarize(outcomes: list[Outcome]) -> dict[str, int]:
    statuses = Counter(o.status for o in outcomes)
    return {
        "Total": len(outcomes),
        "Bound": statuses["bound"],
        "Duplicate": statuses["duplicate"],
        "Failed": statuses["failed"],
        "Retryable": sum(1 for o in outcomes if o.status == "failed" and o.retryable),
    }
