"""Each WabaId reaches CAMS once: records keyed by WabaId, in memory or shared on Redis.

A record is IN_PROGRESS while one request (its `owner`) binds, then COMPLETED (kept for
IDEMPOTENCY_TTL_S, carrying the CustSpaceId) or FAILED (a terminal failure, carrying the event
ids of the requests that met it, kept for the trigger's redelivery horizon: a redelivery of
one of them is answered from it; a new request takes the record over and calls again).
A retryable failure releases the record, so a retry calls CAMS again. An IN_PROGRESS record
expires on its own, so an instance that dies mid-bind blocks its WabaId only that long.

The race this guards against, two instances receiving the same WabaId at once:

    A: claim ✓ (SET NX) ──── CAMS ──── complete(CustSpaceId)
    B:   claim ✗ → record IN_PROGRESS ── waits ── COMPLETED → duplicate (no CAMS call)

Claims are atomic (SET NX on Redis, a lock in memory); changes that depend on the owner
(fail, release) are atomic too (a Lua script), so a late instance whose claim expired cannot
overwrite the record of the one that took over.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import suppress
from enum import Enum
from typing import Any, Literal, NamedTuple, TypeVar

from wababind import applog, redis_errors
from wababind.errors import SharedStoreUnavailable
from wababind.fallback import OnOutage, RedisHealth
from wababind.redis_errors import RedisProblem

T = TypeVar("T")


class RecordStatus(str, Enum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class IdempotencyRecord(NamedTuple):
    """What the store holds for one WabaId: its state, its owner and how it ended (an immutable
    value; a NamedTuple costs less at cold start than a frozen dataclass)."""

    key: str
    status: RecordStatus
    owner: str | None = None
    cust_space_id: str | None = None
    request_id: str | None = None
    code: str | None = None
    message: str | None = None
    after_bind: str | None = None  # JSON: the after-bind steps' results (wababind.after_bind)
    # FAILED: the event ids (trigger message id, webhook-id) whose request failed for good with
    # this record, oldest first. Empty in a record an older version wrote: it answers everyone.
    event_ids: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({**self._asdict(), "status": self.status.value}, separators=(",", ":"))

    def answers(self, event_id: str) -> bool:
        """Whether this record is the outcome of `event_id`'s request (a redelivery of it), not
        only of an earlier request for the same WabaId: a FAILED record answers only the event
        ids that met it (or everyone, when an older version wrote it without them)."""
        if self.status is not RecordStatus.FAILED or not self.event_ids:
            return True
        return event_id in self.event_ids

    @classmethod
    def from_json(cls, text: str | bytes) -> IdempotencyRecord:
        """Fields a newer version added are ignored (a rolling deploy); a status this version
        does not know reads as IN_PROGRESS: someone holds the WabaId, it is never bound beside."""
        doc = json.loads(text)
        try:
            status = RecordStatus(doc["status"])
        except ValueError:
            status = RecordStatus.IN_PROGRESS
        known = {name: doc[name] for name in cls._fields if name in doc}
        ids = known.get("event_ids")
        known["event_ids"] = (
            tuple(i for i in ids if isinstance(i, str)) if isinstance(ids, list) else ()
        )
        return cls(**{**known, "status": status})


class IdempotencyStore(ABC):
    """What the binder needs; `owner` identifies one bind attempt (request id + random)."""

    @abstractmethod
    def claim(self, key: str, owner: str, in_progress_ttl_s: float) -> IdempotencyRecord | None:
        """Take `key` for `owner` (None) unless a record exists; then return that record."""

    @abstractmethod
    def complete(
        self,
        key: str,
        owner: str,
        *,
        cust_space_id: str | None,
        request_id: str | None,
        ttl_s: float,
    ) -> bool:
        """CAMS bound it: always recorded, whoever holds the claim now (it is the truth).
        True when every instance can see it now; False: kept, shared as soon as possible."""

    @abstractmethod
    def fail(
        self,
        key: str,
        owner: str,
        *,
        code: str,
        message: str,
        ttl_s: float,
        event_ids: tuple[str, ...] = (),
    ) -> None:
        """A terminal failure of the requests `event_ids`, remembered for `ttl_s`, only if
        `owner` still holds the claim."""

    @abstractmethod
    def take_over(
        self, key: str, owner: str, failed: IdempotencyRecord, in_progress_ttl_s: float
    ) -> bool:
        """Claim `key` for `owner` (a new request) in place of the FAILED record `failed`, if
        that record (by its owner) or nothing is there now; False: something else is."""

    @abstractmethod
    def release(self, key: str, owner: str) -> None:
        """Drop `owner`'s claim (a retryable failure): the next request may try again."""

    @abstractmethod
    def get(self, key: str) -> IdempotencyRecord | None: ...

    @abstractmethod
    def record_steps(self, key: str, after_bind: str) -> bool:
        """Keep the after-bind steps' results (JSON) on `key`'s COMPLETED record, whose expiry
        stays. False when not kept (no such record, Redis away): the steps run again later."""

    def flush(self) -> None:  # noqa: B027 - nothing to share for a store in one instance
        """Share now what could not be shared yet; raises SharedStoreUnavailable if it can't."""

    def flush_pending(self) -> int:
        """At the end of an invocation (FC freezes every thread after it): share what is
        pending if Redis answers; never raises. Returns the writes still pending."""
        return 0


class InMemoryStore(IdempotencyStore):
    """Per instance; records expire lazily on read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[IdempotencyRecord, float]] = {}

    def _live(self, key: str, now: float) -> IdempotencyRecord | None:
        entry = self._records.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._records[key]
            return None
        return entry[0]

    def claim(self, key: str, owner: str, in_progress_ttl_s: float) -> IdempotencyRecord | None:
        with self._lock:
            now = time.monotonic()
            existing = self._live(key, now)
            if existing is not None:
                return existing
            record = IdempotencyRecord(key, RecordStatus.IN_PROGRESS, owner)
            self._records[key] = (record, now + in_progress_ttl_s)
            if len(self._records) > 100_000:
                self._sweep(now)
            return None

    def complete(
        self,
        key: str,
        owner: str,
        *,
        cust_space_id: str | None,
        request_id: str | None,
        ttl_s: float,
    ) -> bool:
        record = IdempotencyRecord(
            key, RecordStatus.COMPLETED, owner, cust_space_id=cust_space_id, request_id=request_id
        )
        with self._lock:
            self._records[key] = (record, time.monotonic() + ttl_s)
        return True

    def fail(
        self,
        key: str,
        owner: str,
        *,
        code: str,
        message: str,
        ttl_s: float,
        event_ids: tuple[str, ...] = (),
    ) -> None:
        record = _failed(key, owner, code, message, event_ids)
        with self._lock:
            now = time.monotonic()
            if self._owned(key, owner, now):
                self._records[key] = (record, now + ttl_s)

    def take_over(
        self, key: str, owner: str, failed: IdempotencyRecord, in_progress_ttl_s: float
    ) -> bool:
        with self._lock:
            now = time.monotonic()
            current = self._live(key, now)
            if current is not None and not _is_failure(current, failed):
                return False
            record = IdempotencyRecord(key, RecordStatus.IN_PROGRESS, owner)
            self._records[key] = (record, now + in_progress_ttl_s)
            return True

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            if self._owned(key, owner, time.monotonic()):
                del self._records[key]

    def get(self, key: str) -> IdempotencyRecord | None:
        with self._lock:
            return self._live(key, time.monotonic())

    def record_steps(self, key: str, after_bind: str) -> bool:
        with self._lock:
            entry = self._records.get(key)
            if entry is None or entry[1] <= time.monotonic():
                return False
            if entry[0].status is not RecordStatus.COMPLETED:
                return False
            self._records[key] = (entry[0]._replace(after_bind=after_bind), entry[1])
            return True

    def _owned(self, key: str, owner: str, now: float) -> bool:
        record = self._live(key, now)
        return (
            record is not None
            and record.status is RecordStatus.IN_PROGRESS
            and (record.owner == owner)
        )

    def _sweep(self, now: float) -> None:
        self._records = {k: v for k, v in self._records.items() if v[1] > now}


# KEYS[1] = record; ARGV = owner, new value ('' deletes), ttl ms. Only the claim's owner may
# turn its IN_PROGRESS record into something else.
_IF_OWNER = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local record = cjson.decode(current)
if record['status'] ~= 'IN_PROGRESS' or record['owner'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

# KEYS[1] = record; ARGV[1] = the after-bind steps' JSON: set on a COMPLETED record, its TTL kept
# (no KEEPTTL before Redis 6: PTTL, then SET PX).
_SET_STEPS = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local record = cjson.decode(current)
if record['status'] ~= 'COMPLETED' then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
record['after_bind'] = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(record), 'PX', ttl)
return 1
"""

# KEYS[1] = record; ARGV = the FAILED record's owner, new value, ttl ms. A new request takes
# the WabaId over from a terminal failure only if that failure (or nothing) is still there.
_TAKE_OVER = """
local current = redis.call('GET', KEYS[1])
if current then
  local record = cjson.decode(current)
  if record['status'] ~= 'FAILED' or record['owner'] ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

RELEASE_MEMORY_S = 900.0  # a missed release/claim-undo matters no longer than any claim lives
SYNC_EVERY_S = 1.0  # how often the background sync asks Redis for the writes it missed
SYNC_GIVE_UP_S = 600.0  # the background sync stops then; the next store call starts it again


class _Missed:
    """A write Redis did not take (it was away), replayed as soon as it answers.

    `set` writes `value`; `if_owner` runs _IF_OWNER for `owner` (value '' deletes). One per
    Redis key and owner (see `slot`): a later write there replaces an earlier one, while the
    undo of one attempt's claim never replaces another attempt's. A plain class: a @dataclass
    execs its generated __init__ at import (~0.3 ms of every cold start).
    """

    def __init__(
        self, kind: Literal["set", "if_owner"], expires: float, value: str = "", owner: str = ""
    ) -> None:
        self.kind = kind
        self.expires = expires  # time.monotonic(): past this the write no longer matters
        self.value = value
        self.owner = owner

    def slot(self, redis_key: str) -> tuple[str, str]:
        return redis_key, self.owner

    def queue(self, pipe: Any, if_owner: Any, key: str, now: float) -> None:
        ttl = _ms(self.expires - now)
        if self.kind == "set":
            pipe.set(key, self.value, px=ttl)
        else:
            if_owner(keys=[key], args=[self.owner, self.value, ttl], client=pipe)


class RedisStore(IdempotencyStore):
    """Shared by all instances on Redis, mirrored in this instance's memory.

    While Redis is unreachable (ON_REDIS_OUTAGE=wait, the default) a claim raises
    SharedStoreUnavailable: nothing binds on this instance's memory alone. What this instance
    knows is never forgotten: a completion, failure or release Redis missed is kept and
    replayed first thing when it answers, and the claims this instance holds are re-asserted
    (SET NX, in case Redis came back empty):

        A: claim ✓ ── CAMS ──────── OK: complete ✗ (Redis away) → kept ─┐
        Redis:          ···· away ····                       back ──── replay: COMPLETED ✓
        B (any instance):           claim ✗ SharedStoreUnavailable       claim → duplicate

    A claim sent just before the pause may land when Redis resumes (the command waited in its
    socket): its owner had given up, so the replay deletes it if still that owner's.
    ON_REDIS_OUTAGE=local: the memory alone decides during an outage (may bind twice).
    Which errors are an outage, and which are Redis refusing (OOM, WRONGTYPE: no claim, in
    either mode; a completion kept), is redis_errors' table; `_call` is where it is applied.
    """

    def __init__(
        self,
        client: Any,
        prefix: str = "wababind:",
        *,
        health: RedisHealth | None = None,
        on_outage: OnOutage = "wait",
    ):
        self._client = client
        self._records = prefix + "idem:"
        self._if_owner = client.register_script(_IF_OWNER)
        self._set_steps = client.register_script(_SET_STEPS)
        self._take_over = client.register_script(_TAKE_OVER)
        self._local = InMemoryStore()
        self.health = health or RedisHealth(
            "idempotency", on_outage=on_outage, ping=getattr(client, "ping", None)
        )
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._missed: dict[tuple[str, str], _Missed] = {}  # (Redis key, owner) → write
        self._held: dict[str, tuple[str, float]] = {}  # WabaId → (owner, expires) held in Redis
        self._out_of_sync = False
        self._syncer: threading.Thread | None = None

    def claim(self, key: str, owner: str, in_progress_ttl_s: float) -> IdempotencyRecord | None:
        # The claim is taken here first, then in Redis: threads of this instance never race
        # each other through Redis, and an outage in the middle of a bind still finds this
        # instance's own claims and completions.
        local = self._local.claim(key, owner, in_progress_ttl_s)
        if local is not None:
            return local
        record = IdempotencyRecord(key, RecordStatus.IN_PROGRESS, owner)
        expires = time.monotonic() + in_progress_ttl_s

        def remote() -> IdempotencyRecord | None:
            for _ in range(3):  # the holder may finish or expire between SET and GET
                if self._client.set(
                    self._records + key, record.to_json(), nx=True, px=_ms(in_progress_ttl_s)
                ):
                    self._hold(key, owner, expires)
                    return None
                current = self._client.get(self._records + key)
                if current is not None:
                    holder = IdempotencyRecord.from_json(current)
                    if holder.owner != owner:
                        return holder
                    self._hold(key, owner, expires)  # our own claim, landed late after an outage
                    return None
            return IdempotencyRecord(key, RecordStatus.IN_PROGRESS, None)

        holder = self._call("claim", remote)
        if isinstance(holder, RedisProblem):
            self._claim_unanswered(key, owner, expires, holder)
            return None  # ON_REDIS_OUTAGE=local: this instance's memory decides
        if holder is not None:
            self._local.release(key, owner)
        return holder

    def _claim_unanswered(
        self, key: str, owner: str, expires: float, problem: RedisProblem
    ) -> None:
        """A claim (or take-over) Redis gave no answer to: returns only where this instance's
        memory may decide (away, ON_REDIS_OUTAGE=local); else drops the local claim and raises.
        Refused (OOM, WRONGTYPE…): Redis is there and holds records, so memory never decides."""
        if problem.away:
            if problem.code is None:  # no answer: the SET may still land; undo it then
                self._miss(self._records + key, _Missed("if_owner", expires, owner=owner))
            if not self.health.wait:
                return
        self._local.release(key, owner)
        raise SharedStoreUnavailable(f"{problem.message}; the claim was not taken", problem)

    def complete(
        self,
        key: str,
        owner: str,
        *,
        cust_space_id: str | None,
        request_id: str | None,
        ttl_s: float,
    ) -> bool:
        """Also True when Redis took it; False: kept, replayed when Redis answers (see flush)."""
        self._local.complete(
            key, owner, cust_space_id=cust_space_id, request_id=request_id, ttl_s=ttl_s
        )
        record = IdempotencyRecord(
            key, RecordStatus.COMPLETED, owner, cust_space_id=cust_space_id, request_id=request_id
        )
        missed = _Missed("set", time.monotonic() + ttl_s, record.to_json())
        return self._write(
            "complete",
            key,
            missed,
            lambda: self._client.set(self._records + key, missed.value, px=_ms(ttl_s)),
        )

    def fail(
        self,
        key: str,
        owner: str,
        *,
        code: str,
        message: str,
        ttl_s: float,
        event_ids: tuple[str, ...] = (),
    ) -> None:
        record = _failed(key, owner, code, message, event_ids)
        self._local.fail(key, owner, code=code, message=message, ttl_s=ttl_s, event_ids=event_ids)
        missed = _Missed("if_owner", time.monotonic() + ttl_s, record.to_json(), owner)
        self._write(
            "fail",
            key,
            missed,
            lambda: self._if_owner(
                keys=[self._records + key], args=[owner, missed.value, _ms(ttl_s)]
            ),
        )

    def take_over(
        self, key: str, owner: str, failed: IdempotencyRecord, in_progress_ttl_s: float
    ) -> bool:
        """As claim: here first, then in Redis (atomically, by _TAKE_OVER)."""
        if not self._local.take_over(key, owner, failed, in_progress_ttl_s):
            return False
        record = IdempotencyRecord(key, RecordStatus.IN_PROGRESS, owner)
        expires = time.monotonic() + in_progress_ttl_s

        def remote() -> bool:
            args = [failed.owner or "", record.to_json(), _ms(in_progress_ttl_s)]
            if self._take_over(keys=[self._records + key], args=args):
                self._hold(key, owner, expires)
                return True
            return False

        taken = self._call("take_over", remote)
        if isinstance(taken, RedisProblem):
            self._claim_unanswered(key, owner, expires, taken)
            return True  # ON_REDIS_OUTAGE=local: this instance's memory decides
        if not taken:
            self._local.release(key, owner)
        return taken

    def release(self, key: str, owner: str) -> None:
        self._local.release(key, owner)
        missed = _Missed("if_owner", time.monotonic() + RELEASE_MEMORY_S, owner=owner)
        self._write(
            "release",
            key,
            missed,
            lambda: self._if_owner(keys=[self._records + key], args=[owner, "", 0]),
        )

    def get(self, key: str) -> IdempotencyRecord | None:
        def remote() -> IdempotencyRecord | None:
            current = self._client.get(self._records + key)
            return None if current is None else IdempotencyRecord.from_json(current)

        shared = self._call("get", remote, writes=False)
        if isinstance(shared, RedisProblem):
            known = self._local.get(key)  # this instance's own claim or completion still counts
            if known is None and (self.health.wait or not shared.away):
                raise SharedStoreUnavailable(f"{shared.message}; the record is unknown", shared)
            return known
        return shared if shared is not None else self._local.get(key)

    def record_steps(self, key: str, after_bind: str) -> bool:
        """On Redis and in this instance's memory; while Redis is away only in memory (the
        steps are safe to run again: a sync and the same webhook address)."""
        local = self._local.record_steps(key, after_bind)

        def remote() -> bool:
            return bool(self._set_steps(keys=[self._records + key], args=[after_bind]))

        answer = self._call("record_steps", remote)
        return local if isinstance(answer, RedisProblem) else answer

    def flush(self) -> None:
        """Give Redis what it missed now; raises SharedStoreUnavailable until it takes it."""
        answer = self._call("replay", lambda: None, now=True, writes=self._out_of_sync)
        if isinstance(answer, RedisProblem):
            raise SharedStoreUnavailable(f"{answer.message}; writes kept for later", answer)

    def flush_pending(self) -> int:
        """One bounded try (the client's timeouts), only with writes pending and Redis not in
        its pause after a failure: an invocation never waits on an outage it already knows."""
        with self._lock:
            pending = self._out_of_sync
        if not pending or self.health.active():
            return self.unsynced
        with suppress(SharedStoreUnavailable):
            self.flush()
        return self.unsynced

    @property
    def unsynced(self) -> int:
        """Writes Redis has not taken yet."""
        with self._lock:
            return len(self._missed)

    def _hold(self, key: str, owner: str, expires: float) -> None:
        """Redis has `owner`'s claim: remembered, to re-assert it after an outage."""
        with self._lock:
            self._held[key] = (owner, expires)

    def _write(
        self, operation: str, key: str, missed: _Missed, remote: Callable[[], object]
    ) -> bool:
        """A write that ends this instance's claim: to Redis (True), or kept until Redis takes
        it, whether it was away or refused it (an OOM passes; see _sync for what is dropped)."""
        with self._lock:
            self._held.pop(key, None)
        if isinstance(self._call(operation, remote), RedisProblem):
            self._miss(self._records + key, missed)
            return False
        return True

    def _miss(self, redis_key: str, missed: _Missed) -> None:
        with self._lock:
            self._missed[missed.slot(redis_key)] = missed
            self._out_of_sync = True
            if self._syncer is None or not self._syncer.is_alive():
                self._syncer = threading.Thread(
                    target=self._sync_in_background, name="wababind-redis-sync", daemon=True
                )
                self._syncer.start()

    def _call(
        self, operation: str, remote: Callable[[], T], now: bool = False, writes: bool = True
    ) -> T | RedisProblem:
        """Redis's answer to `remote`, after Redis has taken what it missed, or the problem
        (redis_errors.classify: away, or refused, said as such with its code). During the
        pause after Redis went away it is not asked (unless `now`): the answer is PAUSED.
        Only `writes` (a replay with something to write is one) say Redis is back: a read-only
        replica answers reads."""
        if self.health.active() and not now:
            return PAUSED

        def synced() -> T:
            self._sync()
            return remote()

        answer = redis_errors.call(synced)
        if not isinstance(answer, RedisProblem):
            if writes:
                self.health.succeeded()
        elif answer.away:
            self.health.failed(answer)
            with self._lock:
                self._out_of_sync = True  # re-assert this instance's claims when Redis is back
        else:
            self.health.refused(answer, operation)
        return answer

    def _sync(self) -> None:
        """Replay missed writes and re-assert held claims, before any other Redis call."""
        if not self._out_of_sync:
            return
        with self._sync_lock:
            now = time.monotonic()
            with self._lock:
                if not self._out_of_sync:
                    return
                self._missed = {k: m for k, m in self._missed.items() if m.expires > now}
                self._held = {k: h for k, h in self._held.items() if h[1] > now}
                missed, held = dict(self._missed), dict(self._held)
            pipe = self._client.pipeline(transaction=False)
            for key, (owner, expires) in held.items():
                claim = IdempotencyRecord(key, RecordStatus.IN_PROGRESS, owner).to_json()
                pipe.set(self._records + key, claim, nx=True, px=_ms(expires - now))
            writes: list[_Missed | None] = [None] * len(held)
            for (redis_key, _), write in missed.items():
                write.queue(pipe, self._if_owner, redis_key, now)
                writes.append(write)
            for reply, queued in zip(pipe.execute(raise_on_error=False), writes, strict=True):
                if isinstance(reply, Exception):
                    self._refused_in_replay(reply, queued)
            with self._lock:
                for slot, write in missed.items():
                    if self._missed.get(slot) is write:
                        del self._missed[slot]
                self._out_of_sync = bool(self._missed)
        if missed or held:
            applog.log(
                "INFO",
                "Redis took the writes it missed",
                Component="idempotency",
                Replayed=len(missed),
                ClaimsReasserted=len(held),
            )

    def _refused_in_replay(self, reply: Exception, write: _Missed | None) -> None:
        """One write of the replay failed: raise (keep them all for the next try), unless a
        release or failure that no retry mends (WRONGTYPE, a script error: the key holds no
        record of ours); that one is dropped, said as refused. A completion is never dropped."""
        problem = redis_errors.classify(reply)
        if write is None or write.kind == "set" or problem.away or problem.retryable:
            raise reply
        self.health.refused(problem, "replay")

    def _sync_in_background(self) -> None:
        """Until Redis has what it missed: an idle instance replays it as soon as Redis is back.

        Quietly: FC freezes this thread between invocations, and woken by a thaw it is the
        first to meet the connections Redis closed meanwhile; a failure here never declares
        an outage (the invocation's own calls and its one look decide that), a success ends it.
        """
        give_up = time.monotonic() + SYNC_GIVE_UP_S
        while self._out_of_sync and time.monotonic() < give_up:
            time.sleep(SYNC_EVERY_S)
            with suppress(Exception):  # still away, or a connection the freeze left dead
                self._client.ping()
                self._sync()
                self.health.succeeded()  # only a replay with writes runs here


PAUSED = RedisProblem("away", None, "Paused", "Redis failed moments ago: not asked again yet", True)


def _failed(
    key: str, owner: str, code: str, message: str, event_ids: tuple[str, ...]
) -> IdempotencyRecord:
    return IdempotencyRecord(
        key, RecordStatus.FAILED, owner, code=code, message=message, event_ids=event_ids
    )


def _is_failure(current: IdempotencyRecord, failed: IdempotencyRecord) -> bool:
    """`current` is still the terminal failure `failed` (owners are unique per attempt)."""
    return current.status is RecordStatus.FAILED and current.owner == failed.owner


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def make_store(
    client: Any | None, *, health: RedisHealth | None = None, on_outage: OnOutage = "wait"
) -> IdempotencyStore:
    """Shared on Redis when REDIS_URL is set, in-process otherwise."""
    if client is None:
        return InMemoryStore()
    return RedisStore(client, health=health, on_outage=on_outage)
