"""`wababind simulate`: the CAMS simulator in the foreground, with chosen faults."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from typing import Any

from wababind_local.cli.base import CliError, Commands

FAULT_FORMS = (
    "CODE (a documented CAMS error, e.g. Ram.PermissionDeny)",
    "success_false:CODE",
    "http_status:STATUS",
    "slow:SECONDS",
    "garbage",
    "drop",
)


def parse_fault(text: str) -> Any:
    """`KIND[:ARG][*TIMES]` → a simulator Fault; `*N` fires on the next N calls only."""
    from wababind_local import cams_simulator as cams

    spec, _, times_text = text.partition("*")
    kind, _, arg = spec.partition(":")
    doc: dict[str, Any] = {"kind": kind}
    if kind in cams.DOCUMENTED_ERRORS and not arg:
        doc = {"kind": "error", "code": kind}
    elif kind == "success_false" and arg:
        doc["code"] = arg
    elif kind == "http_status" and arg.isdigit():
        doc["status"] = int(arg)
    elif kind == "slow":
        try:
            doc["seconds"] = float(arg)
        except ValueError:
            raise CliError(f"{text!r}: slow:SECONDS wants a number of seconds") from None
    elif kind not in ("garbage", "drop") or arg:
        raise CliError(f"unknown fault {text!r}; one of: {', '.join(FAULT_FORMS)}, then *N")
    if times_text:
        if not times_text.isdigit():
            raise CliError(f"{text!r}: *N wants a whole number of calls")
        doc["times"] = int(times_text)
    try:
        return cams.Fault.from_dict(doc)
    except ValueError as exc:
        raise CliError(f"{text!r}: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from wababind_local import cams_simulator as cams

    faults: dict[str, Any] = {}
    for item in args.fault:
        waba_id, sep, spec = item.partition("=")
        if not sep or not waba_id.isdigit():
            raise CliError(f"--fault wants WABA_ID=FAULT, not {item!r}")
        faults[waba_id] = parse_fault(spec)
    default = parse_fault(args.default_fault) if args.default_fault else None
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C and SIGTERM stop it, also when started from a shell that ignores SIGINT
        # in background jobs (Python keeps an inherited SIG_IGN otherwise).
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sim = cams.CamsSimulator(
        host=args.host,
        port=args.port,
        qps=args.qps if args.qps > 0 else None,
        latency_s=args.latency_ms / 1000,
        jitter_s=args.jitter_ms / 1000,
        demo_faults=args.demo_faults,
    )
    try:
        sim.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
    try:
        for waba_id, fault in faults.items():
            sim.set_fault(waba_id, fault)
        sim.set_default_fault(default)
        quota = f"{args.qps:g} calls/s per account" if args.qps > 0 else "no quota"
        print(f"CAMS simulator on {sim.endpoint}  ({quota}, latency {args.latency_ms:g} ms)")
        shown = {**(cams.DEMO_FAULTS if args.demo_faults else {}), **faults}
        for waba_id, fault in shown.items():
            print(f"  {waba_id}: {fault.description}")
        if default is not None:
            print(f"  every other WabaId: {default.description}")
        print("Point the functions at it (its AccessKey is a fixed local one):")
        key = "from wababind_local.cams_simulator import DEFAULT_KEY as k"
        print(f"  export CAMS_ENDPOINT={sim.endpoint}")
        print(f"  export ALIBABA_CLOUD_ACCESS_KEY_ID={cams.DEFAULT_KEY.access_key_id}")
        print(
            "  export ALIBABA_CLOUD_ACCESS_KEY_SECRET="
            f"\"$(python -c '{key}; print(k.access_key_secret)')\""
        )
        print("Ctrl-C stops.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        sim.stop()
    calls = sim.count()
    print(f"stopped after {calls} ChatappBindWaba call{'s' if calls != 1 else ''}")
    return 0


def register(commands: Commands) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run the CAMS simulator in the foreground, with chosen faults",
        description="FAULT is one of: " + "; ".join(FAULT_FORMS) + ". Add *N to fire it on "
        "the next N calls only (e.g. ServiceUnavailable*2).",
    )
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=9100, help="0 picks a free one")
    simulate.add_argument("--qps", type=float, default=10.0, help="per-account quota; 0 = none")
    simulate.add_argument("--latency-ms", type=float, default=0.0)
    simulate.add_argument(
        "--jitter-ms", type=float, default=0.0, help="gateway delay before the quota counts"
    )
    simulate.add_argument("--fault", action="append", default=[], metavar="WABA_ID=FAULT")
    simulate.add_argument("--default-fault", metavar="FAULT", help="for every other WabaId")
    simulate.add_argument("--demo-faults", action="store_true", help="the demo's fault WabaIds")
    simulate.set_defaults(run=cmd_simulate)
