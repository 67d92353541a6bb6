"""The MQ function: a batch of queue messages → concurrent binds → one outcome each → a summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wababind import applog
from wababind.binder import Invocation
from wababind.errors import INVALID_MESSAGE, InternalError, RetryableBatchError, WababindError
from wababind.events import QueueMessage, parse_mq_event
from wababind.models import parse_bind_request
from wababind.outcome import Lane, Outcome, utcnow
from wababind.runtime import Runtime, fc_request_id, get_runtime, start_invocation
from wababind.sinks.dispatch import Delivery


def mq_handler(event: bytes | str, context: Any) -> str:
    """Returns the JSON summary; raises so that the trigger redelivers: RetryableBatchError,
    ConfigError (naming the variable) or, for anything unexpected, InternalError with the FC
    request id only (logged once, no trace). index.mq_handler raises it without our frames."""
    started = time.monotonic()
    request_id = fc_request_id(context)
    with applog.Scope(FcRequestId=request_id):
        try:
            return _handle(event, context, started)
        except WababindError:
            raise
        except Exception as exc:
            applog.unexpected("unexpected error in the MQ function", exc)
            raise InternalError(
                f"an unexpected error (FC request id {request_id}, see the app log); "
                "redeliver the batch (bound messages will answer duplicate)"
            ) from None


def _handle(event: bytes | str, context: Any, started: float) -> str:
    runtime = get_runtime()
    inv = start_invocation(context, "bulk", started)
    messages = parse_mq_event(event, inv.request_id)
    inv = inv.in_lane(lane_of(event, messages))
    deliveries: list[Delivery] = []

    def bind_one(message: QueueMessage) -> Outcome:
        with applog.Scope(FcRequestId=inv.request_id):  # a pool thread has no context of ours
            outcome = _bind_message(runtime, message, inv)
            deliveries.extend(runtime.dispatcher.deliver(outcome, inv.credentials, inv.finish_by))
            return outcome

    runtime.binder.look_first(inv)  # after a freeze, before the binds run side by side
    workers = max(1, min(runtime.workers, len(messages)))
    with ThreadPoolExecutor(workers, "bind") as pool:
        outcomes = list(pool.map(bind_one, messages))
    runtime.dispatcher.settle(deliveries, inv.finish_by)
    runtime.store.flush_pending()  # FC freezes every thread once this returns

    summary = summarize(outcomes)
    due = sum(1 for o in outcomes if o.steps_due())  # AFTER_BIND steps left for a redelivery
    if summary["Retryable"] or due:
        raise RetryableBatchError(
            f"{summary['Retryable']} of {summary['Total']} messages failed retryably"
            + (f", {due} bound with after-bind steps still due" if due else "")
            + "; redeliver the batch (bound messages will answer duplicate)"
        )
    return json.dumps(
        {**summary, "Outcomes": [o.to_record() for o in outcomes]}, separators=(",", ":")
    )


def lane_of(event: bytes | str, messages: list[QueueMessage]) -> Lane:
    """Interactive for one bind request object (`wababind bind`: a person waits for it); bulk
    for queue events and arrays (`wababind bulk`)."""
    head = event[:64] if isinstance(event, str) else bytes(event[:64]).decode("utf-8", "ignore")
    single = head.lstrip("\ufeff \t\r\n").startswith("{")
    direct = len(messages) == 1 and messages[0].source == "direct"
    return "interactive" if single and direct else "bulk"


def _bind_message(runtime: Runtime, message: QueueMessage, inv: Invocation) -> Outcome:
    if message.error is not None:
        return _invalid(message, inv, message.error)
    request, problems = parse_bind_request(message.body, runtime.policy)
    if request is None:
        detail = "; ".join(f"{p.field}: {p.message} (rule {p.rule})" for p in problems)
        waba_id = message.body.get("WabaId") if isinstance(message.body, dict) else None
        return _invalid(message, inv, detail, waba_id if isinstance(waba_id, str) else None)
    with applog.Scope(WabaId=request.waba_id):
        return runtime.binder.bind(
            request, event_id=message.event_id, source=message.source, inv=inv
        )


def _invalid(
    message: QueueMessage, inv: Invocation, detail: str, waba_id: str | None = None
) -> Outcome:
    """A message that is not a valid bind request: failed, with no quota wait, in its lane."""
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
        lane=inv.lane,
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
