"""Running index.mq_handler in this process: its environment, context and one invoke."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from wababind_local.bench.config import CAMS_TIMEOUT_S, CODE_ROOT, HANDLER_MODULE, MQ_TIMEOUT_S
from wababind_local.cams_simulator import (
    DEFAULT_STS_KEY,
)
from wababind_local.fc_context import Credentials, FCContext, FunctionMeta


def _product_path() -> None:
    if str(CODE_ROOT) not in sys.path:
        sys.path.insert(0, str(CODE_ROOT))


def waba_ids(prefix: str, tag: int, count: int) -> list[str]:
    """Unique, valid WabaIds (digits) for one load of one run."""
    return [f"{prefix}{tag:03d}{i:06d}" for i in range(count)]


def bench_context() -> FCContext:
    """bind-waba-mq's context, with the simulator's STS key as the function role's key."""
    return FCContext(
        function=FunctionMeta("bind-waba-mq", "index.mq_handler", memory=512, timeout=MQ_TIMEOUT_S),
        credentials=Credentials(
            DEFAULT_STS_KEY.access_key_id,
            DEFAULT_STS_KEY.access_key_secret,
            DEFAULT_STS_KEY.security_token or "",
        ),
    )


def product_env(endpoint: str, qps: float, redis_url: str | None) -> dict[str, str | None]:
    """The function's environment for one load (None: unset the variable)."""
    return {
        "CAMS_ENDPOINT": endpoint,
        "CAMS_QPS": f"{qps:g}",
        "CAMS_TIMEOUT_S": f"{CAMS_TIMEOUT_S:g}",
        "OUTCOME_SINKS": "log",
        "REDIS_URL": redis_url,
        # no steps after the bind unless a scenario asks for them (bench/after_bind.py)
        "AFTER_BIND": None,
        "ACCOUNT_WEBHOOK_URL": None,
        "ACCOUNT_WEBHOOK_QUEUE": None,
    }


@contextlib.contextmanager
def patched_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or unset) variables, then put every one back as it was."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def invoke(handler: Callable[[bytes, Any], Any], ids: Sequence[str]) -> dict[str, Any]:
    """One direct-invoke batch; its outcome lines are captured, so stdout stays readable.

    Returns plain data (it crosses process boundaries): start/finish (time.monotonic, which
    all processes share on Linux), statuses, per-bind durations, the exception type if the
    handler raised (it does when a bind failed retryably), and the count of app-log warnings.
    """
    event = json.dumps([{"WabaId": w} for w in ids]).encode()
    out, err = io.StringIO(), io.StringIO()
    raised = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        started = time.monotonic()
        try:
            handler(event, bench_context())
        except Exception as exc:
            raised = type(exc).__name__
        finished = time.monotonic()
    statuses: Counter[str] = Counter()
    durations: list[float] = []
    for line in out.getvalue().splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and doc.get("Kind") == "WabaBindOutcome":
                statuses[str(doc.get("Status"))] += 1
                durations.append(float(doc.get("DurationMs", 0)) / 1000)
    warnings = sum(
        1 for line in err.getvalue().splitlines() if re.search(r'"Level":"(WARNING|ERROR)"', line)
    )
    return {
        "started": started,
        "finished": finished,
        "statuses": dict(statuses),
        "durations": durations,
        "raised": raised,
        "warnings": warnings,
    }


def _load_handler() -> Callable[[bytes, Any], Any]:
    _product_path()
    handler: Callable[[bytes, Any], Any] = importlib.import_module(HANDLER_MODULE).mq_handler
    return handler


def run_initializer(context: FCContext | None = None) -> bool:
    """What FC does on a new instance before its first invocation: call the function's
    initializer (`index.initialize`, when the code has one). True if there was one."""
    _product_path()
    initialize = getattr(importlib.import_module(HANDLER_MODULE), "initialize", None)
    if initialize is None:
        return False
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        initialize(context or bench_context())
    return True


def _reset_runtime() -> None:
    _product_path()
    from wababind.runtime import reset_runtime

    reset_runtime()
