"""A call leaves in its slot: a cold process's first CAMS calls arrive spaced like all the others,
with the FC initializer's warm-up and without it (counted on the simulator's clock)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from itertools import pairwise

import pytest

from tests.fixtures.fc import local_env
from wababind_local.cams_simulator import DEFAULT_KEY

# A fresh interpreter: imports index, optionally runs what the FC initializer runs, then one
# MQ batch of direct requests; no warm-up of any kind.
COLD_BATCH = """
import json, sys
from index import mq_handler
from wababind.credentials import credentials_from
from wababind.runtime import get_runtime
from wababind_local.fc_context import FCContext, FunctionMeta

context = FCContext(function=FunctionMeta("bind-waba-mq", "index.mq_handler", 512, 60))
if sys.argv[1] == "initializer":
    get_runtime().binder.cams.prepare(credentials_from(context))
batch = [{"WabaId": f"63000000000000{n:02d}"} for n in range(int(sys.argv[2]))]
print(mq_handler(json.dumps(batch).encode(), context))
"""


@pytest.mark.parametrize("start", ["initializer", "first invocation"])
def test_a_cold_process_s_first_calls_are_spaced_like_the_others(cams_sim, start):
    qps, binds = 10, 14
    cams_sim.set_qps(qps)  # strict: a sliding one-second window
    env = local_env(
        CAMS_ENDPOINT=cams_sim.endpoint,
        CAMS_QPS=str(qps),
        WEBHOOK_AUTH="none",
        ALIBABA_CLOUD_ACCESS_KEY_ID=DEFAULT_KEY.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=DEFAULT_KEY.access_key_secret,
    )
    done = subprocess.run(
        [sys.executable, "-c", COLD_BATCH, start.split()[0], str(binds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["Bound"] == binds
    calls = cams_sim.calls()
    assert not [c for c in calls if c.throttled] and len(calls) == binds
    gaps = [b.at - a.at for a, b in pairwise(c for c in calls)]
    usual = statistics.median(gaps)
    assert min(gaps[:3]) >= 0.5 * usual, gaps  # no bunching at the start
    assert cams_sim.max_calls_in_window() <= qps
