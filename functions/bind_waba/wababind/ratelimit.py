"""The account's CAMS quota: one call slot every 1/qps seconds, in-process or shared on Redis.

Both limiters are GCRA without burst: a caller reserves the next free slot (the "theoretical
arrival time", TAT), moves TAT one interval on, and sleeps until its slot. A caller whose slot
would fall after its deadline takes nothing and is told so, so it can answer "retry later"
instead of calling CAMS and being throttled.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from wababind.errors import SharedStoreUnavailable
from wababind.fallback import OnOutage, RedisFallback

# Slots are spaced 2 % wider than 1/qps: network jitter can bunch calls that left us evenly
# spaced, and CAMS counts their arrival, not our departure.
SAFETY = 1.02
# Instances sharing Redis sleep on their own clocks after Redis hands out the slot, and their
# calls cross more scheduling jitter: 4 % there (measured by `make bench`: 1.02 let 11 calls
# into one 1-s window at a quota of 10 with 4 processes; 1.04 never did).
SHARED_SAFETY = 1.04
PENALTY_SLOTS = 3  # a System.LimitControl answer pushes the next slot this many intervals out
DEFAULT_KEY = "wababind:ratelimit:cams"


@dataclass(frozen=True)
class Slot:
    """A granted call slot: when it starts, on the granting limiter's clock (s), and how long
    the caller still has to wait for it."""

    at: float
    wait_s: float


def wait_for(slot: Slot | None) -> bool:
    """Sleep until `slot` starts; False if there is no slot."""
    if slot is None:
        return False
    if slot.wait_s > 0:
        time.sleep(slot.wait_s)
    return True


class RateLimiter(ABC):
    @abstractmethod
    def reserve(self, deadline: float) -> Slot | None:
        """Take the next call slot, or None (and no slot taken) if it starts after `deadline`."""

    def acquire(self, deadline: float) -> bool:
        """Wait for a call slot; False (and no slot taken) if none comes before `deadline`."""
        return wait_for(self.reserve(deadline))

    @abstractmethod
    def penalize(self) -> None:
        """CAMS throttled us anyway (another client on the account): slow down."""


class LocalRateLimiter(RateLimiter):
    """Thread-safe GCRA for one process; `deadline` is a time.monotonic() value."""

    def __init__(self, qps: float):
        self.interval = SAFETY / qps
        self._tat = 0.0
        self._lock = threading.Lock()

    def reserve(self, deadline: float) -> Slot | None:
        with self._lock:
            now = time.monotonic()
            at = max(self._tat, now)
            if at > deadline:
                return None
            self._tat = at + self.interval
        return Slot(at, at - now)

    def penalize(self) -> None:
        with self._lock:
            self._tat = max(self._tat, time.monotonic()) + PENALTY_SLOTS * self.interval


# KEYS[1] = TAT key; ARGV = interval µs, longest acceptable wait µs, extra µs (penalty).
# Redis's TIME is the one clock every instance shares. Returns {wait µs, slot start µs},
# or {-1, 0} when the slot would come too late.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[2]) then return {-1, 0} end
local next_tat = tat + interval + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX',
           math.floor((next_tat - now) / 1000) + 1000)
return {wait, tat}
"""


class RedisRateLimiter(RateLimiter):
    """One TAT for all instances, moved atomically by a Lua script on Redis's clock.

    If Redis fails, `on_outage` decides (ON_REDIS_OUTAGE, issue 12):
    - "local": this instance falls back to a LocalRateLimiter at `fallback_share` of the quota
      (others may be doing the same), logs it once, and tries Redis again after a pause;
    - "wait": `reserve()` raises SharedStoreUnavailable, and no slot is guessed from a local
      share; every later reserve() tries Redis again.
    """

    def __init__(
        self,
        client: Any,
        qps: float,
        key: str = DEFAULT_KEY,
        fallback_share: float = 0.25,
        on_outage: OnOutage = "local",
        health: RedisFallback | None = None,
    ):
        self._client = client
        self._key = key
        self._interval_us = int(SHARED_SAFETY / qps * 1_000_000)
        self._script = client.register_script(_ACQUIRE)
        self._on_outage = on_outage
        self._fallback = LocalRateLimiter(qps * fallback_share)
        self.health = health or RedisFallback(  # the runtime shares one with the store
            "ratelimit",
            "Redis unreachable: rate limiting in-process at a conservative share of the quota"
            if on_outage == "local"
            else "Redis unreachable: no quota slots until it answers (ON_REDIS_OUTAGE=wait)",
            "Redis reachable again: shared rate limiting resumed",
        )

    @property
    def degraded(self) -> bool:
        return self.health.degraded

    def _local(self) -> bool:
        """True while the "local" fallback stands in for Redis (the pause after a failure)."""
        return self._on_outage == "local" and self.health.active()

    def _outage(self, exc: Exception) -> None:
        """Record a Redis failure; in "wait" mode, the caller gets no slot but this exception."""
        self.health.failed(exc)
        if self._on_outage == "wait":
            raise SharedStoreUnavailable("Redis does not answer; the shared quota is unknown")

    def reserve(self, deadline: float) -> Slot | None:
        """The slot on Redis's clock; in "local" fallback, on the fallback's monotonic clock."""
        if self._local():
            return self._fallback.reserve(deadline)
        max_wait_us = int((deadline - time.monotonic()) * 1_000_000)
        if max_wait_us < 0:
            return None
        try:
            reply = self._script(keys=[self._key], args=[self._interval_us, max_wait_us, 0])
            wait_us, at_us = (int(v) for v in reply)
        except Exception as exc:  # any Redis failure: degrade (or, in "wait" mode, raise)
            self._outage(exc)
            return self._fallback.reserve(deadline)
        self.health.succeeded()
        if wait_us < 0:
            return None
        return Slot(at_us / 1_000_000, wait_us / 1_000_000)

    def penalize(self) -> None:
        """Never raises: a throttle seen during an outage is remembered locally at most."""
        if self._local():
            self._fallback.penalize()
            return
        try:
            self._script(keys=[self._key], args=[0, 1 << 62, PENALTY_SLOTS * self._interval_us])
        except Exception as exc:  # the next reserve() meets the outage and decides
            self.health.failed(exc)
            self._fallback.penalize()


def make_rate_limiter(
    qps: float,
    client: Any | None,
    on_outage: OnOutage = "local",
    health: RedisFallback | None = None,
) -> RateLimiter:
    """Shared on Redis when REDIS_URL is set, in-process otherwise. `on_outage` is what the
    shared one does when Redis fails: "wait" (raise SharedStoreUnavailable) or "local";
    `health`, Redis's health as the instance's store sees it too (one log line per outage)."""
    if client is None:
        return LocalRateLimiter(qps)
    return RedisRateLimiter(client, qps, on_outage=on_outage, health=health)


def redis_client(url: str) -> Any:
    """A Redis client that fails fast: short timeouts, one quick retry, no long backoff."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )
