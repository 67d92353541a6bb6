"""`make demo`: every sample through its handler against the embedded simulator, exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_binds_the_good_samples_and_fails_the_bad_ones_for_the_right_reason():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("functions/bind_waba", "local", ".")),
    }
    for name in ("CAMS_ENDPOINT", "REDIS_URL", "OUTCOME_SINKS", "WEBHOOK_SECRET"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "wababind_local.demo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    summary = re.search(r"(\d+) outcomes: (\d+) bound, (\d+) duplicate, (\d+) failed", out)
    assert summary is not None
    total, bound, duplicate, failed = map(int, summary.groups())
    assert total == bound + duplicate + failed and duplicate == 1 and failed == 5
    for waba_id, expected in {
        "900000000000001": "Ram.PermissionDeny",
        "900000000000002": "Product.Unsubscript",
        "900000000000003": "ERR-FB-001",
        "900000000000004": "bound",
        "12ab ": "InvalidMessage",
    }.items():
        line = next(x for x in out.splitlines() if f"WabaId={waba_id}" in x)
        assert expected in line, line
    assert re.search(r"http\s+WabaId=\d+\s+bound", out)
    # every bind shows its numbers, synced right after it (AFTER_BIND in the demo)
    numbers = re.findall(r"numbers: \+1555\d{7} '[^']+' CONNECTED GREEN", out)
    assert len(numbers) == bound + duplicate, out
    assert "after-bind steps not done" not in out
