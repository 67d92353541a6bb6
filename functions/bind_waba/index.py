"""Function Compute entry points (FC 3.0 event handlers): kept thin on purpose."""

from wababind.batch import mq_handler
from wababind.webhook import http_handler

__all__ = ["http_handler", "mq_handler"]
