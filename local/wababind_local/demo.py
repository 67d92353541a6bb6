"""`make demo`: every sample in events/ through its handler, against the embedded CAMS simulator."""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import secrets
import sys
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wababind_local.fc_context import FCContext, FunctionMeta

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
sys.path.insert(0, str(ROOT / "functions" / "bind_waba"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wababind_local.demo", description=__doc__)
    parser.add_argument(
        "--out", type=Path, help="also write every outcome record there, as JSON Lines"
    )
    args = parser.parse_args(argv)
    from wababind_local.cams_simulator import DEFAULT_KEY, DEMO_FAULTS, CamsSimulator

    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with CamsSimulator(demo_faults=True) as sim:
        os.environ.update(
            CAMS_ENDPOINT=sim.endpoint,
            CAMS_TIMEOUT_S="2",
            WEBHOOK_SECRET=webhook_secret,
            ALIBABA_CLOUD_ACCESS_KEY_ID=DEFAULT_KEY.access_key_id,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=DEFAULT_KEY.access_key_secret,
            # After each bind: the WABA's numbers, and its status callbacks (README "After the
            # bind"); the simulator answers both.
            AFTER_BIND="sync-phone-numbers,account-webhook",
            ACCOUNT_WEBHOOK_URL="https://hooks.example.com/cams-status",
        )
        os.environ.pop("ACCOUNT_WEBHOOK_QUEUE", None)
        print(f"CAMS simulator on {sim.endpoint}; demo WabaIds with built-in faults:")
        for waba_id, fault in DEMO_FAULTS.items():
            print(f"  {waba_id}  {fault.description}")
        print()
        statuses: Counter[str] = Counter()
        records: list[dict[str, Any]] = []
        for path in sorted(EVENTS.glob("*.json")):
            for record in run_sample(path, webhook_secret):
                statuses[record["Status"]] += 1
                records.append(record)
                print(describe(path.name, record))
        if args.out:
            lines = (json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records)
            args.out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        print()
        total = sum(statuses.values())
        print(
            f"{total} outcomes: {statuses['bound']} bound, {statuses['duplicate']} duplicate, "
            f"{statuses['failed']} failed; the simulator saw {sim.count()} CAMS bind calls "
            f"and {sim.count(action=None) - sim.count()} after-bind calls"
        )
    return 0


def run_sample(path: Path, webhook_secret: str) -> list[dict[str, Any]]:
    """Outcome records as the log sink printed them (also when the handler raises)."""
    import index

    event = json.loads(path.read_bytes())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            if isinstance(event, dict) and "requestContext" in event:
                response = index.http_handler(
                    sign(event, webhook_secret), fc_context("bind-waba-http")
                )
                if response["statusCode"] not in (200, 502, 503):
                    print(json.dumps({"Kind": "DemoHttpAnswer", **response}))
            else:
                index.mq_handler(path.read_bytes(), fc_context("bind-waba-mq"))
        except Exception as exc:  # the MQ handler raises to make the trigger redeliver
            print(json.dumps({"Kind": "DemoRaised", "Error": f"{type(exc).__name__}: {exc}"}))
    records = []
    for line in out.getvalue().splitlines():
        doc = json.loads(line) if line.startswith("{") else {}
        if doc.get("Kind") == "WabaBindOutcome":
            records.append(doc)
        elif doc.get("Kind") in ("DemoRaised", "DemoHttpAnswer"):
            print(f"{path.name:32} {doc}")
    return records


def sign(event: dict[str, Any], secret: str) -> bytes:
    from standardwebhooks import Webhook

    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc)
    event["headers"] = {
        **event.get("headers", {}),
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, event.get("body", "")),
    }
    return json.dumps(event).encode()


def fc_context(function_name: str) -> FCContext:
    """No credentials in the context: the functions take the simulator's key from the env."""
    handler = "index.http_handler" if function_name.endswith("http") else "index.mq_handler"
    return FCContext(function=FunctionMeta(function_name, handler, memory=512, timeout=30))


def describe(sample: str, r: dict[str, Any]) -> str:
    what = {
        "bound": f"bound    CustSpaceId={r['CustSpaceId']}",
        "duplicate": f"duplicate CustSpaceId={r['CustSpaceId']}",
        "failed": f"failed   {r['Code']}{' (retryable)' if r['Retryable'] else ''}: {r['Message']}",
    }[r["Status"]]
    line = f"{sample:32} {r['Source']:8} WabaId={r['WabaId']!s:18} {what}  attempts={r['Attempts']}"
    numbers = r.get("PhoneNumbers")
    if numbers:
        line += (
            "\n"
            + " " * 33
            + "numbers: "
            + ", ".join(
                f"+{n['PhoneNumber']} {n['VerifiedName']!r} {n['Status']} {n['QualityRating']}"
                for n in numbers
            )
        )
    failed_steps = {
        step: s["Code"] for step, s in (r.get("AfterBind") or {}).items() if s["Code"] != "OK"
    }
    if failed_steps:
        line += "\n" + " " * 33 + f"after-bind steps not done: {failed_steps}"
    return line


if __name__ == "__main__":
    sys.exit(main())
