"""AFTER_BIND: the onboarding steps CAMS documents after a bind, run with the new CustSpaceId.

    bind ✓ ── sync-phone-numbers (ChatappSyncPhoneNumber) ── account-webhook (UpdateAccountWebhook)
              each: the binder's call loop (SDK, signature, retries, deadline), its own quota

A step never changes the bind's Status and never binds again. Its result ({Code, Retryable}) and
the numbers are kept on the WabaId's idempotency record, so a redelivery or resend (a
`duplicate`) answers them and runs only the steps still missing or failed retryably. Both steps
are safe to repeat (a sync; the same callback address).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wababind import applog
from wababind.cams import ACCOUNT_WEBHOOK, SYNC_PHONE_NUMBERS, Answered
from wababind.credentials import Credentials
from wababind.errors import BindError
from wababind.idempotency import IdempotencyStore
from wababind.outcome import Outcome
from wababind.ratelimit import RateLimiter

if TYPE_CHECKING:
    from wababind.binder import Binder, Invocation

SYNC_STEP, WEBHOOK_STEP = "sync-phone-numbers", "account-webhook"
STEP_ACTIONS = {SYNC_STEP: SYNC_PHONE_NUMBERS, WEBHOOK_STEP: ACCOUNT_WEBHOOK}
# The fields of ChatappSyncPhoneNumber's PhoneNumbers the outcome carries:
# https://www.alibabacloud.com/help/en/chatapp/developer-reference/api-cams-2020-06-06-chatappsyncphonenumber
NUMBER_FIELDS = ("PhoneNumber", "VerifiedName", "Status", "QualityRating", "CodeVerificationStatus")
NO_CUST_SPACE = "NoCustSpaceId"  # CAMS bound without a CustSpaceId: no step can run


@dataclass(repr=False, eq=False)
class AccountWebhook:
    """Where CAMS sends the new space's status callbacks (ACCOUNT_WEBHOOK_URL / _QUEUE)."""

    url: str | None
    queue: bool

    def params(self, cust_space_id: str) -> dict[str, str]:
        """UpdateAccountWebhook's parameters; HttpFlag/QueueFlag are Y or N:
        https://help.aliyun.com/zh/chatapp/developer-reference/api-cams-2020-06-06-updateaccountwebhook"""
        params = {"CustSpaceId": cust_space_id, "HttpFlag": "Y" if self.url else "N"}
        if self.url:
            params["StatusCallbackUrl"] = self.url
        params["QueueFlag"] = "Y" if self.queue else "N"
        return params


class AfterBind:
    """Runs the configured steps, in AFTER_BIND's order, each on its own limiter."""

    def __init__(
        self,
        binder: Binder,
        store: IdempotencyStore,
        steps: tuple[str, ...],
        limiters: dict[str, RateLimiter],
        webhook: AccountWebhook | None = None,
    ):
        self._binder = binder
        self._store = store
        self.steps = steps
        self.limiters = limiters  # step → its operation's quota
        self._webhook = webhook

    def run(self, outcome: Outcome, stored: str | None, inv: Invocation) -> None:
        """Fill the outcome's AfterBind and PhoneNumbers: what `stored` (the record's JSON) says,
        plus the steps still due, run now; keeps the results if any step ran."""
        doc = json.loads(stored) if stored else {}
        results: dict[str, dict[str, Any]] = dict(doc.get("AfterBind") or {})
        numbers: list[dict[str, str | None]] | None = doc.get("PhoneNumbers")
        ran = False
        for step in self.steps:
            earlier = results.get(step)
            if earlier is not None and (
                earlier.get("Code") == "OK" or not earlier.get("Retryable")
            ):
                continue
            ran = True
            answer = self._step(step, outcome, inv)
            if isinstance(answer, BindError):
                results[step] = {"Code": answer.code, "Retryable": answer.retryable}
                applog.log(
                    "WARNING",
                    "after-bind step failed",
                    Step=step,
                    WabaId=outcome.waba_id,
                    Code=answer.code,
                    Retryable=answer.retryable,
                    Reason=answer.message,
                    RequestId=answer.request_id,
                )
                continue
            results[step] = {"Code": "OK", "Retryable": False}
            if step == SYNC_STEP:
                numbers = phone_numbers(answer.doc)
        outcome.after_bind = results
        outcome.phone_numbers = numbers
        if ran and outcome.waba_id is not None:
            kept = json.dumps(
                {"AfterBind": results, "PhoneNumbers": numbers}, separators=(",", ":")
            )
            self._store.record_steps(outcome.waba_id, kept)

    def _step(self, step: str, outcome: Outcome, inv: Invocation) -> Answered | BindError:
        space, waba_id = outcome.cust_space_id, outcome.waba_id or ""
        if not space:
            return BindError(NO_CUST_SPACE, "CAMS bound the WABA without a CustSpaceId", False)
        action = STEP_ACTIONS[step]
        params = (
            self._webhook.params(space)
            if step == WEBHOOK_STEP and self._webhook is not None
            else {"CustSpaceId": space}
        )
        cams = self._binder.cams
        call: Callable[[Credentials], Answered | BindError] = lambda creds: cams.call(  # noqa: E731
            action, params, creds
        )
        settled = self._binder.call_with_retries(waba_id, inv, call, self.limiters[step])
        return settled.result


def phone_numbers(doc: dict[str, Any]) -> list[dict[str, str | None]]:
    """ChatappSyncPhoneNumber's PhoneNumbers, each cut to NUMBER_FIELDS (absent ones null)."""
    found = doc.get("PhoneNumbers")
    if not isinstance(found, list):
        return []
    return [
        {name: None if item.get(name) is None else str(item[name]) for name in NUMBER_FIELDS}
        for item in found
        if isinstance(item, dict)
    ]
