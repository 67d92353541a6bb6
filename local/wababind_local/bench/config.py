"""What one bench run measures: paths, fixed settings, and the command line that sets the rest."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CODE_ROOT = ROOT / "functions" / "bind_waba"
DEFAULT_OUT = ROOT / "bench" / "results.md"

HANDLER_MODULE = "index"
TEA_MODULE = "alibabacloud_cams20200606.client"
TEA_REQUIREMENT = "alibabacloud-cams20200606==5.3.1"

MQ_TIMEOUT_S = 600  # bind-waba-mq's `timeout` in s.yaml: the handler's deadline comes from it
CAMS_TIMEOUT_S = 5.0
WINDOW_GAP_S = 1.1  # after a warm-up, let its calls leave the quota's 1-s window
PROCESS_READY_TIMEOUT_S = 120.0
IMPORT_PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Config:
    """What one bench run measures; `quick` only changes the defaults."""

    qps: float
    latencies_ms: tuple[float, ...]
    batches: tuple[int, ...]
    processes: int
    process_batch: int
    process_latency_ms: float
    cold_reps: int
    out: Path
    install: bool
    quick: bool

    @property
    def target_cell(self) -> tuple[float, int]:
        """The matrix cell the one-process targets apply to: the middle latency and batch."""
        return self.latencies_ms[len(self.latencies_ms) // 2], self.batches[len(self.batches) // 2]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(p) for p in text.split(",") if p.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",") if p.strip())


def parse_args(argv: Sequence[str] | None) -> Config:
    """Defaults are the issue's matrix; --quick is a smoke run of a minute or so."""
    parser = argparse.ArgumentParser(
        prog="python -m wababind_local.bench",
        description="Throughput against the CAMS simulator's quota, and cold start.",
    )
    parser.add_argument("--quick", action="store_true", help="small batches, higher quota")
    parser.add_argument("--qps", type=float, help="the quota (CAMS_QPS); default 10, quick 50")
    parser.add_argument("--latencies-ms", type=_floats, help="default 50,200,500")
    parser.add_argument("--batches", type=_ints, help="default 50,300,1000; quick 10,30,60")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--process-batch", type=int, help="binds per process; default 150")
    parser.add_argument("--process-latency-ms", type=float, default=200.0)
    parser.add_argument("--cold-reps", type=int, help="fresh interpreters of each; default 11")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--no-install", action="store_true", help="do not pip-install the Tea SDK if missing"
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    config = Config(
        qps=args.qps or (50.0 if quick else 10.0),
        latencies_ms=args.latencies_ms or (50.0, 200.0, 500.0),
        batches=args.batches or ((10, 30, 60) if quick else (50, 300, 1000)),
        processes=args.processes,
        process_batch=args.process_batch or (25 if quick else 150),
        process_latency_ms=args.process_latency_ms,
        cold_reps=args.cold_reps or (3 if quick else 11),
        out=args.out,
        install=not args.no_install,
        quick=quick,
    )
    if config.qps <= 0 or config.processes < 1 or config.process_batch < 1:
        parser.error("--qps, --processes and --process-batch must be positive")
    if not config.latencies_ms or not config.batches or min(config.batches) < 1:
        parser.error("--latencies-ms and --batches need at least one value, batches ≥ 1")
    return config
