"""FC 3.0 instance lifecycle hooks: ready before the first request, flushed before the stop.

FC calls `initialize(context)` once per instance, before its first invocation, and
`pre_stop(context)` before it stops the instance; s.yaml declares both under
`instanceLifecycleConfig` (FC docs, "Lifecycle hooks for function instances", Python:
https://www.alibabacloud.com/help/en/functioncompute/fc/lifecycle-hooks-for-function-instances-1).

    instance start ── initialize: settings, SDK import, CAMS client, Redis connection
    invocations ───── handlers find all of it built
    instance stop ─── pre_stop: sink deliveries under way finish, Redis connection closes
"""

from __future__ import annotations

from typing import Any

from wababind import applog
from wababind.credentials import credentials_from
from wababind.errors import ConfigError
from wababind.runtime import current_runtime, get_runtime

PRE_STOP_FLUSH_S = 8.0  # below s.yaml's preStop timeout (10 s)
REDIS_UNREACHABLE = (
    "REDIS_URL is set but Redis is unreachable at start: the function must run in the VPC of "
    "the Redis instance (deploy with s.vpc.yaml); until it answers, binds follow ON_REDIS_OUTAGE"
)


def initialize(context: Any) -> None:
    """Build the instance's Runtime and warm what the first request would otherwise pay for.

    Never raises: a failing initializer makes FC fail the invocation and start another
    instance, over and over. A bad setting is logged once here and answered by every handler."""
    try:
        runtime = get_runtime()
    except ConfigError:
        return
    runtime.binder.cams.prepare(credentials_from(context))
    if runtime.redis is not None:
        redis_reachable(runtime.redis)


def redis_reachable(client: Any) -> bool:
    """Open the Redis connection now; say once, in the app log, when it cannot be opened."""
    try:
        client.ping()
    except Exception as exc:  # any failure to reach Redis; a bind never fails for it here
        applog.log("WARNING", REDIS_UNREACHABLE, Component="redis", Error=type(exc).__name__)
        return False
    return True


def pre_stop(context: Any) -> None:
    """Let sink deliveries under way finish, then close the Redis connection."""
    runtime = current_runtime()
    if runtime is None:
        return
    unfinished = runtime.dispatcher.flush(PRE_STOP_FLUSH_S)
    if unfinished:
        applog.log("WARNING", "instance stopping with sink deliveries under way", Count=unfinished)
    if runtime.redis is not None:
        runtime.redis.close()
