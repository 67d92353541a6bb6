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

A caller sleeps until its slot and leaves then, or up to `late` later: LATE_TOLERANCE of an
interval, but never less than LATE_MIN_S, one Redis round trip and a wake-up, or at a high
CAMS_QPS (1-ms intervals) no answer would ever come back in time. A slot that began that recently
is still bookable, and the next one stays one interval after it, so small delays shift no slot.
A grant is booked with the latest time its call may leave, `leave_by` = `late` after the slot
starts or the decision is made, whichever is later; a caller that cannot leave by then
(on the book's clock, the decision's round trip counted as late) leaves its slot empty and
books again (a late call would bunch with the next).

The quota is a hard limit. The book keeps the `leave_by` of its last n = ⌊qps⌋ grants (at
least one), and a slot starts no earlier than 1 s (+ EPSILON) after the n-th previous grant's
`leave_by`:

    grant    k                      k+1  …  k+n-1      k+n
             ├┄┄┤ may leave here                       ├┄┄┤
    ─────────▲──▲──────────────────────────────────────▲────────► time
            at  leave_by ─────────── 1 s ─────────────►│ earliest at of grant k+n

The invariants, for every grant k in the order the book makes them (on its own clock):
  1. the call leaves in [at_k, leave_by_k], leave_by_k = max(at_k, now_k) + late_k, and
     now_k ≤ at_k + late_k (a started slot is recent), late_k = late(interval_k);
  2. at_k+1 ≥ at_k + interval_k (slots never overlap; while late_k < interval_k, as at any
     qps up to 1 / (10 x LATE_MIN_S) = 20, leave windows are ordered too);
  3. at_k+n ≥ leave_by_k + 1 s, so no n + 1 calls leave in any 1-s window, however late
     within their tolerance each one leaves: late wake-ups included, across every instance
     sharing the book. At the narrowest spacing (SPACING_MIN) n intervals last 1.01 s, so the
     rule moves a slot only after late decisions, by about what they were late;
  4. bulk holds no booked slot that has not started (tickets are promises); the booked future
     reaches at most one interval past now, or to the rule-3 start if that is later;
  5. a decision that grants nothing (None) changes nothing.

The spacing is learned from System.LimitControl answers. A lone throttle is gateway jitter (a
call that crossed it slower than the one n grants before it): it is noted, holds the spacing
where it is (no narrowing for `quiet_s`) and costs its retry's slot, nothing more. A throttle
within CONFIRM_WINDOWS x n grants of a noted one says the spacing is too narrow for this
gateway: it widens x BACKOFF for each of the two (once per BACKOFF_EVERY_S: the throttles of one
burst are one signal). Widening on every lone throttle cost 1.5 % of every slot for `quiet_s`
and more to avoid one retry in hundreds of calls. After `quiet_s` without a throttle the spacing
narrows x RECOVERY per `recovery_step_s`, down to SPACING_MIN. On Redis the whole state is one
hash, moved by one Lua script per decision on Redis's clock (TIME), so every instance shares the
lanes, the tickets, the last grants and the learned spacing. The hash keeps its numbers to the
microsecond; the Book does the same, so the two make the same decisions from the same events
(tests/test_ratelimit.py replays them on both)."""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wababind import redis_errors
from wababind.errors import SharedStoreUnavailable
from wababind.fallback import OnOutage, RedisHealth
from wababind.outcome import Lane
from wababind.redis_errors import RedisProblem

SPACING_START = 1.02  # slot interval = spacing / qps; where a fresh quota starts
SPACING_MIN, SPACING_MAX = 1.01, 2.0
BACKOFF = 1.015  # a confirmed throttle widens the spacing this much for itself and the noted one
BACKOFF_EVERY_S = 1.0  # ... at most once per quota window
CONFIRM_WINDOWS = 3  # a throttle within this many windows' grants (x n) of a noted one confirms it
RECOVERY = 0.99  # after a quiet period, the spacing narrows this much per step
QUIET_S, RECOVERY_STEP_S = 30.0, 10.0
LATE_TOLERANCE = 0.1  # a call leaves at most this many intervals after its slot starts
LATE_MIN_S = 0.005  # ... or this long, if longer: a Redis round trip and a wake-up
EPSILON = 1e-6  # s: float noise, not time (and the hard rule's margin over it)
CREDIT_CAP = 2.0  # interactive slots saved up while bulk waits (a burst of two goes at once)
DEFAULT_SHARE = 0.5  # INTERACTIVE_MAX_SHARE: interactive's share of the slots while bulk waits
DEFAULT_KEY = "wababind:quota:cams"


def window_size(qps: float) -> int:
    """How many calls may leave in one 1-s window: ⌊qps⌋, at least one."""
    return max(1, math.floor(qps))


def late(interval: float) -> float:
    """How long after its slot (or its decision) a call may still leave."""
    return max(LATE_TOLERANCE * interval, LATE_MIN_S)


def _us(value: float) -> float:
    """To the microsecond, as the Redis hash keeps it (string.format('%.6f'))."""
    return float(f"{value:.6f}")


def _us_up(value: float) -> float:
    """Up to the next microsecond: a `leave_by` is never kept earlier than it is."""
    return math.ceil(value * 1000000) / 1000000


# Tuning, Decision and Slot are plain classes, not @dataclass: a dataclass execs its generated
# __init__ at import (~0.3 ms each, every cold start).
class Tuning:
    """The learning's clock constants (tests shorten them)."""

    def __init__(self, quiet_s: float = QUIET_S, recovery_step_s: float = RECOVERY_STEP_S):
        self.quiet_s = quiet_s
        self.recovery_step_s = recovery_step_s


class Decision:
    """One answer of the quota, on its own clock (s): a booked slot starting at `at`, whose call
    must leave by `leave_by`, or a ticket for the slot expected at `at` (come back then)."""

    def __init__(
        self, booked: bool, at: float, now: float, interval: float, leave_by: float = 0.0
    ) -> None:
        self.booked = booked
        self.at = at
        self.now = now
        self.interval = interval
        self.leave_by = leave_by  # booked: the latest leave the book counted on; a ticket: 0

    @property
    def wait_s(self) -> float:
        """Until the slot starts (booked), or until the ticket says come back."""
        return max(0.0, self.at - self.now)


class Slot:
    """A granted call slot: its start on the granting limiter's clock, and the interval then."""

    def __init__(self, at: float, interval: float) -> None:
        self.at = at
        self.interval = interval


@dataclass(repr=False, eq=False)
class Book:
    """The quota's state and its two operations, on a clock of seconds. The Lua script below is
    this class line for line (numbers kept to the µs, as the hash keeps them); the in-process
    limiter uses it directly."""

    qps: float
    share: float = DEFAULT_SHARE
    tuning: Tuning = field(default_factory=Tuning)
    tat: float = 0.0
    spacing: float = SPACING_START
    widened_at: float | None = None  # last back-off (or lone throttle); quiet counts from here
    bulk_tail: float = 0.0  # the slot after the last bulk ticket's
    inter_tail: float = 0.0
    credit: float = CREDIT_CAP
    grants: int = 0  # slots booked so far: throttles are compared by grant count
    noted: int | None = None  # `grants` at a lone throttle not acted on (None: none)
    last: deque[float] = field(init=False)  # leave_by of the last window_size(qps) grants

    def __post_init__(self) -> None:
        self.last = deque(maxlen=window_size(self.qps))

    def spacing_at(self, now: float) -> float:
        widened_at = self._widened_at(now)
        quiet = now - widened_at - self.tuning.quiet_s
        if quiet <= 0:
            return self.spacing
        steps = quiet / self.tuning.recovery_step_s
        return max(SPACING_MIN, self.spacing * RECOVERY**steps)

    def _widened_at(self, now: float) -> float:
        return now - BACKOFF_EVERY_S if self.widened_at is None else self.widened_at

    def decide(self, now: float, lane: Lane, ticket: float, max_wait: float) -> Decision | None:
        """Book a slot or hand out a ticket; None (nothing taken) if neither fits in max_wait.
        `ticket` is the slot a ticket promised (0: none)."""
        now, ticket, max_wait = _us(now), _us(ticket), _us(max_wait)
        interval = self.spacing_at(now) / self.qps
        slot = now
        if self.tat >= now - late(interval) - EPSILON:
            slot = self.tat  # a slot that began just now is still free to take
        if len(self.last) == self.last.maxlen:  # the hard quota: 1 s after the n-th last grant
            slot = max(slot, self.last[0] + 1 + EPSILON)
        waiting = self.bulk_tail > now
        credit = self.credit if waiting else CREDIT_CAP
        if lane == "interactive":
            if not waiting or credit >= 1:
                return self._book(now, slot, max_wait, interval, credit, 1.0 if waiting else 0.0)
            ticket_at = max(self.inter_tail, slot)
            if ticket_at - now > max_wait:
                return None
            self.inter_tail = ticket_at + interval / self.share
            return self._answer(now, False, ticket_at, interval, credit)
        if slot <= now + EPSILON and (ticket > 0 or self.bulk_tail <= slot):
            return self._book(now, slot, max_wait, interval, credit, 0.0)  # started: bulk's
        if ticket > 0 and slot < ticket + interval - EPSILON:  # before the next ticket's slot:
            if slot - now > max_wait:  # this holder keeps its place, back when it starts
                return None
            return self._answer(now, False, slot, interval, credit)
        ticket_at = max(self.bulk_tail, slot)
        if ticket_at - now > max_wait:
            return None
        self.bulk_tail = ticket_at + interval
        return self._answer(now, False, ticket_at, interval, credit)

    def _book(
        self, now: float, slot: float, max_wait: float, interval: float, credit: float, cost: float
    ) -> Decision | None:
        if slot - now > max_wait:
            return None
        self.tat = slot + interval
        if self.bulk_tail > now:
            credit = min(CREDIT_CAP, credit + self.share - cost)
        if self.bulk_tail > self.tat:  # new tickets fall on the slots (they move after a gap):
            # the nearest slot, never a ceiling, or a spacing that narrows a little at every
            # decision would push the tail one slot further each time and leave slots empty
            ahead = math.floor((self.bulk_tail - self.tat) / interval + 0.5)
            self.bulk_tail = self.tat + ahead * interval
        leave_by = _us_up(max(slot, now) + late(interval))
        self.last.append(leave_by)
        self.grants += 1
        return self._answer(now, True, slot, interval, credit, leave_by)

    def _answer(
        self,
        now: float,
        booked: bool,
        at: float,
        interval: float,
        credit: float,
        leave_by: float = 0.0,
    ) -> Decision:
        """Keep the state as the script's save() does, and answer as the script returns."""
        self.tat, self.spacing = _us(self.tat), _us(self.spacing)
        self.widened_at = _us(self._widened_at(now))
        self.bulk_tail, self.inter_tail, self.credit = (
            _us(self.bulk_tail),
            _us(self.inter_tail),
            _us(credit),
        )
        return Decision(booked, _us(at), now, float(f"{interval:.9f}"), leave_by)

    def throttled(self, now: float) -> None:
        """CAMS answered System.LimitControl: note a lone throttle (the spacing stays, and the
        quiet period starts again, as a fresh book's); one soon after a noted one widens the
        spacing for both (once per window)."""
        now = _us(now)
        current = self.spacing_at(now)
        if now - self._widened_at(now) < BACKOFF_EVERY_S:
            return
        if self.noted is None or self.grants - self.noted > CONFIRM_WINDOWS * window_size(self.qps):
            self.noted = self.grants
            self.spacing, self.widened_at = _us(current), _us(now - BACKOFF_EVERY_S)
            return
        self.spacing = _us(min(SPACING_MAX, current * BACKOFF * BACKOFF))
        self.widened_at = now
        self.noted = None


class RateLimiter(ABC):
    """Slots in two lanes; `acquire` = decide, wait, and leave on time (or decide again).

    `sent`, when set to a list, records the time each granted call left, on the limiter's own
    clock (the bench counts them in 1-s windows); None, as in production, records nothing."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._clock, self._sleep = clock, sleep  # this process's clock (deadlines, sleeping)
        self.sent: list[float] | None = None

    @abstractmethod
    def decide(self, lane: Lane, ticket: float, deadline: float) -> Decision | None:
        """One decision: a booked slot, a ticket, or None (nothing fits before `deadline`).
        `ticket`: the slot a ticket promised this caller (on the limiter's clock), or 0."""

    @abstractmethod
    def throttled(self) -> None:
        """CAMS throttled a call anyway: widen the spacing."""

    def acquire(self, lane: Lane, deadline: float) -> Slot | None:
        """Return at the start of a slot, or None (no slot taken) if none comes by `deadline`.

        The book counted on the call leaving by `leave_by` on its clock. The decision was made
        somewhere between asking and hearing back, so on the book's clock the call leaves at
        most decision.now + (local time since asking): that must be ≤ leave_by."""
        ticket = 0.0
        while True:
            asked = self._clock()
            decision = self.decide(lane, ticket, deadline)
            if decision is None:
                return None
            if decision.wait_s > 0:
                self._sleep(decision.wait_s)
            if not decision.booked:
                ticket = decision.at
                continue
            leaves = decision.now + (self._clock() - asked)
            if leaves <= decision.leave_by:
                if self.sent is not None:
                    self.sent.append(max(leaves, decision.at))
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
# "throttle"), now ("" = Redis's clock), qps, share, quiet_s, recovery_step_s, lane, ticket (its
# slot, or 0), max_wait. Returns {booked (1, 0; -1 = nothing fits), at, now, interval, leave_by}
# as strings (Lua numbers would come back truncated to integers). The last grants' leave_by sit
# in fields g1..gn, a ring whose oldest entry `head` names (n = window_size(qps)).
_SCRIPT_BODY = """
-- Before Redis 5 a script is replicated as itself, and a write after TIME (not deterministic)
-- is refused unless the script replicates its effects instead; Redis 5+ does that anyway and
-- 7 keeps the call as a no-op. ApsaraDB still offers Redis 4.0.
if redis.replicate_commands then redis.replicate_commands() end
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[2])
end
local qps, share = tonumber(ARGV[3]), tonumber(ARGV[4])
local quiet_s, step_s = tonumber(ARGV[5]), tonumber(ARGV[6])
local s = redis.call('HMGET', KEYS[1], 'tat', 'spacing', 'widened_at', 'bulk_tail',
                    'inter_tail', 'credit', 'head', 'grants', 'noted')
local tat = tonumber(s[1]) or 0
local spacing = tonumber(s[2]) or START
local widened_at = tonumber(s[3]) or (now - EVERY)
local bulk_tail, inter_tail = tonumber(s[4]) or 0, tonumber(s[5]) or 0
local credit = tonumber(s[6]) or CAP
local n = math.max(1, math.floor(qps))
local head = tonumber(s[7]) or 1
if head > n then head = 1 end
local grants, noted = tonumber(s[8]) or 0, tonumber(s[9])

local current = spacing
local quiet = now - widened_at - quiet_s
if quiet > 0 then
  current = math.max(MIN, spacing * math.pow(RECOVERY, quiet / step_s))
end

local function f6(x) return string.format('%.6f', x) end
local function save()
  -- HMSET, not a variadic HSET: before Redis 4.0 HSET sets one field
  redis.call('HMSET', KEYS[1], 'tat', f6(tat), 'spacing', f6(spacing),
             'widened_at', f6(widened_at), 'bulk_tail', f6(bulk_tail),
             'inter_tail', f6(inter_tail), 'credit', f6(credit))
  redis.call('EXPIRE', KEYS[1], 3600)
end

if ARGV[1] == 'throttle' then
  if now - widened_at >= EVERY then
    if noted == nil or grants - noted > CONFIRM * n then
      spacing = current
      widened_at = now - EVERY
      save()
      redis.call('HSET', KEYS[1], 'noted', grants)
    else
      spacing = math.min(MAX, current * BACKOFF * BACKOFF)
      widened_at = now
      save()
      redis.call('HDEL', KEYS[1], 'noted')
    end
  end
  return {'0', '0', f6(now), '0', '0'}
end

local lane, ticket, max_wait = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local interval = current / qps
local late = math.max(LATE * interval, LATE_MIN)
local slot = now
if tat >= now - late - EPSILON then slot = tat end
local oldest = tonumber(redis.call('HGET', KEYS[1], 'g' .. head))
if oldest then slot = math.max(slot, oldest + 1 + EPSILON) end
local waiting = bulk_tail > now
if not waiting then credit = CAP end

local function answer(booked, at, leave_by)
  save()
  return {booked, f6(at), f6(now), string.format('%.9f', interval), f6(leave_by)}
end
local none = {'-1', '0', f6(now), '0', '0'}
local function book(cost)
  if slot - now > max_wait then return none end
  tat = slot + interval
  if bulk_tail > now then credit = math.min(CAP, credit + share - cost) end
  if bulk_tail > tat then
    bulk_tail = tat + math.floor((bulk_tail - tat) / interval + 0.5) * interval
  end
  local leave_by = math.ceil((math.max(slot, now) + late) * 1000000) / 1000000
  redis.call('HMSET', KEYS[1], 'g' .. head, f6(leave_by), 'head', head % n + 1,
             'grants', grants + 1)
  return answer('1', slot, leave_by)
end

if lane == 'interactive' then
  if (not waiting) or credit >= 1 then return book(waiting and 1 or 0) end
  local at = math.max(inter_tail, slot)
  if at - now > max_wait then return none end
  inter_tail = at + interval / share
  return answer('0', at, 0)
end
if slot <= now + EPSILON and (ticket > 0 or bulk_tail <= slot) then return book(0) end
if ticket > 0 and slot < ticket + interval - EPSILON then
  if slot - now > max_wait then return none end
  return answer('0', slot, 0)
end
local at = math.max(bulk_tail, slot)
if at - now > max_wait then return none end
bulk_tail = at + interval
return answer('0', at, 0)
"""
_CONSTANTS = (
    f"local START, MIN, MAX, BACKOFF, EVERY = {SPACING_START!r}, {SPACING_MIN!r}, "
    f"{SPACING_MAX!r}, {BACKOFF!r}, {BACKOFF_EVERY_S!r}\n"
    f"local RECOVERY, LATE, CAP, EPSILON = {RECOVERY!r}, {LATE_TOLERANCE!r}, {CREDIT_CAP!r}, "
    f"{EPSILON!r}\n"
    f"local LATE_MIN, CONFIRM = {LATE_MIN_S!r}, {CONFIRM_WINDOWS!r}\n"
)
_SCRIPT = _CONSTANTS + _SCRIPT_BODY


class ScriptBook:
    """The Book as the Lua script on one Redis hash: the same two operations, one script call
    each. With `now` None, as every production call passes it, the script reads Redis's clock
    (TIME), the one clock all instances share; an instance's own clock would break the shared
    quota. A given `now` replays events on a clock of the caller's: the differential test feeds
    the Book and the script the same sequence and compares their decisions."""

    def __init__(
        self,
        client: Any,
        qps: float,
        share: float = DEFAULT_SHARE,
        tuning: Tuning | None = None,
        key: str = DEFAULT_KEY,
    ):
        tuning = tuning or Tuning()
        self.key = key
        self._args = [qps, share, tuning.quiet_s, tuning.recovery_step_s]
        self._script = client.register_script(_SCRIPT)

    @staticmethod
    def _clock(now: float | None) -> str:
        return "" if now is None else f"{now:.6f}"

    def decide(
        self, now: float | None, lane: Lane, ticket: float, max_wait: float
    ) -> Decision | None:
        args = ["decide", self._clock(now), *self._args, lane, f"{ticket:.6f}", f"{max_wait:.6f}"]
        booked, at, at_now, interval, leave_by = (float(v) for v in self._script([self.key], args))
        if booked < 0:
            return None
        return Decision(booked > 0, at, at_now, interval, leave_by)

    def throttled(self, now: float | None) -> None:
        self._script([self.key], ["throttle", self._clock(now), *self._args])


class RedisRateLimiter(RateLimiter):
    """The Book on Redis, shared by every instance: one script call per decision.

    If Redis fails, `on_outage` decides (ON_REDIS_OUTAGE, issue 12):
    - "local": this instance falls back to a LocalRateLimiter at `fallback_share` of the quota
      (others may be doing the same), logs it once, and tries Redis again after a pause;
    - "wait": `decide()` raises SharedStoreUnavailable, and no slot is guessed from a local
      share; every later decision tries Redis again.
    What counts as Redis failing is `redis_errors.classify`: a refusal (OOM, WRONGTYPE on the
    quota hash, a script error) is no outage: `decide()` raises SharedStoreUnavailable in
    either mode, said with Redis's code; no slot is guessed while Redis holds the quota.
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
        self._book = ScriptBook(client, qps, share, tuning, key)
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

    def _met(self, problem: RedisProblem, operation: str) -> None:
        """Say `problem`; raise SharedStoreUnavailable unless the "local" fallback stands in
        (Redis away, ON_REDIS_OUTAGE=local)."""
        if problem.away:
            self.health.failed(problem)
            if self._on_outage == "local":
                return
        else:
            self.health.refused(problem, operation)
        raise SharedStoreUnavailable(f"{problem.message}; the shared quota is unknown", problem)

    def decide(self, lane: Lane, ticket: float, deadline: float) -> Decision | None:
        """On Redis's clock; in "local" fallback, on the fallback's (this process's) clock."""
        if self._local():
            return self._fallback.decide(lane, ticket, deadline)
        max_wait = deadline - self._clock()
        if max_wait < 0:
            return None
        decision = redis_errors.call(
            lambda: self._book.decide(None, lane, ticket, max_wait)  # on Redis's clock
        )
        if isinstance(decision, RedisProblem):
            self._met(decision, "quota decision")
            return self._fallback.decide(lane, ticket, deadline)
        self.health.succeeded()
        return decision

    def throttled(self) -> None:
        """Never raises: a throttle seen during an outage is remembered locally at most."""
        if self._local():
            self._fallback.throttled()
            return
        problem = redis_errors.call(lambda: self._book.throttled(None))
        if isinstance(problem, RedisProblem):  # said; the next decision meets it and decides
            if problem.away:
                self.health.failed(problem)
            else:
                self.health.refused(problem, "quota throttle")
            self._fallback.throttled()


def make_rate_limiter(
    qps: float,
    client: Any | None,
    on_outage: OnOutage = "local",
    health: RedisHealth | None = None,
    share: float = DEFAULT_SHARE,
    key: str = DEFAULT_KEY,
) -> RateLimiter:
    """Shared on Redis when REDIS_URL is set, in-process otherwise. `on_outage` is what the
    shared one does when Redis fails: "wait" (raise SharedStoreUnavailable) or "local";
    `health`, Redis's health as the instance's store sees it too (one log line per outage);
    `key`, the Redis hash of this quota (one per CAMS operation that has its own)."""
    if client is None:
        return LocalRateLimiter(qps, share)
    return RedisRateLimiter(client, qps, key=key, on_outage=on_outage, share=share, health=health)


def redis_client(url: str) -> Any:
    """A Redis client that fails fast: short timeouts, one quick retry, no long backoff.

    RESP2: redis-py 8 opens each connection with HELLO 3, which Redis before 6.0 (ApsaraDB 4.0
    and 5.0) refuses as an unknown command, so no connection would ever be made."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        protocol=2,
    )
