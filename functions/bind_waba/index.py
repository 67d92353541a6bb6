"""FC 3.0 entry points: the event handlers and the instance lifecycle hooks, kept thin.

Each function imports only what its own handler needs. FC looks a handler up as an attribute of
this module, so each is a real function here that imports its module on first use; the
initializer (`wababind.lifecycle.initialize`) imports the modules of the handler named in
`context.function.handler`, so the first request finds them imported.
"""

from __future__ import annotations

import os
from typing import Any

# The package holds no pydantic plugin: skip pydantic's scan of every installed distribution's
# entry points, which the first model build would otherwise make (cold start).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def http_handler(event: bytes | str, context: Any) -> dict[str, Any]:
    """The HTTP function (`wababind.webhook`)."""
    from wababind.webhook import http_handler as handle

    return handle(event, context)


def mq_handler(event: bytes | str, context: Any) -> str:
    """The MQ function (`wababind.batch`). It raises so that the trigger redelivers; FC answers
    an exception with its type, message and `stackTrace` (FC docs, "Error handling":
    https://www.alibabacloud.com/help/en/functioncompute/fc/error-handling-1-1). Raised again
    from here without its traceback or cause, the trace is this one line, none of the package."""
    from wababind.batch import mq_handler as handle
    from wababind.errors import WababindError

    try:
        return handle(event, context)
    except WababindError as exc:  # batch.mq_handler raises nothing else
        error = exc
    raise error.with_traceback(None) from None


def initialize(context: Any) -> None:
    """FC's initializer: once per instance, before its first invocation."""
    from wababind.lifecycle import initialize as run

    run(context)


def pre_stop(context: Any) -> None:
    """FC's preStop hook: before the instance stops."""
    from wababind.lifecycle import pre_stop as run

    run(context)


__all__ = ["http_handler", "initialize", "mq_handler", "pre_stop"]
