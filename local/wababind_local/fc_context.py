"""The context object FC 3.0 gives Python 3.10 handlers, with the same field names.

Layout from the FC 3.0 "context" doc (Python 3.10): request_id, credentials, function, service,
region, account_id. FC offers no remaining-time method: handlers derive their deadline from
`function.timeout` and their own start time, so the emulator sets that from s.yaml.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    """The function role's temporary key (FC fills it only when the function has a role)."""

    access_key_id: str
    access_key_secret: str
    security_token: str = ""

    def __repr__(self) -> str:  # never print the secret or the token
        return f"Credentials(access_key_id={self.access_key_id!r}, ...)"


@dataclass(frozen=True)
class FunctionMeta:
    name: str
    handler: str
    memory: int
    timeout: int


@dataclass(frozen=True)
class ServiceMeta:
    log_project: str = ""
    log_store: str = ""
    qualifier: str = "LATEST"
    version_id: str = ""


@dataclass(frozen=True)
class FCContext:
    """What a handler receives as `context`."""

    function: FunctionMeta
    credentials: Credentials | None = None
    service: ServiceMeta = field(default_factory=ServiceMeta)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "ap-southeast-1"
    account_id: str = "1234567890123456"
