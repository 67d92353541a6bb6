"""One bind request → one outcome: idempotency, rate-limited CAMS call with retries, record."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar

from wababind import applog
from wababind.cams import Bound, CamsClient, is_throttle
from wababind.credentials import Credentials
from wababind.errors import (
    BIND_IN_PROGRESS,
    DEADLINE_EXCEEDED,
    MISSING_CREDENTIALS,
    SHARED_STORE_UNAVAILABLE,
    BindError,
    SharedStoreUnavailable,
)
from wababind.fallback import RedisHealth
from wababind.idempotency import IdempotencyRecord, IdempotencyStore, RecordStatus
from wababind.models import BindRequest
from wababind.outcome import Lane, Outcome, Source, Status, utcnow
from wababind.ratelimit import RateLimiter

BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0
MIN_CALL_TIME_S = 0.1  # a wait for the store or a claim stops with less than this left
# A terminal failure is remembered as long as the trigger may redeliver its message: a batch
# with any retryable failure is redelivered, with exponential decay retry (s.yaml), for up to
# 1 day (MaximumEventAgeInSeconds 86400; EventBridge, "Retry policies and dead-letter queues":
# https://www.alibabacloud.com/help/en/eventbridge/user-guide/retry-and-dead-letter), so each
# redelivery of its terminal messages is answered without a call. The margin covers the last
# retry interval (512 s) and the invocation that runs it. A new request (a new event id) for
# the WabaId calls CAMS again: the operator fixed the WABA and sends it again.
REDELIVERY_HORIZON_S = 86400.0
FAILURE_MEMORY_MARGIN_S = 1800.0
FAILURE_MEMORY_S = REDELIVERY_HORIZON_S + FAILURE_MEMORY_MARGIN_S
MAX_REMEMBERED_EVENTS = 32  # event ids one FAILED record answers (copies of one WabaId)
# A claim lives until its invocation's deadline + this: always past the end of the call it
# covers (a call starts only when it can end by the deadline: _call_with_retries), and past
# what CAMS may still be doing with an unanswered one, so no call is made beside it.
IN_PROGRESS_MARGIN_S = 5.0
POLL_START_S, POLL_CAP_S = 0.05, 0.5
STORE_PROBE_S = 0.5  # an interactive bind waiting for Redis asks it again after this pause
# A call to a paused Redis gives up after about this long (ratelimit.redis_client: 1-s socket
# timeout, one retry): a waiting bind stops asking when less than that is left.
STORE_CALL_S = 2.0
T = TypeVar("T")
R = TypeVar("R")  # what a CAMS operation answers when it succeeds


class AfterBindSteps(Protocol):
    """What the binder asks of AFTER_BIND's steps (wababind.after_bind.AfterBind)."""

    def run(self, outcome: Outcome, stored: str | None, inv: Invocation) -> None: ...


# Invocation and Settled are plain classes, not @dataclass: a dataclass execs its generated
# __init__ at import (~0.3 ms each, every cold start).
class Invocation:
    """One handler call: its id, its lane, the function's key, and when the binds must be done."""

    def __init__(
        self,
        request_id: str,
        lane: Lane,
        credentials: Credentials | None,
        deadline: float,
        finish_by: float,
    ) -> None:
        self.request_id = request_id
        # interactive: a person waits (HTTP, `wababind bind`); bulk: a queue drains
        self.lane = lane
        self.credentials = credentials
        self.deadline = deadline  # time.monotonic(): binds end by then, leaving the sinks time
        self.finish_by = finish_by  # time.monotonic(): the handler returns by then (FC timeout)

    def in_lane(self, lane: Lane) -> Invocation:
        """The same invocation on `lane`."""
        return Invocation(self.request_id, lane, self.credentials, self.deadline, self.finish_by)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class Settled(Generic[R]):
    """What a CAMS operation ended with: the last result, how many calls it took, how long it
    waited for quota slots, and whether a call went unanswered with no later call settling it
    (CAMS may have bound the WABA: the claim is kept, the next call is the re-check)."""

    def __init__(
        self,
        result: R | BindError,
        attempts: int,
        quota_wait_s: float = 0.0,
        ambiguous: bool = False,
    ) -> None:
        self.result = result
        self.attempts = attempts
        self.quota_wait_s = quota_wait_s
        self.ambiguous = ambiguous


class Binder:
    def __init__(
        self,
        cams: CamsClient,
        limiter: RateLimiter,
        store: IdempotencyStore,
        idempotency_ttl_s: float,
        store_health: RedisHealth | None = None,
    ):
        self.cams = cams  # the FC initializer calls cams.prepare() (wababind.cams)
        self._limiter = limiter
        self._store = store
        self._ttl_s = idempotency_ttl_s
        self._health = store_health  # Redis's health when REDIS_URL is set
        self._looked_lock = threading.Lock()
        self._looked_at = ""  # the last invocation that asked Redis during an outage
        self.after_bind: AfterBindSteps | None = None  # AFTER_BIND (wababind.after_bind)

    def bind(
        self, request: BindRequest, *, event_id: str, source: Source, inv: Invocation
    ) -> Outcome:
        started = utcnow()
        outcome = self._bind(request, inv, event_id)
        outcome.event_id, outcome.source, outcome.started_at = event_id, source, started
        outcome.callback_url, outcome.lane = request.callback_url, inv.lane
        outcome.finished_at = utcnow()
        return outcome

    def _bind(self, request: BindRequest, inv: Invocation, event_id: str) -> Outcome:
        waba_id = request.waba_id
        owner = f"{inv.request_id}/{random.getrandbits(48):012x}"
        replaced: list[IdempotencyRecord] = []  # a FAILED record this new request took over
        try:
            existing = self._shared(
                lambda: self._claim_or_wait(waba_id, owner, inv, event_id, replaced),
                waba_id,
                inv,
                _waits(inv),
            )
        except SharedStoreUnavailable as exc:
            return _failed(request, _store_error(exc), 0)
        if existing is not None:
            outcome = _from_record(request, existing)
            if self.after_bind is not None and existing.status is RecordStatus.COMPLETED:
                self.after_bind.run(outcome, existing.after_bind, inv)  # the steps still due
            return outcome
        earlier = replaced[-1] if replaced else None
        try:
            settled = self._call_with_retries(waba_id, inv)
        except BaseException:
            self._give_back(waba_id, owner, earlier)
            raise
        result, wait_ms = settled.result, settled.quota_wait_s * 1000
        if isinstance(result, Bound):
            shared = self._store.complete(
                waba_id,
                owner,
                cust_space_id=result.cust_space_id,
                request_id=result.request_id,
                ttl_s=self._ttl_s,
            )
            if not shared and self._health is not None and self._health.wait:
                # Redis is away: hold on (within the deadline) until every instance can see it
                self._health.waited(f"{inv.request_id}/{waba_id}")
                with suppress(SharedStoreUnavailable):  # else kept; written when Redis is back
                    self._shared(self._store.flush, waba_id, inv, wait=True)
            outcome = _bound(
                request, "bound", result.cust_space_id, result.request_id, settled.attempts, wait_ms
            )
            if self.after_bind is not None:
                self.after_bind.run(outcome, None, inv)
            return outcome
        if result.retryable:
            if not settled.ambiguous:  # ambiguous: the claim stays ours until it expires
                self._give_back(waba_id, owner, earlier)
        else:
            met = (*(earlier.event_ids if earlier else ()), event_id)[-MAX_REMEMBERED_EVENTS:]
            self._store.fail(
                waba_id,
                owner,
                code=result.code,
                message=result.message,
                ttl_s=FAILURE_MEMORY_S,
                event_ids=met,
            )
        return _failed(request, result, settled.attempts, wait_ms, settled.ambiguous)

    def _give_back(self, waba_id: str, owner: str, earlier: IdempotencyRecord | None) -> None:
        """End our claim without an answer: released, or, when we took it over from a terminal
        failure, that failure put back, so its requests' redeliveries still get it."""
        if earlier is None:
            self._store.release(waba_id, owner)
            return
        self._store.fail(
            waba_id,
            owner,
            code=earlier.code or "Failed",
            message=earlier.message or "",
            ttl_s=FAILURE_MEMORY_S,
            event_ids=earlier.event_ids,
        )

    def _claim_or_wait(
        self,
        waba_id: str,
        owner: str,
        inv: Invocation,
        event_id: str,
        replaced: list[IdempotencyRecord],
    ) -> IdempotencyRecord | None:
        """None: we hold the WabaId. Otherwise the record that decides the outcome.

        Two instances, same WabaId:
            A: claim ✓ ──── CAMS call ──── complete(CustSpaceId)
            B:   claim ✗ (IN_PROGRESS) ── poll … ── COMPLETED → duplicate, no second call
        If A dies, its claim expires at A's deadline + margin, and B (or a redelivery) claims it.
        A FAILED record answers the requests that met it (their redeliveries); a new request
        takes it over (appended to `replaced`) and calls again:
            A: claim ✓ ── CAMS: terminal ── FAILED[A] ── A redelivered → FAILED, no call
            B (new event id):                              take_over ✓ ── CAMS ── …
        """
        delay = POLL_START_S
        while True:
            record = self._store.claim(waba_id, owner, inv.remaining() + IN_PROGRESS_MARGIN_S)
            if record is None:
                return None
            while record is not None and record.status is RecordStatus.IN_PROGRESS:
                if inv.remaining() < delay + MIN_CALL_TIME_S:
                    return record
                time.sleep(delay)
                delay = min(delay * 2, POLL_CAP_S)
                record = self._store.get(waba_id)
            if record is None:
                continue  # released after a retryable failure, or expired: take it ourselves
            if record.answers(event_id):
                return record
            ttl = inv.remaining() + IN_PROGRESS_MARGIN_S
            if self._store.take_over(waba_id, owner, record, ttl):
                replaced.append(record)
                return None
            if inv.remaining() < MIN_CALL_TIME_S:  # another request is taking it over
                return IdempotencyRecord(waba_id, RecordStatus.IN_PROGRESS)
            # changed under us (another request took it over, or it expired): look again

    def _shared(self, step: Callable[[], T], waba_id: str, inv: Invocation, wait: bool) -> T:
        """`step`, which needs Redis. While Redis is away (ON_REDIS_OUTAGE=wait), each
        invocation asks it once more (it may be back: the trigger redelivered later); then a
        bind that may `wait` asks again every STORE_PROBE_S until its deadline, others end.
        A lasting refusal (WRONGTYPE, a password: an operator must act) ends it at once."""
        try:
            return step()
        except SharedStoreUnavailable as exc:
            if self._health is None or exc.lasting:
                raise
            last = exc
        self._health.waited(f"{inv.request_id}/{waba_id}")
        if self._first_look(inv) and self._health.probe():
            answer = _ask(step)
            if not isinstance(answer, SharedStoreUnavailable):
                return answer
            last = answer
        if not wait:
            raise last
        while inv.remaining() > STORE_PROBE_S + STORE_CALL_S + MIN_CALL_TIME_S:
            time.sleep(STORE_PROBE_S)
            if self._health.probe():
                answer = _ask(step)
                if not isinstance(answer, SharedStoreUnavailable):
                    return answer
                last = answer
        raise SharedStoreUnavailable(
            "Redis gave no answer to use before the deadline", last.problem
        )

    def _first_look(self, inv: Invocation) -> bool:
        """True for the first bind of `inv` to meet an outage (it asks Redis for all of them)."""
        with self._looked_lock:
            first, self._looked_at = self._looked_at != inv.request_id, inv.request_id
        return first

    def look_first(self, inv: Invocation) -> None:
        """Before an invocation's binds run side by side: an instance that last saw Redis away
        (FC may have frozen it since, for any time) asks Redis once now, as that invocation's
        one look, so that no bind starts from the memory of an outage that may be over."""
        if self._health is not None and self._health.active() and self._first_look(inv):
            self._health.probe()

    def _call_with_retries(self, waba_id: str, inv: Invocation) -> Settled[Bound]:
        """The bind's ChatappBindWaba calls, on the bind's quota (`call_with_retries`)."""
        return self.call_with_retries(
            waba_id, inv, lambda creds: self.cams.bind_waba(waba_id, creds), self._limiter
        )

    def call_with_retries(
        self,
        waba_id: str,
        inv: Invocation,
        operation: Callable[[Credentials], R | BindError],
        limiter: RateLimiter,
    ) -> Settled[R]:
        """One CAMS `operation` (the bind, or an after-bind step on its own `limiter`), until it
        answers or fails for good. Exponential backoff, full jitter. No call is abandoned: one
        starts only when the invocation can wait it out (connect, then the whole read timeout:
        `call_s`), so a slot is asked for only up to `last_start`, and a backoff that would
        pass it ends the bind:

            start ── quota wait ── call ─ backoff ── call ──┤last_start├── call_s ──┤deadline

        An unanswered call (read timeout, dropped after sending) is ambiguous; the owner's next
        call in this loop is the re-check, and only a later answer settles it."""
        if inv.credentials is None:
            return Settled(
                BindError(
                    MISSING_CREDENTIALS, "no AccessKey in the FC context or the environment", False
                ),
                0,
            )
        self.cams.prepare(inv.credentials)  # nothing slow between a slot and its call
        last_start = inv.deadline - self.cams.call_s
        attempts, waited, ambiguous = 0, 0.0, False
        last: R | BindError = NO_TIME_TO_CALL
        while time.monotonic() <= last_start:
            asked = time.monotonic()
            try:
                slot = self._shared(
                    lambda: limiter.acquire(inv.lane, last_start), waba_id, inv, _waits(inv)
                )
            except SharedStoreUnavailable as exc:
                slot, last = None, _store_error(exc)  # no slot, no shared limiter: no call
            waited += time.monotonic() - asked
            if slot is None or time.monotonic() > last_start:
                break
            attempts += 1
            result = operation(inv.credentials)
            if not isinstance(result, BindError) or not result.retryable:
                return Settled(
                    result, attempts, waited, ambiguous and isinstance(result, BindError)
                )
            last = result
            if result.ambiguous:
                ambiguous = True
                applog.log(
                    "WARNING",
                    "CAMS call without an answer: the WABA may be bound; the next call re-checks",
                    WabaId=waba_id,
                    Code=result.code,
                    Attempt=attempts,
                )
            if is_throttle(result):
                limiter.throttled()
            pause = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1)))
            if time.monotonic() + pause > last_start:
                break
            time.sleep(pause)
        return Settled(last, attempts, waited, ambiguous)


def _ask(step: Callable[[], T]) -> T | SharedStoreUnavailable:
    """`step()`, or the problem it met that may pass (a lasting refusal goes on up)."""
    try:
        return step()
    except SharedStoreUnavailable as exc:
        if exc.lasting:
            raise
        return exc


def _store_error(exc: SharedStoreUnavailable) -> BindError:
    """What the outcome says when Redis gave no answer to use: away, or refused with its code."""
    problem = exc.problem
    if problem is None or problem.away:
        return STORE_AWAY
    return BindError(
        SHARED_STORE_UNAVAILABLE,
        f"the shared store (Redis) refused: {problem.message} ({problem.code or problem.error}); "
        "nothing was sent: retry later",
        True,
    )


def _waits(inv: Invocation) -> bool:
    """Whether a bind waits for Redis during an outage: yes where a person waits for it."""
    return inv.lane == "interactive"


NO_TIME_TO_CALL = BindError(
    DEADLINE_EXCEEDED,
    "no quota slot came with time left for a whole CAMS call (CAMS_TIMEOUT_S) before the "
    "deadline; nothing was sent: retry later",
    True,
)
STORE_AWAY = BindError(
    SHARED_STORE_UNAVAILABLE,
    "the shared store (Redis) did not answer; nothing is bound on one instance's memory "
    "alone: retry later",
    True,
)


def _outcome(
    request: BindRequest, status: Status, code: str, message: str, **fields: Any
) -> Outcome:
    """An outcome for `request`; Binder.bind fills in the event id, source and times.
    (Built in one go: dataclasses.replace costs a webhook bind measurable CPU.)"""
    return Outcome(
        event_id="",
        source="direct",
        waba_id=request.waba_id,
        reference=request.reference,
        status=status,
        code=code,
        message=message,
        **fields,
    )


def _bound(
    request: BindRequest,
    status: Status,
    cust_space_id: str | None,
    request_id: str | None,
    attempts: int,
    quota_wait_ms: float = 0.0,
) -> Outcome:
    message = "bound" if status == "bound" else "already bound; CAMS not called again"
    return _outcome(
        request,
        status,
        "OK",
        message,
        cust_space_id=cust_space_id,
        request_id=request_id,
        attempts=attempts,
        quota_wait_ms=quota_wait_ms,
    )


def _failed(
    request: BindRequest,
    error: BindError,
    attempts: int,
    quota_wait_ms: float = 0.0,
    ambiguous: bool = False,
) -> Outcome:
    return _outcome(
        request,
        "failed",
        error.code,
        error.message,
        retryable=error.retryable,
        attempts=attempts,
        request_id=error.request_id,
        access_denied_detail=error.access_denied_detail,
        quota_wait_ms=quota_wait_ms,
        ambiguous=ambiguous,
    )


def _from_record(request: BindRequest, record: IdempotencyRecord) -> Outcome:
    if record.status is RecordStatus.COMPLETED:
        return _bound(request, "duplicate", record.cust_space_id, record.request_id, 0)
    if record.status is RecordStatus.FAILED:
        remembered = BindError(
            record.code or "Failed", record.message or "a recent bind of this WabaId failed", False
        )
        return _failed(request, remembered, 0)
    in_progress = BindError(BIND_IN_PROGRESS, "another request is binding this WabaId now", True)
    return _failed(request, in_progress, 0)
