"""The simulator's AccessKeys and Alibaba Cloud's v1 RPC signature (HMAC-SHA1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from wababind_local.cams_simulator.errors import _Refusal


@dataclass(frozen=True)
class SimKey:
    """An AccessKey the simulator accepts; keys of one account share its quota."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    account: str = "default"

    def __repr__(self) -> str:
        return f"SimKey(access_key_id={self.access_key_id!r}, account={self.account!r}, ...)"


DEFAULT_KEY = SimKey("LTAI5tSimulatorKey0001", "SimulatorSecret0001NotARealKey")


DEFAULT_STS_KEY = SimKey(
    "STS.NTSimulatorStsKey0001",
    "SimulatorStsSecret0001NotARealKey",
    security_token="CAISimulatorSecurityToken0001+NotAReal/Token==",
    account=DEFAULT_KEY.account,
)


def percent_encode(value: str) -> str:
    """RFC 3986 encoding, as Alibaba Cloud's v1 signature wants it (space %20, `~` kept)."""
    return quote(value, safe="~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    """`METHOD&%2F&` + the encoded, sorted canonical query (every parameter but Signature)."""
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )
    return f"{method}&%2F&{percent_encode(canonical)}"


def sign(text: str, secret: str) -> str:
    """v1 HMAC-SHA1 signature, key = secret + "&"."""
    digest = hmac.new(f"{secret}&".encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _parse_timestamp(value: str) -> float:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise _Refusal("InvalidTimeStamp.Format")
