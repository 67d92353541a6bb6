"""What the simulator answers: the RPC error document, the request id, the answer to send."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from wababind_local.cams_simulator.signing import SimKey

PRODUCT, VERSION, ACTION = "cams", "2020-06-06", "ChatappBindWaba"
# The after-bind steps, each on its own per-account quota (10 calls/s):
# https://www.alibabacloud.com/help/en/chatapp/developer-reference/api-cams-2020-06-06-chatappsyncphonenumber
# https://help.aliyun.com/zh/chatapp/developer-reference/api-cams-2020-06-06-updateaccountwebhook
SYNC_ACTION, WEBHOOK_ACTION = "ChatappSyncPhoneNumber", "UpdateAccountWebhook"
ACTIONS = (ACTION, SYNC_ACTION, WEBHOOK_ACTION)
HOST_ID = "cams.ap-southeast-1.aliyuncs.com"


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json;charset=utf-8"
    request_id: str | None = None
    delay_s: float = 0.0
    drop: bool = False


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _error_doc(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "HostId": HOST_ID,
        "Code": code,
        "Message": message,
        "Recommend": (
            f"https://api.aliyun.com/troubleshoot?q={code}&product={PRODUCT}&requestId={request_id}"
        ),
    }


def _access_denied_detail(key: SimKey, action: str = ACTION) -> dict[str, str]:
    return {
        "AuthAction": f"{PRODUCT}:{action}",
        "AuthPrincipalType": "AssumedRoleUser" if key.security_token else "SubUser",
        "AuthPrincipalDisplayName": key.access_key_id,
        "AuthPrincipalOwnerId": "1234567890",
        "NoPermissionType": "ImplicitDeny",
        "PolicyType": "AccountLevelIdentityBasedPolicy",
        "EncodedDiagnosticMessage": "simulated",
    }
