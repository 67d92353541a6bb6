"""`make bench`: the quota engine against the CAMS simulator, priority, overhead, cold start.

All on loopback; every FC instance is a fresh process, never warmed up (it imports the handler
and runs its initializer, as FC does, then is invoked once); a batch is timed from invocation to
return; the simulator counts calls in a strict sliding 1-s window after a random gateway delay.

1. One process: for each CAMS latency x batch x gateway jitter (default 200 ms, 300 binds,
   0/20/50 ms), one cold instance binds one direct-invoke batch through `index.mq_handler`.
2. N instances (default 4 x 60 binds, 20 ms jitter) share one real `redis-server` and one
   simulator; combined binds/s = all bound binds / (last return - first invocation); Redis
   commands per bind from INFO commandstats.
3. Priority: a cold webhook instance binds alone, then while N bulk instances drain a backlog
   (default 320 binds); its p50/p95 in both, and the bulk's use of the quota meanwhile.
4. Overhead: webhook binds and bare keep-alive aliyunsdkcore calls alternated in one process,
   median CPU time of each.
5. Cold start as ready to serve, for each function (HTTP, MQ): importing `index` plus FC's
   initializer with that function's context, fastest of 21 fresh interpreters, as a ratio
   against importing the official Tea SDK client, `alibabacloud_cams20200606.client`
   (pip-installed into this venv when missing), and against importing the runtime dependencies
   alone. Then the code package's size (tools/build_package.py) against the Tea SDK installed
   the same way.
6. Cold start as FC runs it (bench/fc_cold_start.py), for python3.10 and python3.12 where
   that CPython is here: the built package, read-only, on the runtime's CPython, each function
   against the same package compiled, the package without bytecode and the Tea SDK installed
   the same way; CPU time and the wall it implies at each function's vCPU.

The tables go to stdout and to `bench/results.md`, with the targets and PASS/FAIL for each.
"""

from __future__ import annotations

from wababind_local.bench.charts import (
    CallTrace,
    draw_quota_chart,
    window_counts,
    write_quota_chart,
)
from wababind_local.bench.cold_start import (
    ImportProbeError,
    install_tea_sdk,
    measure_cold_start,
    time_import,
)
from wababind_local.bench.config import (
    CAMS_TIMEOUT_S,
    CODE_ROOT,
    DEFAULT_OUT,
    HANDLER_MODULE,
    IMPORT_PROBE_TIMEOUT_S,
    MQ_TIMEOUT_S,
    PROCESS_READY_TIMEOUT_S,
    ROOT,
    TEA_MODULE,
    TEA_REQUIREMENT,
    WINDOW_GAP_S,
    Config,
    parse_args,
)
from wababind_local.bench.handler import bench_context, invoke, patched_env, product_env, waba_ids
from wababind_local.bench.one_process import run_one_process
from wababind_local.bench.processes import process_worker
from wababind_local.bench.redis_server import redis_server
from wababind_local.bench.render import MATRIX_HEADER, SHARED_HEADER, render
from wababind_local.bench.results import ColdStart, PackageSize, Run
from wababind_local.bench.runner import main
from wababind_local.bench.shared_redis import run_processes
from wababind_local.bench.stats import import_breakdown
from wababind_local.bench.targets import (
    TARGET_ONE_PROCESS_RATIO,
    TARGET_READY_FLOOR_RATIO,
    TARGET_READY_TEA_RATIO,
    TARGET_SHARED_RATIO,
    TARGET_THROTTLED_SHARE,
    Target,
    evaluate,
)

# bench.py imported these from the simulator; code that reached them through it still can.
from wababind_local.cams_simulator import DEFAULT_STS_KEY, QUOTA_CODE, CamsSimulator, max_in_window
from wababind_local.stats import percentile

__all__ = [
    "CAMS_TIMEOUT_S",
    "CODE_ROOT",
    "DEFAULT_OUT",
    "DEFAULT_STS_KEY",
    "HANDLER_MODULE",
    "IMPORT_PROBE_TIMEOUT_S",
    "MATRIX_HEADER",
    "MQ_TIMEOUT_S",
    "PROCESS_READY_TIMEOUT_S",
    "QUOTA_CODE",
    "ROOT",
    "SHARED_HEADER",
    "TARGET_ONE_PROCESS_RATIO",
    "TARGET_READY_FLOOR_RATIO",
    "TARGET_READY_TEA_RATIO",
    "TARGET_SHARED_RATIO",
    "TARGET_THROTTLED_SHARE",
    "TEA_MODULE",
    "TEA_REQUIREMENT",
    "WINDOW_GAP_S",
    "CallTrace",
    "CamsSimulator",
    "ColdStart",
    "Config",
    "ImportProbeError",
    "PackageSize",
    "Run",
    "Target",
    "bench_context",
    "draw_quota_chart",
    "evaluate",
    "import_breakdown",
    "install_tea_sdk",
    "invoke",
    "main",
    "max_in_window",
    "measure_cold_start",
    "parse_args",
    "patched_env",
    "percentile",
    "process_worker",
    "product_env",
    "redis_server",
    "render",
    "run_one_process",
    "run_processes",
    "time_import",
    "waba_ids",
    "window_counts",
    "write_quota_chart",
]
