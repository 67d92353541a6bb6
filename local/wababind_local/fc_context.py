"""The context objects FC 3.0 gives Python handlers, with the same field names.

Layouts from the FC 3.0 "Context" doc for Python (https://help.aliyun.com/en/functioncompute/fc/context-1,
https://www.alibabacloud.com/help/en/functioncompute/context-1):
- python3.10 (and 3.9, 3.6): request_id, credentials, function (name, handler, memory,
  timeout), service (log_project, log_store, qualifier, version_id), region, account_id;
- python3.12: no `credentials` (the role's key is in ALIBABA_CLOUD_ACCESS_KEY_ID,
  ALIBABA_CLOUD_ACCESS_KEY_SECRET, ALIBABA_CLOUD_SECURITY_TOKEN), no `service`: log_project
  and log_store at the top, qualifier and version_id in `function`; and a `logger`.
FC offers no remaining-time method: handlers derive their deadline from `function.timeout` and
their own start time, so the emulator sets that from s.yaml.

Standard library only: the package test loads this file into the runtime's bare CPython.
"""

from __future__ import annotations

import logging
import os
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


@dataclass(frozen=True)
class FunctionMeta312:
    """python3.12's FunctionMeta: the qualifier and version moved here from ServiceMeta."""

    name: str
    handler: str
    memory: int
    timeout: int
    version_id: str = ""
    qualifier: str = "LATEST"


@dataclass(frozen=True)
class FCContext312:
    """What a python3.12 handler receives: neither `credentials` nor `service`."""

    function: FunctionMeta312
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "ap-southeast-1"
    account_id: str = "1234567890123456"
    log_project: str = ""
    log_store: str = ""
    logger: logging.Logger | None = None  # FC: None until getLogger()

    def getLogger(self) -> logging.Logger:  # FC's name
        return self.logger or logging.getLogger("fc")


def context_for(
    runtime: str,
    function: FunctionMeta,
    credentials: Credentials | None = None,
    service: ServiceMeta | None = None,
    request_id: str | None = None,
) -> FCContext | FCContext312:
    """The context of `runtime`'s layout. For python3.12 the role's key goes into the
    ALIBABA_CLOUD_* environment instead, as FC puts it there."""
    service = service or ServiceMeta()
    request_id = request_id or str(uuid.uuid4())
    if runtime != "python3.12":
        return FCContext(function, credentials, service, request_id)
    if credentials is not None:
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"] = credentials.access_key_id
        os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = credentials.access_key_secret
        os.environ["ALIBABA_CLOUD_SECURITY_TOKEN"] = credentials.security_token
    meta = FunctionMeta312(
        function.name,
        function.handler,
        function.memory,
        function.timeout,
        service.version_id,
        service.qualifier,
    )
    return FCContext312(
        meta,
        request_id,
        log_project=service.log_project,
        log_store=service.log_store,
    )
