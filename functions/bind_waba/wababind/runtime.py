"""Per-instance state, built by FC's initializer (or else the first invocation): settings,
clients, limiter, store, sinks."""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

from wababind import applog
from wababind.binder import Binder, Invocation
from wababind.config import Settings, load_settings
from wababind.credentials import credentials_from
from wababind.errors import ConfigError
from wababind.idempotency import IdempotencyStore  # loaded with the binder anyway
from wababind.models import CallbackPolicy
from wababind.outcome import Lane
from wababind.sinks.base import Sink
from wababind.sinks.dispatch import Dispatcher

if TYPE_CHECKING:
    from wababind.after_bind import AfterBind

DEFAULT_TIMEOUT_S = 60.0
MAX_BATCH_WORKERS = 32


def batch_workers(qps: float) -> int:
    """Enough concurrent binds to fill the quota at CAMS latencies up to ~1.5 s, no more: extra
    threads only wait for slots, and a herd of them waking at a batch's start delays the
    first calls enough to bunch them into one quota window (seen in `make bench`)."""
    return max(4, min(MAX_BATCH_WORKERS, math.ceil(qps * 1.5)))


def _workers(settings: Settings) -> int:
    """A bind's thread also makes its AFTER_BIND calls, each on a quota as large as the
    bind's: as many threads again per step keep every book busy, so steps never starve binds."""
    return batch_workers(settings.cams_qps) * (1 + len(settings.after_bind))


class Runtime:
    """One instance's state, built once: settings, the binder, the sinks and Redis. A plain
    class: a @dataclass execs its generated __init__ at import (~0.3 ms of every cold start)."""

    def __init__(
        self,
        settings: Settings,
        binder: Binder,
        dispatcher: Dispatcher,
        policy: CallbackPolicy,
        store: IdempotencyStore,
        workers: int,
        redis: Any = None,
    ) -> None:
        self.settings = settings
        self.binder = binder
        self.dispatcher = dispatcher
        self.policy = policy
        self.store = store  # also the webhook-id replay guard
        self.workers = workers  # concurrent binds in one MQ batch
        self.redis = redis  # redis.Redis when REDIS_URL is set


_lock = threading.Lock()
_runtime: Runtime | None = None
_config_error: ConfigError | None = None


def get_runtime() -> Runtime:
    """The instance's Runtime; a bad setting raises ConfigError, logged once per instance."""
    global _runtime, _config_error
    runtime = _runtime  # the hot path: built once, read without the lock
    if runtime is not None:
        return runtime
    with _lock:
        if _runtime is not None:
            return _runtime
        if _config_error is not None:
            raise _config_error
        try:
            _runtime = build_runtime(load_settings())
        except ConfigError as exc:
            _config_error = exc
            applog.log("ERROR", "configuration error", Reason=str(exc))
            raise
        return _runtime


def current_runtime() -> Runtime | None:
    """The instance's Runtime if one was built, without building it (preStop)."""
    with _lock:
        return _runtime


def reset_runtime() -> None:
    """Forget the instance state (tests change the environment between cases)."""
    global _runtime, _config_error
    with _lock:
        _runtime, _config_error = None, None


def build_runtime(settings: Settings) -> Runtime:
    from wababind.cams import CamsClient
    from wababind.fallback import RedisHealth
    from wababind.idempotency import make_store
    from wababind.ratelimit import make_rate_limiter, redis_client

    client = redis_client(settings.redis_url) if settings.redis_url else None
    # One view of Redis's health for the limiter and the store: an outage is logged once.
    health = (
        RedisHealth(on_outage=settings.on_redis_outage, ping=client.ping)
        if client is not None
        else None
    )
    store = make_store(client, health=health)
    binder = Binder(
        CamsClient(
            settings.cams_endpoint,
            settings.cams_region,
            settings.cams_timeout_s,
            pool_size=_workers(settings),
        ),
        make_rate_limiter(
            settings.cams_qps,
            client,
            on_outage=settings.on_redis_outage,
            health=health,
            share=settings.interactive_max_share,
        ),
        store,
        settings.idempotency_ttl_s,
        store_health=health,
    )
    if settings.after_bind:
        binder.after_bind = _after_bind(settings, binder, store, client, health)
    return Runtime(
        settings=settings,
        binder=binder,
        dispatcher=Dispatcher(_sinks(settings)),
        workers=_workers(settings),
        policy=CallbackPolicy(settings.callback_allowed_hosts, settings.insecure_callbacks),
        store=store,
        redis=client,
    )


def _after_bind(
    settings: Settings, binder: Binder, store: IdempotencyStore, client: Any, health: Any
) -> AfterBind:
    """AFTER_BIND's steps, each operation on a quota of its own (10 calls/s per account each,
    apart from the bind's): one book per operation on Redis, with the lanes."""
    from wababind.after_bind import STEP_ACTIONS, AccountWebhook, AfterBind
    from wababind.ratelimit import DEFAULT_KEY, make_rate_limiter

    limiters = {
        step: make_rate_limiter(
            settings.cams_qps,
            client,
            on_outage=settings.on_redis_outage,
            health=health,
            share=settings.interactive_max_share,
            key=f"{DEFAULT_KEY}:{STEP_ACTIONS[step]}",
        )
        for step in settings.after_bind
    }
    webhook = AccountWebhook(settings.account_webhook_url, settings.account_webhook_queue)
    return AfterBind(binder, store, settings.after_bind, limiters, webhook)


def _sinks(settings: Settings) -> list[Sink]:
    sinks: list[Sink] = []
    for name in settings.outcome_sinks:
        if name == "log":
            from wababind.sinks.log import LogSink

            sinks.append(LogSink())
        elif name == "callback":
            from wababind.sinks.callback import CallbackSink

            sinks.append(
                CallbackSink(
                    default_url=settings.callback_url,
                    secret=settings.callback_secret,
                    allowed_hosts=settings.callback_allowed_hosts,
                    allow_insecure=settings.insecure_callbacks,
                )
            )
        elif name == "sls":
            from wababind.sinks.sls import SlsSink

            assert settings.sls_endpoint and settings.sls_project and settings.sls_logstore
            try:
                sink = SlsSink(
                    endpoint=settings.sls_endpoint,
                    project=settings.sls_project,
                    logstore=settings.sls_logstore,
                )
            except ImportError:  # the package goes without it unless built for sls
                raise ConfigError(
                    "OUTCOME_SINKS has sls but the code package holds no SLS SDK: build it "
                    "with OUTCOME_SINKS=log,sls (make package, s deploy)"
                ) from None
            sinks.append(sink)
    return sinks


def fc_request_id(context: Any) -> str:
    """FC's id of this invocation (`context.request_id`); "local" when run without FC."""
    return str(getattr(context, "request_id", "") or "local")


def start_invocation(context: Any, lane: Lane, started: float | None = None) -> Invocation:
    """The deadline is FC's function timeout from our start, less a reserve for the sinks
    (10%: 3 s of the HTTP function's 30, between 0.5 and 10 s). Binds end by the deadline,
    their CAMS calls included (the binder starts one only when it fits: README "Calling CAMS");
    the sinks have until `finish_by`."""
    started = time.monotonic() if started is None else started
    function = getattr(context, "function", None)
    try:
        timeout = float(getattr(function, "timeout", None) or DEFAULT_TIMEOUT_S)
    except (TypeError, ValueError):
        timeout = DEFAULT_TIMEOUT_S
    reserve = min(max(0.5, timeout * 0.1), 10.0)
    return Invocation(
        request_id=fc_request_id(context),
        lane=lane,
        credentials=credentials_from(context),
        deadline=started + max(timeout - reserve, timeout / 2),
        finish_by=started + timeout - min(0.5, timeout * 0.05),
    )
