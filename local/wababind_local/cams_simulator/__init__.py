"""A loopback CAMS (Chat App Message Service) that the real aliyun-python-sdk-core talks to.

It answers the actions the functions call, `ChatappBindWaba` (RPC, version 2020-06-06) and the
after-bind steps `ChatappSyncPhoneNumber` and `UpdateAccountWebhook` (on a CustSpaceId it issued;
numbers derived from its WabaId, faults set per WabaId and action, a quota per action), after
the checks the Alibaba Cloud API gateway makes, in its order: required parameters, AccessKeyId,
STS SecurityToken, signature method/version, the v1 HMAC-SHA1 signature (over the query string
and any form body, as the SDK signs them), Timestamp (±15 min), SignatureNonce reuse, Action,
Version, WabaId. Then CAMS's per-account quota (a sliding one-second window, `System.LimitControl`
above it), latency, an injected fault for the WabaId if any, and success.

Tests drive it in-process (`set_fault`, `calls`, `count`, ...); other processes drive it over
`/_sim/` (GET /_sim/calls, GET /_sim/bound, POST /_sim/faults, /_sim/config, /_sim/reset).
`python -m wababind_local.cams_simulator` serves it in the foreground.
"""

from __future__ import annotations

from wababind_local.cams_simulator.answers import (
    ACTION,
    ACTIONS,
    HOST_ID,
    PRODUCT,
    SYNC_ACTION,
    VERSION,
    WEBHOOK_ACTION,
)
from wababind_local.cams_simulator.errors import DOCUMENTED_ERRORS, QUOTA_CODE
from wababind_local.cams_simulator.faults import DEMO_FAULTS, Fault
from wababind_local.cams_simulator.serve import main
from wababind_local.cams_simulator.server import MAX_BODY
from wababind_local.cams_simulator.signing import (
    DEFAULT_KEY,
    DEFAULT_STS_KEY,
    SimKey,
    percent_encode,
    sign,
    string_to_sign,
)
from wababind_local.cams_simulator.simulator import (
    NONCE_MEMORY_S,
    NONCES_PER_KEY,
    TIMESTAMP_TOLERANCE_S,
    CallRecord,
    CamsSimulator,
    cust_space_id,
    max_in_window,
    phone_numbers,
)

__all__ = [
    "ACTION",
    "ACTIONS",
    "DEFAULT_KEY",
    "DEFAULT_STS_KEY",
    "DEMO_FAULTS",
    "DOCUMENTED_ERRORS",
    "HOST_ID",
    "MAX_BODY",
    "NONCES_PER_KEY",
    "NONCE_MEMORY_S",
    "PRODUCT",
    "QUOTA_CODE",
    "SYNC_ACTION",
    "TIMESTAMP_TOLERANCE_S",
    "VERSION",
    "WEBHOOK_ACTION",
    "CallRecord",
    "CamsSimulator",
    "Fault",
    "SimKey",
    "cust_space_id",
    "main",
    "max_in_window",
    "percent_encode",
    "phone_numbers",
    "sign",
    "string_to_sign",
]
