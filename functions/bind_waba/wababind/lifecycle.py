"""FC 3.0 instance lifecycle hooks: ready before the first request, flushed before the stop.

FC calls `initialize(context)` once per instance, before its first invocation, and
`pre_stop(context)` before it stops the instance; s.yaml declares both under
`instanceLifecycleConfig` (FC docs, "Lifecycle hooks for function instances", Python:
https://www.alibabacloud.com/help/en/functioncompute/fc/lifecycle-hooks-for-function-instances-1).

    instance start ── initialize: the handler's modules, settings, SDK import, CAMS client,
                      Redis connection
    invocations ───── handlers find all of it built
    instance stop ─── pre_stop: sink deliveries under way finish, store writes Redis missed
                      are written (best effort), Redis connection closes
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from wababind import applog
from wababind.credentials import credentials_from
from wababind.errors import ConfigError
from wababind.redis_errors import classify
from wababind.runtime import current_runtime, fc_request_id, get_runtime

PRE_STOP_FLUSH_S = 8.0  # below s.yaml's preStop timeout (10 s)
REDIS_UNREACHABLE = (
    "REDIS_URL is set but Redis is unreachable at start: the function must run in the VPC of "
    "the Redis instance (deploy with s.vpc.yaml); until it answers, binds follow ON_REDIS_OUTAGE"
)
REDIS_REFUSED = (
    "REDIS_URL is set and Redis refuses the functions at start (see RedisCode): until that is "
    "fixed, binds end retryable without calling CAMS"
)
NO_REDIS = (
    "REDIS_URL is not set: the quota (CAMS_QPS) and never binding a WabaId twice hold per "
    "instance only. FC runs one request per instance, so concurrent signups are concurrent "
    "instances, each with its own limiter and memory; set REDIS_URL (deploy with s.vpc.yaml) "
    "to share them"
)
# The module each entry point of index.py imports on its first call, by handler name. The webhook
# module brings the edge models and standardwebhooks; the batch module the queue formats and
# concurrent.futures. Each function imports only its own.
HANDLER_MODULES = {"http_handler": "wababind.webhook", "mq_handler": "wababind.batch"}


def handler_modules(context: Any) -> tuple[str, ...]:
    """The modules of the handler this instance serves (`context.function.handler`, e.g.
    `index.mq_handler`, or FC's FC_FUNCTION_HANDLER); every handler's when it is not known."""
    function = getattr(context, "function", None)
    handler = str(getattr(function, "handler", "") or os.environ.get("FC_FUNCTION_HANDLER", ""))
    known = HANDLER_MODULES.get(handler.rpartition(".")[2])
    return (known,) if known else tuple(HANDLER_MODULES.values())


def initialize(context: Any) -> None:
    """Import the instance's handler, build its Runtime and warm what the first request would
    otherwise pay for.

    Never raises: a failing initializer makes FC fail the invocation and start another
    instance, over and over. A bad setting is logged once here and answered by every handler;
    anything else is logged once, without a trace, and the first request builds what is left."""
    with applog.Scope(FcRequestId=fc_request_id(context)):
        try:
            _initialize(context)
        except Exception as exc:
            applog.unexpected("unexpected error in the initializer", exc)


def _initialize(context: Any) -> None:
    for name in handler_modules(context):
        importlib.import_module(name)
    try:
        runtime = get_runtime()
    except ConfigError:
        return
    runtime.binder.cams.prepare(credentials_from(context))
    if runtime.redis is not None:
        redis_reachable(runtime.redis)
    else:
        applog.log("WARNING", NO_REDIS, Component="redis")


def redis_reachable(client: Any) -> bool:
    """Open the Redis connection now; say once, in the app log, when it cannot be opened."""
    try:
        client.ping()
    except Exception as exc:  # classified (redis_errors); a bind never fails for it here
        problem = classify(exc)
        code = {} if problem.code is None else {"RedisCode": problem.code}
        if problem.away:
            applog.log("WARNING", REDIS_UNREACHABLE, Component="redis", Error=problem.error, **code)
        else:
            applog.log("ERROR", REDIS_REFUSED, Component="redis", Error=problem.error, **code)
        return False
    return True


def pre_stop(context: Any) -> None:
    """Let sink deliveries under way finish, give Redis the store writes it missed, then close
    the Redis connection."""
    runtime = current_runtime()
    if runtime is None:
        return
    unfinished = runtime.dispatcher.flush(PRE_STOP_FLUSH_S)
    if unfinished:
        applog.log("WARNING", "instance stopping with sink deliveries under way", Count=unfinished)
    if runtime.redis is not None:
        pending = runtime.store.flush_pending()
        if pending:
            applog.log(
                "WARNING", "instance stopping with store writes Redis has not taken", Count=pending
            )
        runtime.redis.close()
