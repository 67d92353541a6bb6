"""FC 3.0 entry points: the event handlers and the instance lifecycle hooks, kept thin."""

import os

# The package holds no pydantic plugin: skip pydantic's scan of every installed distribution's
# entry points, which the first model build would otherwise make (cold start).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from wababind.batch import mq_handler
from wababind.lifecycle import initialize, pre_stop
from wababind.webhook import http_handler

__all__ = ["http_handler", "initialize", "mq_handler", "pre_stop"]
