"""`make serve`: the emulator in the foreground with the CAMS simulator behind, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from wababind_local.fc_emulator.emulator import (
    LOCAL_FC_KEY_ID,
    LOCAL_FC_KEY_SECRET,
    LOCAL_WEBHOOK_SECRET,
    FcEmulator,
)
from wababind_local.fc_emulator.project import ROOT


def main(argv: list[str] | None = None) -> int:
    """`make serve`: serve in the foreground until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m wababind_local.fc_emulator",
        description="Local Function Compute: the s.yaml functions, the CAMS simulator behind.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--s-yaml", type=Path, default=ROOT / "s.yaml")
    parser.add_argument("--no-demo-faults", action="store_true", help="a fault-free simulator")
    parser.add_argument("--quiet", action="store_true", help="no line per request")
    args = parser.parse_args(argv)

    from wababind_local.cams_simulator import DEFAULT_STS_KEY, CamsSimulator

    if threading.current_thread() is threading.main_thread():
        # Ctrl-C and SIGTERM stop it, also when started from a shell that ignores SIGINT
        # in background jobs (Python keeps an inherited SIG_IGN otherwise).
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    key_id = os.environ.get("WABABIND_LOCAL_FC_KEY_ID", LOCAL_FC_KEY_ID)
    key_secret = os.environ.get("WABABIND_LOCAL_FC_KEY_SECRET", LOCAL_FC_KEY_SECRET)
    webhook_secret = os.environ.get("WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET
    try:
        with CamsSimulator(demo_faults=not args.no_demo_faults) as sim:
            overrides = {
                "CAMS_ENDPOINT": sim.endpoint,
                # What FC gives a function with a role: an STS key (the simulator's).
                "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_STS_KEY.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_STS_KEY.access_key_secret,
                "ALIBABA_CLOUD_SECURITY_TOKEN": DEFAULT_STS_KEY.security_token or "",
                "WEBHOOK_SECRET": webhook_secret,
            }
            emulator = FcEmulator(
                s_yaml=args.s_yaml,
                access_key_id=key_id,
                access_key_secret=key_secret,
                host=args.host,
                port=args.port,
                env=overrides,
                verbose=not args.quiet,
            )
            try:
                emulator.start()
            except OSError as exc:
                print(
                    f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                    "is another `make serve` running? (--port picks another)",
                    file=sys.stderr,
                )
                return 1
            try:
                print(banner(emulator, sim.endpoint, key_id, key_secret, webhook_secret))
                print("Ctrl-C stops.", flush=True)
                threading.Event().wait()
            except KeyboardInterrupt:
                print("stopping", flush=True)
            finally:
                emulator.stop()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    return 0


def banner(
    emulator: FcEmulator, cams_endpoint: str, key_id: str, key_secret: str, webhook_secret: str
) -> str:
    """Where everything is; secrets are named, never shown (README has the local dev values)."""
    project = emulator.project
    http_fn = project.http_function
    shown_key = (
        "the local dev secret (README)"
        if key_secret == LOCAL_FC_KEY_SECRET
        else "secret from $WABABIND_LOCAL_FC_KEY_SECRET"
    )
    shown_webhook = (
        "the local dev secret (`wababind sign` uses it)"
        if webhook_secret == LOCAL_WEBHOOK_SECRET
        else "from $WEBHOOK_SECRET"
    )
    lines = [
        "wababind local Function Compute",
        f"  HTTP function   {http_fn.name if http_fn else '-'}  {emulator.endpoint}/",
        f"  fc2 endpoint    {emulator.endpoint}  service {project.name}",
        f"  functions       {', '.join(project.functions)}",
        f"  fc2 AccessKey   {key_id}, {shown_key}",
        f"  WEBHOOK_SECRET  {shown_webhook}",
        f"  CAMS simulator  {cams_endpoint}",
    ]
    return "\n".join(lines)
