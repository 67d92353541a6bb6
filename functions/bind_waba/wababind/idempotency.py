"""Each WabaId reaches CAMS once: records keyed by WabaId, in memory or shared on Redis.

A record is IN_PROGRESS while one request (its `owner`) binds, then COMPLETED (kept for
IDEMPOTENCY_TTL_S, carrying the CustSpaceId) or FAILED (a terminal failure, kept briefly).
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
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, TypeVar

from wababind.fallback import RedisFallback

T = TypeVar("T")


class RecordStatus(str, Enum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class IdempotencyRecord:
    key: str
    status: RecordStatus
    owner: str | None = None
    cust_space_id: str | None = None
    request_id: str | None = None
    code: str | None = None
    message: str | None = None

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "status": self.status.value}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> IdempotencyRecord:
        doc = json.loads(text)
        return cls(**{**doc, "status": RecordStatus(doc["status"])})


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
    ) -> None:
        """CAMS bound it: always recorded, whoever holds the claim now (it is the truth)."""

    @abstractmethod
    def fail(self, key: str, owner: str, *, code: str, message: str, ttl_s: float) -> None:
        """A terminal failure, remembered for `ttl_s`, only if `owner` still holds the claim."""

    @abstractmethod
    def release(self, key: str, owner: str) -> None:
        """Drop `owner`'s claim (a retryable failure): the next request may try again."""

    @abstractmethod
    def get(self, key: str) -> IdempotencyRecord | None: ...

    @abstractmethod
    def seen_before(self, key: str, ttl_s: float) -> bool:
        """Mark `key` (e.g. a webhook-id) as seen; True if it already was (a replay)."""

    @abstractmethod
    def forget(self, key: str) -> None:
        """Unmark a `seen_before` key, so the sender's retry is accepted."""


class InMemoryStore(IdempotencyStore):
    """Per instance; records expire lazily on read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[IdempotencyRecord, float]] = {}
        self._seen: dict[str, float] = {}

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
    ) -> None:
        record = IdempotencyRecord(
            key, RecordStatus.COMPLETED, owner, cust_space_id=cust_space_id, request_id=request_id
        )
        with self._lock:
            self._records[key] = (record, time.monotonic() + ttl_s)

    def fail(self, key: str, owner: str, *, code: str, message: str, ttl_s: float) -> None:
        record = IdempotencyRecord(key, RecordStatus.FAILED, owner, code=code, message=message)
        with self._lock:
            now = time.monotonic()
            if self._owned(key, owner, now):
                self._records[key] = (record, now + ttl_s)

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            if self._owned(key, owner, time.monotonic()):
                del self._records[key]

    def get(self, key: str) -> IdempotencyRecord | None:
        with self._lock:
            return self._live(key, time.monotonic())

    def seen_before(self, key: str, ttl_s: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._seen.get(key, 0.0) > now:
                return True
            self._seen[key] = now + ttl_s
            if len(self._seen) > 100_000:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            return False

    def forget(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)

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


class RedisStore(IdempotencyStore):
    """Shared by all instances, mirrored in this instance's memory. If Redis fails, the
    memory alone decides (logged once) until Redis answers again after a pause: an outage still
    answers the duplicates and in-flight claims this instance has seen. A bind never fails
    because of Redis.
    """

    def __init__(self, client: Any, prefix: str = "wababind:"):
        self._client = client
        self._records = prefix + "idem:"
        self._seen = prefix + "seen:"
        self._if_owner = client.register_script(_IF_OWNER)
        self._local = InMemoryStore()
        self.health = RedisFallback(
            "idempotency",
            "Redis unreachable: idempotency records kept in this instance only",
            "Redis reachable again: shared idempotency resumed",
        )

    def claim(self, key: str, owner: str, in_progress_ttl_s: float) -> IdempotencyRecord | None:
        # The claim is taken here first, then in Redis: threads of this instance never race
        # each other through Redis, and a Redis outage or restart in the middle of a bind
        # still finds this instance's own claim.
        local = self._local.claim(key, owner, in_progress_ttl_s)
        if local is not None:
            return local
        record = IdempotencyRecord(key, RecordStatus.IN_PROGRESS, owner)

        def remote() -> IdempotencyRecord | None:
            for _ in range(3):  # the holder may finish or expire between SET and GET
                if self._client.set(
                    self._records + key, record.to_json(), nx=True, px=_ms(in_progress_ttl_s)
                ):
                    return None
                current = self._client.get(self._records + key)
                if current is not None:
                    return IdempotencyRecord.from_json(current)
            return IdempotencyRecord(key, RecordStatus.IN_PROGRESS, None)

        holder = self._try(remote, lambda: None)
        if holder is not None:
            self._local.release(key, owner)
        return holder

    def complete(
        self,
        key: str,
        owner: str,
        *,
        cust_space_id: str | None,
        request_id: str | None,
        ttl_s: float,
    ) -> None:
        self._local.complete(
            key, owner, cust_space_id=cust_space_id, request_id=request_id, ttl_s=ttl_s
        )
        record = IdempotencyRecord(
            key, RecordStatus.COMPLETED, owner, cust_space_id=cust_space_id, request_id=request_id
        )
        self._try(
            lambda: self._client.set(self._records + key, record.to_json(), px=_ms(ttl_s)),
            lambda: None,
        )

    def fail(self, key: str, owner: str, *, code: str, message: str, ttl_s: float) -> None:
        record = IdempotencyRecord(key, RecordStatus.FAILED, owner, code=code, message=message)
        self._local.fail(key, owner, code=code, message=message, ttl_s=ttl_s)
        self._try(
            lambda: self._if_owner(
                keys=[self._records + key], args=[owner, record.to_json(), _ms(ttl_s)]
            ),
            lambda: None,
        )

    def release(self, key: str, owner: str) -> None:
        self._local.release(key, owner)
        self._try(
            lambda: self._if_owner(keys=[self._records + key], args=[owner, "", 0]),
            lambda: None,
        )

    def get(self, key: str) -> IdempotencyRecord | None:
        def remote() -> IdempotencyRecord | None:
            current = self._client.get(self._records + key)
            return None if current is None else IdempotencyRecord.from_json(current)

        shared: IdempotencyRecord | None = self._try(remote, lambda: None)
        return shared if shared is not None else self._local.get(key)

    def seen_before(self, key: str, ttl_s: float) -> bool:
        return self._try(
            lambda: not self._client.set(self._seen + key, b"1", nx=True, px=_ms(ttl_s)),
            lambda: self._local.seen_before(key, ttl_s),
        )

    def forget(self, key: str) -> None:
        self._local.forget(key)
        self._try(lambda: self._client.delete(self._seen + key), lambda: None)

    def _try(self, remote: Callable[[], T], local: Callable[[], T]) -> T:
        """Redis, or this instance's memory while Redis is failing."""
        if self.health.active():
            return local()
        try:
            result = remote()
        except Exception as exc:  # any Redis failure means: degrade, never fail
            self.health.failed(exc)
            return local()
        self.health.succeeded()
        return result


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def make_store(client: Any | None) -> IdempotencyStore:
    """Shared on Redis when REDIS_URL is set, in-process otherwise."""
    return RedisStore(client) if client is not None else InMemoryStore()
