"""Faults a test or the demo injects per WabaId: a documented error, a bad answer, slowness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wababind_local.cams_simulator.answers import ACTION, ACTIONS
from wababind_local.cams_simulator.errors import DOCUMENTED_ERRORS


@dataclass(frozen=True)
class Fault:
    """What the simulator answers for a WabaId instead of a plain success.

    `times=None` fires on every call; `times=N` on the next N calls of that WabaId (those that
    pass the quota), after which it clears; `times=0` clears it at once. `action`: the call it
    answers (ChatappBindWaba, or an after-bind step of the CustSpaceId bound for the WabaId).
    """

    kind: str
    status: int = 200
    code: str = ""
    message: str = ""
    seconds: float = 0.0
    times: int | None = None
    action: str = ACTION

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of: {', '.join(ACTIONS)}")
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.times is not None and (isinstance(self.times, bool) or self.times < 0):
            raise ValueError("times must be None or a count >= 0")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")

    def on(self, action: str) -> Fault:
        """The same fault, answering `action` (an after-bind step) instead of the bind."""
        import dataclasses

        return dataclasses.replace(self, action=action)

    @classmethod
    def error(cls, code: str, status: int, message: str, times: int | None = None) -> Fault:
        """CAMS's JSON error answer with `code` at HTTP `status`."""
        return cls("error", status=status, code=code, message=message, times=times)

    @classmethod
    def success_false(cls, code: str, message: str, times: int | None = None) -> Fault:
        """HTTP 200 whose JSON says `Success: false` with `code`."""
        return cls("success_false", code=code, message=message, times=times)

    @classmethod
    def http_status(cls, status: int, times: int | None = None) -> Fault:
        """A bare HTTP `status` with an HTML body, as a load balancer in front would send."""
        return cls("http_status", status=status, times=times)

    @classmethod
    def garbage(cls, times: int | None = None) -> Fault:
        """HTTP 200 with a body that is not JSON."""
        return cls("garbage", times=times)

    @classmethod
    def slow(cls, seconds: float, times: int | None = None) -> Fault:
        """Answer a normal success (and bind) after `seconds` more."""
        return cls("slow", seconds=seconds, times=times)

    @classmethod
    def drop(cls, times: int | None = None) -> Fault:
        """Close the connection without answering."""
        return cls("drop", times=times)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Fault:
        """The control API's form: {"kind": ..., "code"/"status"/"message"/"seconds", "times",
        "action"} (no action: ChatappBindWaba)."""
        return cls._from_dict(doc).on(str(doc.get("action") or ACTION))

    @classmethod
    def _from_dict(cls, doc: dict[str, Any]) -> Fault:
        kind = str(doc.get("kind", ""))
        times = doc.get("times")
        if times is not None and not isinstance(times, int):
            raise ValueError("times must be an integer or null")
        if kind == "error":
            code = str(doc.get("code") or "")
            if not code:
                raise ValueError("an error fault needs a code")
            status, message = DOCUMENTED_ERRORS.get(code, (400, code))
            return cls.error(
                code, int(doc.get("status", status)), str(doc.get("message", message)), times
            )
        if kind == "success_false":
            code = str(doc.get("code") or "")
            if not code:
                raise ValueError("a success_false fault needs a code")
            message = DOCUMENTED_ERRORS.get(code, (200, code))[1]
            return cls.success_false(code, str(doc.get("message", message)), times)
        if kind == "http_status":
            return cls.http_status(int(doc.get("status", 503)), times)
        if kind == "slow":
            return cls.slow(float(doc.get("seconds", 1.0)), times)
        if kind == "garbage":
            return cls.garbage(times)
        if kind == "drop":
            return cls.drop(times)
        raise ValueError(f"unknown fault kind {kind!r}; one of: {', '.join(_FAULT_KINDS)}, clear")

    @property
    def description(self) -> str:
        """One line for people: what CAMS answers, and for how many calls."""
        what = {
            "error": f"CAMS answers {self.code} (HTTP {self.status}): {_short(self.message)}",
            "success_false": (
                f"CAMS answers HTTP 200, Success false, {self.code}: {_short(self.message)}"
            ),
            "http_status": f"a bare HTTP {self.status} page, no JSON",
            "garbage": "HTTP 200 with a body that is not JSON",
            "slow": f"answers OK {self.seconds:g} s late",
            "drop": "closes the connection without answering",
        }[self.kind]
        if self.times is None:
            return f"{what} — every call" + ("" if self.action == ACTION else f" of {self.action}")
        if self.times == 0:
            return f"{what} — cleared"
        then = "binds" if self.action == ACTION else f"{self.action} succeeds"
        if self.times == 1:
            return f"{what} — the next call only, then {then}"
        return f"{what} — the next {self.times} calls, then {then}"

    def __str__(self) -> str:
        return self.description


_FAULT_KINDS = ("error", "success_false", "http_status", "garbage", "slow", "drop")


def _short(text: str, limit: int = 80) -> str:
    text = text.rstrip(" .")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


DEMO_FAULTS: dict[str, Fault] = {
    "900000000000001": Fault.error("Ram.PermissionDeny", *DOCUMENTED_ERRORS["Ram.PermissionDeny"]),
    "900000000000002": Fault.error(
        "Product.Unsubscript", *DOCUMENTED_ERRORS["Product.Unsubscript"]
    ),
    "900000000000003": Fault.success_false(
        "ERR-FB-001", "Graph API refused the WABA: missing permissions."
    ),
    "900000000000004": Fault.http_status(503, times=1),
}


def _answer_code(fault: Fault | None) -> str:
    if fault is None or fault.kind == "slow":
        return "OK"
    return {
        "error": fault.code,
        "success_false": fault.code,
        "http_status": f"HTTP{fault.status}",
        "garbage": "Garbage",
        "drop": "Dropped",
    }[fault.kind]
