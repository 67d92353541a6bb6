"""FC 3.0 entry points: the event handlers and the instance lifecycle hooks, kept thin."""

from wababind.batch import mq_handler
from wababind.lifecycle import initialize, pre_stop
from wababind.webhook import http_handler

__all__ = ["http_handler", "initialize", "mq_handler", "pre_stop"]
