"""`python -m wababind_local.cams_simulator`: serve in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from wababind_local.cams_simulator.signing import DEFAULT_KEY
from wababind_local.cams_simulator.simulator import CamsSimulator


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground; print one JSON line with the endpoint and key first."""
    parser = argparse.ArgumentParser(
        prog="python -m wababind_local.cams_simulator",
        description="A local CAMS ChatappBindWaba endpoint for wababind.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--qps", type=float, default=10.0, help="per-account quota; 0 = none")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--jitter-ms", type=float, default=0.0, help="gateway delay before the quota counts"
    )
    parser.add_argument("--demo-faults", action="store_true", help="the demo's fault WabaIds")
    parser.add_argument(
        "--idle-timeout-s", type=float, default=None, help="close idle keep-alive connections"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = CamsSimulator(
        qps=args.qps if args.qps > 0 else None,
        latency_s=args.latency_ms / 1000,
        jitter_s=args.jitter_ms / 1000,
        demo_faults=args.demo_faults,
        host=args.host,
        port=args.port,
        idle_timeout_s=args.idle_timeout_s,
    )
    try:
        sim.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr)
        return 1
    try:
        line = {
            "endpoint": sim.endpoint,
            "access_key_id": DEFAULT_KEY.access_key_id,
            "access_key_secret": DEFAULT_KEY.access_key_secret,
        }
        print(json.dumps(line), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0
