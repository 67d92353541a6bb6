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
    jitters_ms: tuple[float, ...]  # the simulator's gateway jitter, one run per value
    processes: int
    process_batch: int
    process_latency_ms: float
    process_jitter_ms: float
    bulk_binds: int  # the priority table's backlog, split over `processes` instances
    overhead_pairs: int
    bulk_cost_binds: int  # the bulk-cost backlog, drained by 1, 2 and 4 instances in turn
    cold_reps: int
    out: Path
    install: bool
    quick: bool
    after_bind_binds: int = 400  # the backlog of the run with both AFTER_BIND steps

    @property
    def target_cell(self) -> tuple[float, int]:
        """The matrix cell the one-process targets apply to: the middle latency and batch."""
        return self.latencies_ms[len(self.latencies_ms) // 2], self.batches[len(self.batches) // 2]

    @property
    def cells(self) -> list[tuple[float, int, float]]:
        """Every one-process run: (CAMS latency ms, batch, gateway jitter ms)."""
        return [
            (lat, batch, jitter)
            for lat in self.latencies_ms
            for batch in self.batches
            for jitter in self.jitters_ms
        ]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(p) for p in text.split(",") if p.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",") if p.strip())


def parse_args(argv: Sequence[str] | None) -> Config:
    """Defaults are what the issue's targets need (every instance cold, gateway jitter 0/20/50
    ms); --quick is a smoke run of a minute or so."""
    parser = argparse.ArgumentParser(
        prog="python -m wababind_local.bench",
        description="Throughput against the CAMS simulator's quota, and cold start.",
    )
    parser.add_argument("--quick", action="store_true", help="small batches, higher quota")
    parser.add_argument("--qps", type=float, help="the quota (CAMS_QPS); default 10, quick 50")
    parser.add_argument("--latencies-ms", type=_floats, help="default 200")
    parser.add_argument("--batches", type=_ints, help="default 300; quick 30")
    parser.add_argument("--jitters-ms", type=_floats, help="gateway jitter; default 0,20,50")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--process-batch", type=int, help="binds per process; default 60")
    parser.add_argument("--process-latency-ms", type=float, default=200.0)
    parser.add_argument("--process-jitter-ms", type=float, default=20.0)
    parser.add_argument("--bulk-binds", type=int, help="priority table backlog; default 320")
    parser.add_argument("--bulk-cost-binds", type=int, help="bulk-cost backlog; default 120")
    parser.add_argument("--after-bind-binds", type=int, help="steps-on backlog; default 400")
    parser.add_argument("--overhead-pairs", type=int, help="webhook/bare pairs; default 200")
    parser.add_argument("--cold-reps", type=int, help="fresh interpreters of each; default 21")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--no-install", action="store_true", help="do not pip-install the Tea SDK if missing"
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    config = Config(
        qps=args.qps or (50.0 if quick else 10.0),
        latencies_ms=args.latencies_ms or (200.0,),
        batches=args.batches or ((30,) if quick else (300,)),
        jitters_ms=args.jitters_ms if args.jitters_ms is not None else (0.0, 20.0, 50.0),
        processes=args.processes,
        process_batch=args.process_batch or (15 if quick else 60),
        process_latency_ms=args.process_latency_ms,
        process_jitter_ms=args.process_jitter_ms,
        bulk_binds=args.bulk_binds or (60 if quick else 320),
        bulk_cost_binds=args.bulk_cost_binds or (24 if quick else 120),
        after_bind_binds=args.after_bind_binds or (40 if quick else 400),
        overhead_pairs=args.overhead_pairs or (40 if quick else 400),
        cold_reps=args.cold_reps or (3 if quick else 21),
        out=args.out,
        install=not args.no_install,
        quick=quick,
    )
    if config.qps <= 0 or config.processes < 1 or config.process_batch < 1:
        parser.error("--qps, --processes and --process-batch must be positive")
    if not config.latencies_ms or not config.batches or min(config.batches) < 1:
        parser.error("--latencies-ms and --batches need at least one value, batches ≥ 1")
    return config
