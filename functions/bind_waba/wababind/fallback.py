"""The shared store's health, one per instance: say once when Redis went away and when it came
back (with how many binds waited), and what the limiter and the store do meanwhile.

ON_REDIS_OUTAGE picks what "meanwhile" means:
- `wait` (the default): they raise SharedStoreUnavailable; nothing binds on this instance's
  memory alone. Bulk binds end retryable (the batch is redelivered), interactive ones wait.
- `local`: they fall back to this instance's memory, as before (available, may bind twice).

    Redis ok ──✗ failed(): WARNING "went away" (once) ─┬─ pause: callers fail fast, no Redis try
                                                       ├─ binds meet the outage: waited() counts
                                                       └─ probe() / a try after the pause
    Redis ok ◀── succeeded(): INFO "back", BindsWaited, OutageS (once) ◀── a call answered

What counts as away, and what Redis refuses instead (`refused()`: ERROR with its code, once a
minute per code, no pause, no fallback), is `redis_errors.classify`. A PING that answers ends
the pause but is not "back": a read-only replica answers PING and refuses every write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from wababind import applog
from wababind.redis_errors import RedisProblem, classify

OnOutage = Literal["wait", "local"]
ON_OUTAGE_CHOICES: tuple[OnOutage, ...] = ("wait", "local")
RETRY_AFTER_S = 5.0  # after a Redis error, don't try Redis again for this long (probes excepted)
REFUSED_LOG_EVERY_S = 60.0  # a refusal's code is logged at most this often (with the count)

_WENT_AWAY: dict[str, str] = {
    "wait": "Redis unreachable: binds wait for the shared store (ON_REDIS_OUTAGE=wait)",
    "local": "Redis unreachable: binding on this instance's memory alone (ON_REDIS_OUTAGE=local)",
}
_CAME_BACK = "Redis reachable again: shared store resumed"


class RedisHealth:
    """Tracks Redis's health for everything on one client; never raises, logs each change once.

    `component`, `degraded` and `recovered` name a caller that keeps a health of its own (the
    log lines then say those words); the runtime gives the limiter and the store one together.
    """

    def __init__(
        self,
        component: str = "shared-store",
        degraded: str | None = None,
        recovered: str | None = None,
        *,
        on_outage: OnOutage = "local",
        ping: Callable[[], Any] | None = None,
    ):
        self.on_outage: OnOutage = on_outage
        self._component = component
        self._degraded_message = degraded or _WENT_AWAY[on_outage]
        self._recovered_message = recovered or _CAME_BACK
        self._ping = ping
        self._lock = threading.Lock()
        self._until: float | None = None
        self._since = 0.0
        self._waited: set[str] = set()
        self._refusals: dict[str, tuple[float, int]] = {}  # code → (last logged, since then)
        self.retry_after_s = RETRY_AFTER_S

    @property
    def degraded(self) -> bool:
        return self._until is not None

    @property
    def wait(self) -> bool:
        """True when an outage must stop binds (ON_REDIS_OUTAGE=wait)."""
        return self.on_outage == "wait"

    def active(self) -> bool:
        """True while Redis should not be tried (the pause after a failure)."""
        with self._lock:
            return self._until is not None and time.monotonic() < self._until

    def failed(self, problem: RedisProblem) -> None:
        """Redis is away (`problem.away`): the pause starts, "went away" is said once."""
        with self._lock:
            first = self._until is None
            now = time.monotonic()
            self._until = now + self.retry_after_s
            if first:
                self._since = now
                self._waited.clear()
        if first:
            applog.log(
                "WARNING",
                self._degraded_message,
                Component=self._component,
                Error=problem.error,
                **_code(problem),
                OnRedisOutage=self.on_outage,
            )

    def refused(self, problem: RedisProblem, operation: str) -> None:
        """Redis answered and refused `operation`: said as what it is, with Redis's code."""
        key, now = problem.code or problem.error, time.monotonic()
        with self._lock:
            logged, since = self._refusals.get(key, (-REFUSED_LOG_EVERY_S, 0))
            due = now - logged >= REFUSED_LOG_EVERY_S
            self._refusals[key] = (now, 0) if due else (logged, since + 1)
        if due:
            applog.log(
                "ERROR",
                f"Redis refused a command: {problem.message}",
                Component=self._component,
                Error=problem.error,
                **_code(problem),
                Operation=operation,
                Retryable=problem.retryable,
                RefusedSinceLastLine=since,
            )

    def succeeded(self) -> None:
        with self._lock:
            if self._until is None:
                return
            self._until = None
            outage_s, waited = time.monotonic() - self._since, len(self._waited)
            self._waited.clear()
        applog.log(
            "INFO",
            self._recovered_message,
            Component=self._component,
            OutageS=round(outage_s, 3),
            BindsWaited=waited,
        )

    def waited(self, bind: str) -> None:
        """The bind `bind` met the outage (it waits, or ends retryable): counted once."""
        with self._lock:
            if self._until is not None and len(self._waited) < 1_000_000:
                self._waited.add(bind)

    def probe(self) -> bool:
        """Ask Redis now, pause or not (an interactive bind waiting for it); True if it answers.
        An answer ends the pause only: the next real command says whether Redis is back."""
        if self._ping is None:
            return not self.active()
        try:
            self._ping()
        except Exception as exc:  # classified: away, or refused (NOAUTH) said as such
            problem = classify(exc)
            if problem.away:
                self.failed(problem)
            else:
                self.refused(problem, "PING")
            return False
        with self._lock:
            if self._until is not None:
                self._until = min(self._until, time.monotonic())
        return True


def _code(problem: RedisProblem) -> dict[str, str]:
    """The log field with Redis's error code, when Redis answered with one."""
    return {} if problem.code is None else {"RedisCode": problem.code}
