"""Local Function Compute: the functions of s.yaml behind FC's invoke API and an HTTP trigger.

`fc2.Client(endpoint=..., accessKeyID=..., accessKeySecret=...).invoke_function(svc, fn, ...)`
works against it unchanged: `POST /2016-08-15/services/{svc}[.{qualifier}]/functions/{fn}/
invocations`, signed `FC id:base64(HMAC-SHA256)` and checked against the configured key, sync
(200, `x-fc-error-type` on an unhandled error) or async (`x-fc-invocation-type: Async` → 202,
run in the background with FC's retries). Every other request goes to the function that has an
`http` trigger, as an FC 3.0 HTTP trigger event. Handlers run in this process, all functions'
environments merged into os.environ (one process plays every instance); each gets FC's context
(fc_context.py), and past the function's `timeout` its caller gets FC's timeout error.

`python -m wababind_local.fc_emulator` (`make serve`) starts it with the CAMS simulator behind.
"""

from __future__ import annotations

from wababind_local.fc_emulator.emulator import (
    LOCAL_FC_KEY_ID,
    LOCAL_FC_KEY_SECRET,
    LOCAL_WEBHOOK_SECRET,
    SKIPPED_ENV,
    FcEmulator,
    Handler,
)
from wababind_local.fc_emulator.fc_api import (
    API_VERSION,
    INVOKE_PATH,
    MAX_ASYNC_PAYLOAD,
    MAX_SKEW_S,
    MAX_SYNC_PAYLOAD,
    UNHANDLED,
    FunctionTimeout,
    Reply,
    fc_error,
    sign,
    string_to_sign,
)
from wababind_local.fc_emulator.http_trigger import http_reply, http_trigger_event
from wababind_local.fc_emulator.project import (
    DEFAULT_ASYNC_RETRIES,
    ROOT,
    FunctionSpec,
    Project,
    load_project,
    resolve,
)
from wababind_local.fc_emulator.serve import banner, main
from wababind_local.fc_emulator.server import _RequestHandler, _Server

__all__ = [
    "API_VERSION",
    "DEFAULT_ASYNC_RETRIES",
    "INVOKE_PATH",
    "LOCAL_FC_KEY_ID",
    "LOCAL_FC_KEY_SECRET",
    "LOCAL_WEBHOOK_SECRET",
    "MAX_ASYNC_PAYLOAD",
    "MAX_SKEW_S",
    "MAX_SYNC_PAYLOAD",
    "ROOT",
    "SKIPPED_ENV",
    "UNHANDLED",
    "FcEmulator",
    "FunctionSpec",
    "FunctionTimeout",
    "Handler",
    "Project",
    "Reply",
    "_RequestHandler",
    "_Server",
    "banner",
    "fc_error",
    "http_reply",
    "http_trigger_event",
    "load_project",
    "main",
    "resolve",
    "sign",
    "string_to_sign",
]
