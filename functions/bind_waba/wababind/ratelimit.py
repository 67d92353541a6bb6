"""The account's CAMS quota, in two lanes, in-process or shared on Redis.

One timeline of call slots, each `interval` = spacing / qps long; `tat` is the start of the next
free slot. Bulk never books ahead: it books a slot only once it has started; otherwise it gets a
ticket, "come back when slot t starts", the tickets one interval apart. So the booked future
never reaches past now + one interval, and an interactive bind, which books tat at once, waits
at most one interval, whatever the bulk backlog on every instance:

       now
    ────┬─▲──────┬────────┬────────┬────────┬──────► time
     bulk, left  │ inter  │ bulk   │ bulk   │ bulk
                 ▲ tat    ▲ ticket ▲ ticket ▲ ticket    (tickets: promises, not bookings)
    an interactive bind arriving now books `tat`; the first ticket holder comes back, finds
    its slot taken, and queues again at the tail (one more round trip, no slot lost); a holder
    that finds the next slot starting before the following ticket's keeps its place and comes
    back when that slot starts. Every slot interactive leaves free goes to bulk.

While bulk waits (its tickets reach into the future), each booked slot earns interactive `share`
credit and an interactive slot costs one (at most CREDIT_CAP saved): without credit, an
interactive bind takes a ticket too. So bulk keeps at least 1 - share of the slots even under an
interactive flood, and interactive gets every slot it needs below that share.

A caller sleeps until its slot and leaves then. A call may leave up to LATE_TOLERANCE of an
interval after its slot starts (a ticket holder's decision round trip, a late wake-up): a slot
that began that recently is still bookable, and the next one stays one interval after it, so
small delays shift no slot. Waking later than that, a caller leaves its slot empty and books
again (a late call would bunch with the next one at CAMS).

The spacing is learned: each System.LimitControl answer widens it x BACKOFF (once per
BACKOFF_EVERY_S: the throttles of one burst are one signal); after `quiet_s` without one it
narrows x RECOVERY per `recovery_step_s`, down to SPACING_MIN. A throttle costs the retry's slot,
nothing more. On Redis the whole state is one hash, moved by one Lua script per decision on
Redis's clock (TIME), so every instance shares the lanes, the tickets and the learned spacing.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wababind.errors import SharedStoreUnavailable
from wababind.fallback import OnOutage, RedisHealth
from wababind.outcome import Lane

SPACING_START = 1.02  # slot interval = spacing / qps; where a fresh quota starts
SPACING_MIN, SPACING_MAX = 1.01, 2.0
BACKOFF = 1.02  # a throttle widens the spacing this much
BACKOFF_EVERY_S = 1.0  # ... at most once per quota window
RECOVERY = 0.99  # after a quiet period, the spacing narrows this much per step
QUIET_S, RECOVERY_STEP_S = 30.0, 10.0
LATE_TOLERANCE = 0.1  # a call leaves at most this many intervals after its slot starts
EPSILON = 1e-6  # s: float noise, not time
CREDIT_CAP = 2.0  # interactive slots saved up while bulk waits (a burst of two goes at once)
DEFAULT_SHARE = 0.5  # INTERACTIVE_MAX_SHARE: interactive's share of the slots while bulk waits
DEFAULT_KEY = "wababind:quota:cams"


@dataclass(repr=False, eq=False)
class Tuning:
    """The learning's clock constants (tests shorten them)."""

    quiet_s: float = QUIET_S
    recovery_step_s: float = RECOVERY_STEP_S


@dataclass(repr=False, eq=False)
class Decision:
    """One answer of the quota, on its own clock (s): a booked slot starting at `at`, or a ticket
    for the slot expected at `at` (come back then)."""

    booked: bool
    at: float
    now: float
    interval: float

    @property
    def wait_s(self) -> float:
        """Until the slot starts (booked), or until the ticket says come back."""
        return max(0.0, self.at - self.now)


@dataclass(repr=False, eq=False)
class Slot:
    """A granted call slot: its start on the granting limiter's clock, and the interval then."""

    at: float
    interval: float


@dataclass(repr=False, eq=False)
class Book:
    """The quota's state and its two operations, on a clock of seconds. The Lua script below is
    this class line for line; the in-process limiter uses it directly."""

    qps: float
    share: float = DEFAULT_SHARE
    tuning: Tuning = field(default_factory=Tuning)
    tat: float = 0.0
    spacing: float = SPACING_START
    widened_at: float | None = None  # last back-off; quiet periods count from here
    bulk_tail: float = 0.0  # the slot after the last bulk ticket's
    inter_tail: float = 0.0
    credit: float = CREDIT_CAP

    def spacing_at(self, now: float) -> float:
        if self.widened_at is None:
            self.widened_at = now - BACKOFF_EVERY_S
        quiet = now - self.widened_at - self.tuning.quiet_s
        if quiet <= 0:
            return self.spacing
        steps = quiet / self.tuning.recovery_step_s
        return max(SPACING_MIN, self.spacing * RECOVERY**steps)

    def decide(self, now: float, lane: Lane, ticket: float, max_wait: float) -> Decision | None:
        """Book a slot or hand out a ticket; None (nothing taken) if neither fits in max_wait.
        `ticket` is the slot a ticket promised (0: none)."""
        interval = self.spacing_at(now) / self.qps
        recent = self.tat >= now - LATE_TOLERANCE * interval - EPSILON
        slot = self.tat if recent else now  # a slot that began just now is still free to take
        waiting = self.bulk_tail > now
        if not waiting:
            self.credit = CREDIT_CAP
        if lane == "interactive":
            if not waiting or self.credit >= 1:
                return self._book(slot, now, max_wait, interval, 1.0 if waiting else 0.0)
            ticket_at = max(self.inter_tail, slot)
            if ticket_at - now > max_wait:
                return None
            self.inter_tail = ticket_at + interval / self.share
            return Decision(False, ticket_at, now, interval)
        if slot <= now + EPSILON and (ticket > 0 or self.bulk_tail <= slot):
            return self._book(slot, now, max_wait, interval, 0.0)  # started: bulk's to take
        if ticket > 0 and slot < ticket + interval - EPSILON:  # before the next ticket's slot:
            if slot - now > max_wait:  # this holder keeps its place, back when it starts
                return None
            return Decision(False, slot, now, interval)
        ticket_at = max(self.bulk_tail, slot)
        if ticket_at - now > max_wait:
            return None
        self.bulk_tail = ticket_at + interval
        return Decision(False, ticket_at, now, interval)

    def _book(
        self, slot: float, now: float, max_wait: float, interval: float, cost: float
    ) -> Decision | None:
        if slot - now > max_wait:
            return None
        self.tat = slot + interval
        if self.bulk_tail > now:
            self.credit = min(CREDIT_CAP, self.credit + self.share - cost)
        if self.bulk_tail > self.tat:  # new tickets fall on the slots (they move after a gap):
            # the nearest slot, never a ceiling, or a spacing that narrows a little at every
            # decision would push the tail one slot further each time and leave slots empty
            ahead = math.floor((self.bulk_tail - self.tat) / interval + 0.5)
            self.bulk_tail = self.tat + ahead * interval
        return Decision(True, slot, now, interval)

    def throttled(self, now: float) -> None:
        """CAMS answered System.LimitControl: widen the spacing (once per window)."""
        current = self.spacing_at(now)
        assert self.widened_at is not None
        if now - self.widened_at < BACKOFF_EVERY_S:
            return
        self.spacing = min(SPACING_MAX, current * BACKOFF)
        self.widened_at = now


class RateLimiter(ABC):
    """Slots in two lanes; `acquire` = decide, wait, and leave on time (or decide again)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._clock, self._sleep = clock, sleep  # this process's clock (deadlines, sleeping)

    @abstractmethod
    def decide(self, lane: Lane, ticket: float, deadline: float) -> Decision | None:
        """One decision: a booked slot, a ticket, or None (nothing fits before `deadline`).
        `ticket`: the slot a ticket promised this caller (on the limiter's clock), or 0."""

    @abstractmethod
    def throttled(self) -> None:
        """CAMS throttled a call anyway: widen the spacing."""

    def acquire(self, lane: Lane, deadline: float) -> Slot | None:
        """Return at the start of a slot, or None (no slot taken) if none comes by `deadline`."""
        ticket = 0.0
        while True:
            decision = self.decide(lane, ticket, deadline)
            if decision is None:
                return None
            due = self._clock() + decision.wait_s
            if decision.wait_s > 0:
                self._sleep(decision.wait_s)
            if not decision.booked:
                ticket = decision.at
                continue
            if self._clock() - due <= LATE_TOLERANCE * decision.interval:
                return Slot(decision.at, decision.interval)
            ticket = decision.at  # woke too late: this slot stays empty, the next is ours


class LocalRateLimiter(RateLimiter):
    """The Book for one process, behind a lock; its clock is the process's clock."""

    def __init__(
        self,
        qps: float,
        share: float = DEFAULT_SHARE,
        tuning: Tuning | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(clock, sleep)
        self.book = Book(qps, share, tuning or Tuning())
        self._lock = threading.Lock()

    def decide(self, lane: Lane, ticket: float, deadline: float) -> Decision | None:
        with self._lock:
            now = self._clock()
            return self.book.decide(now, lane, ticket, deadline - now)

    def throttled(self) -> None:
        with self._lock:
            self.book.throttled(self._clock())


# Book.decide / Book.throttled on one hash. KEYS[1] = the hash; ARGV = op ("decide" or
# "throttle"), qps, share, quiet_s, recovery_step_s, lane, ticket (its slot, or 0), max_wait.
# Returns {booked (1, 0; -1 = nothing fits), at, now, interval} as strings (Lua numbers would
# come back truncated to integers).
_SCRIPT_BODY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local qps, share = tonumber(ARGV[2]), tonumber(ARGV[3])
local quiet_s, step_s = tonumber(ARGV[4]), tonumber(ARGV[5])
local s = redis.call('HMGET', KEYS[1], 'tat', 'spacing', 'widened_at', 'bulk_tail',
                    'inter_tail', 'credit')
local tat = tonumber(s[1]) or 0
local spacing = tonumber(s[2]) or START
local widened_at = tonumber(s[3]) or (now - EVERY)
local bulk_tail, inter_tail = tonumber(s[4]) or 0, tonumber(s[5]) or 0
local credit = tonumber(s[6]) or CAP

local current = spacing
local quiet = now - widened_at - quiet_s
if quiet > 0 then
  current = math.max(MIN, spacing * math.pow(RECOVERY, quiet / step_s))
end

local function save()
  redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat),
             'spacing', string.format('%.6f', spacing),
             'widened_at', string.format('%.6f', widened_at),
             'bulk_tail', string.format('%.6f', bulk_tail),
             'inter_tail', string.format('%.6f', inter_tail),
             'credit', string.format('%.6f', credit))
  redis.call('EXPIRE', KEYS[1], 3600)
end

if ARGV[1] == 'throttle' then
  if now - widened_at >= EVERY then
    spacing = math.min(MAX, current * BACKOFF)
    widened_at = now
    save()
  end
  return {'0', '0', string.format('%.6f', now), '0'}
end

local lane, ticket, max_wait = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local interval = current / qps
local slot = now
if tat >= now - LATE * interval - EPSILON then slot = tat end
local waiting = bulk_tail > now
if not waiting then credit = CAP end

local function answer(booked, at)
  save()
  return {booked, string.format('%.6f', at), string.format('%.6f', now),
          string.format('%.9f', interval)}
end
local none = {'-1', '0', string.format('%.6f', now), '0'}
local function book(cost)
  if slot - now > max_wait then return none end
  tat = slot + interval
  if bulk_tail > now then credit = math.min(CAP, credit + share - cost) end
  if bulk_tail > tat then
    bulk_tail = tat + math.floor((bulk_tail - tat) / interval + 0.5) * interval
  end
  return answer('1', slot)
end

if lane == 'interactive' then
  if (not waiting) or credit >= 1 then return book(waiting and 1 or 0) end
  local at = math.max(inter_tail, slot)
  if at - now > max_wait then return none end
  inter_tail = at + interval / share
  return answer('0', at)
end
if slot <= now + EPSILON and (ticket > 0 or bulk_tail <= slot) then return book(0) end
if ticket > 0 and slot < ticket + interval - EPSILON then
  if slot - now > max_wait then return none end
  return answer('0', slot)
end
local at = math.max(bulk_tail, slot)
if at - now > max_wait then return none end
bulk_tail = at + interval
return answer('0', at)
"""
_CONSTANTS = (
    f"local START, MIN, MAX, BACKOFF, EVERY = {SPACING_START!r}, {SPACING_MIN!r}, "
    f"{SPACING_MAX!r}, {BACKOFF!r}, {BACKOFF_EVERY_S!r}\n"
    f"local RECOVERY, LATE, CAP, EPSILON = {RECOVERY!r}, {LATE_TOLERANCE!r}, {CREDIT_CAP!r}, "
    f"{EPSILON!r}\n"
)
_SCRIPT = _CONSTANTS + _SCRIPT_BODY


class RedisRateLimiter(RateLimiter):
    """The Book on Redis, shared by every instance: one script call per decision.

    If Redis fails, `on_outage` decides (ON_REDIS_OUTAGE, issue 12):
    - "local": this instance falls back to a LocalRateLimiter at `fallback_share` of the quota
      (others may be doing the same), logs it once, and tries Redis again after a pause;
    - "wait": `decide()` raises SharedStoreUnavailable, and no slot is guessed from a local
      share; every later decision tries Redis again.
    """

    def __init__(
        self,
        client: Any,
        qps: float,
        key: str = DEFAULT_KEY,
        fallback_share: float = 0.25,
        on_outage: OnOutage = "local",
        health: RedisHealth | None = None,
        share: float = DEFAULT_SHARE,
        tuning: Tuning | None = None,
    ):
        super().__init__()
        self._key = key
        tuning = tuning or Tuning()
        self._args = [qps, share, tuning.quiet_s, tuning.recovery_step_s]
        self._script = client.register_script(_SCRIPT)
        self._on_outage = on_outage
        self._fallback = LocalRateLimiter(qps * fallback_share, share, tuning)
        self.health = health or RedisHealth(  # the runtime shares one with the store
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

    def decide(self, lane: Lane, ticket: float, deadline: float) -> Decision | None:
        """On Redis's clock; in "local" fallback, on the fallback's (this process's) clock."""
        if self._local():
            return self._fallback.decide(lane, ticket, deadline)
        max_wait = deadline - self._clock()
        if max_wait < 0:
            return None
        try:
            args = ["decide", *self._args, lane, f"{ticket:.6f}", f"{max_wait:.6f}"]
            booked, at, now, interval = (float(v) for v in self._script([self._key], args))
        except Exception as exc:  # any Redis failure: degrade (or, in "wait" mode, raise)
            self._outage(exc)
            return self._fallback.decide(lane, ticket, deadline)
        self.health.succeeded()
        if booked < 0:
            return None
        return Decision(booked > 0, at, now, interval)

    def throttled(self) -> None:
        """Never raises: a throttle seen during an outage is remembered locally at most."""
        if self._local():
            self._fallback.throttled()
            return
        try:
            self._script([self._key], ["throttle", *self._args])
        except Exception as exc:  # the next decision meets the outage and decides
            self.health.failed(exc)
            self._fallback.throttled()


def make_rate_limiter(
    qps: float,
    client: Any | None,
    on_outage: OnOutage = "local",
    health: RedisHealth | None = None,
    share: float = DEFAULT_SHARE,
) -> RateLimiter:
    """Shared on Redis when REDIS_URL is set, in-process otherwise. `on_outage` is what the
    shared one does when Redis fails: "wait" (raise SharedStoreUnavailable) or "local";
    `health`, Redis's health as the instance's store sees it too (one log line per outage)."""
    if client is None:
        return LocalRateLimiter(qps, share)
    return RedisRateLimiter(client, qps, on_outage=on_outage, share=share, health=health)


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
