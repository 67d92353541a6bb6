"""The overhead row's third side: only the work the SPEC asks of any webhook bind, nothing of ours.

A handler that keeps none of wababind's promises beyond one bind and one record: the FC event and
the bind request validated by the same pydantic edge models, the Standard Webhooks signature
verified by `standardwebhooks`, one ChatappBindWaba through the same `CamsClient` (the same SDK
client, configured as in production), the outcome record written and flushed as the log sink
writes it, and the JSON answer built. What it leaves out is what wababind adds: idempotency (no
second bind), the quota and its lanes, the deadline budget, the app log's context, the sinks'
dispatch. Webhook over this is the CPU those promises cost; this over a bare call is the cost
of the required steps, which no implementation of the SPEC avoids.
"""

from __future__ import annotations

import json
from typing import Any

from standardwebhooks import Webhook

from wababind.cams import Bound, CamsClient
from wababind.config import CamsEndpoint
from wababind.credentials import Credentials
from wababind.models import BindRequest, CallbackPolicy, HttpTriggerEvent
from wababind.outcome import Outcome, utcnow
from wababind.sinks.log import write_line


class RequiredWork:
    """`handle(event)`: one verified webhook bound and recorded, in the handler's order."""

    def __init__(self, endpoint: CamsEndpoint, secret: str, creds: Credentials) -> None:
        self._cams = CamsClient(endpoint, "ap-southeast-1", timeout_s=10.0)
        self._verifier = Webhook(secret)
        self._creds = creds
        self._policy = CallbackPolicy()

    def handle(self, event: bytes) -> dict[str, Any]:
        started = utcnow()
        request = HttpTriggerEvent.model_validate_json(event)
        self._verifier.verify(request.body, request.headers, json_parse=False)
        bind = BindRequest.model_validate(json.loads(request.body), context=self._policy)
        result = self._cams.bind_waba(bind.waba_id, self._creds)
        if not isinstance(result, Bound):  # the comparison needs a bind on every side
            raise RuntimeError(f"the required-work bind failed: {result.code}")
        outcome = Outcome(
            event_id=request.headers["webhook-id"],
            source="http",
            waba_id=bind.waba_id,
            reference=bind.reference,
            status="bound",
            code="OK",
            message="bound",
            attempts=1,
            cust_space_id=result.cust_space_id,
            request_id=result.request_id,
            started_at=started,
            finished_at=utcnow(),
            lane="interactive",
        )
        line = outcome.to_json()
        write_line(line)
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "body": line,
            "isBase64Encoded": False,
        }
