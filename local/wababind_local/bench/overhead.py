"""Scenario: what a webhook bind costs over a bare aliyunsdkcore call, in CPU time.

One process, one simulator (no latency, no quota), both clients warm and keep-alive. Calls
alternate (webhook bind, bare call, webhook bind, ...) so both see the same machine load; each
is timed with the calling thread's CPU clock (the simulator's threads do not count). The ratio
is the median webhook CPU time over the median bare CPU time; wall times are shown beside it.

The webhook is timed as FC delivers it: signed with WEBHOOK_SECRET (the sender signs before
the clock starts), verified by the handler, and recorded by the log sink into a real file (a
write and a flush per line, as on FC's stdout). An in-memory stdout made the log line free and
an unsigned event skipped the verification: the bench said 1.11x where the issue measured
1.24-1.29x the signed, recorded way. The bare call is timed as its caller uses it: the
CommonRequest built, the call made, and the answer's JSON read for its CustSpaceId (the
webhook's outcome carries it; a bare call that dropped the answer left that work out).

A third side, timed in the same rotation, does only the work the SPEC asks of any webhook bind
(wababind_local.bench.required_work): webhook over it is what idempotency, the quota's lanes and
the deadline budget cost; it over the bare call is what the required steps cost.

Standalone: `python -m wababind_local.bench.overhead [pairs] [runs]` prints each run's ratios.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from wababind_local.bench.handler import _product_path, _reset_runtime, patched_env
from wababind_local.cams_simulator import DEFAULT_KEY, CamsSimulator
from wababind_local.cli.sign import signature_headers
from wababind_local.fc_context import Credentials, FCContext, FunctionMeta
from wababind_local.stats import percentile

WARM_UP = 20  # calls of each kind before measuring: both clients connected, caches filled
QPS = 10.0  # CAMS_QPS as deployed
GAP_S = 1.05 / QPS  # before each call, outside the clocks: every webhook finds a slot free
BENCH_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a bench-only Standard Webhooks secret
HTTP_EVENT = {
    "version": "v1",
    "rawPath": "/",
    "headers": {"Content-Type": "application/json"},
    "queryParameters": {},
    "isBase64Encoded": False,
    "requestContext": {
        "accountId": "1234567890123456",
        "domainName": "bind-waba-http.ap-southeast-1.fcapp.run",
        "domainPrefix": "bind-waba-http",
        "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
        "requestId": "bench",
        "time": "2026-11-30T00:00:00Z",
        "timeEpoch": "1795996800000",
    },
}


@dataclass
class Overhead:
    """CPU and wall seconds per call: webhook binds, bare SDK calls and the required work alone,
    measured in turn."""

    webhook_cpu_s: list[float] = field(default_factory=list)
    bare_cpu_s: list[float] = field(default_factory=list)
    webhook_wall_s: list[float] = field(default_factory=list)
    bare_wall_s: list[float] = field(default_factory=list)
    required_cpu_s: list[float] = field(default_factory=list)
    required_wall_s: list[float] = field(default_factory=list)

    @property
    def cpu_ratio(self) -> float:
        """The target's ratio: a webhook bind over a bare call."""
        return _medians(self.webhook_cpu_s, self.bare_cpu_s)

    @property
    def wall_ratio(self) -> float:
        return _medians(self.webhook_wall_s, self.bare_wall_s)

    @property
    def required_ratio(self) -> float:
        """The required work alone over a bare call."""
        return _medians(self.required_cpu_s, self.bare_cpu_s)

    @property
    def over_required(self) -> float:
        """A webhook bind over the required work alone: what wababind's promises add."""
        return _medians(self.webhook_cpu_s, self.required_cpu_s)


def _medians(ours: list[float], theirs: list[float]) -> float:
    return percentile(ours, 50) / percentile(theirs, 50)


def _timed(call: Any) -> tuple[float, float]:
    cpu, wall = time.thread_time(), time.perf_counter()
    call()
    return time.thread_time() - cpu, time.perf_counter() - wall


def webhook_event(waba_id: str, secret: str | None = None) -> bytes:
    """The FC HTTP trigger event of one bind; signed now (Standard Webhooks) with `secret`."""
    body = json.dumps({"WabaId": waba_id})
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if secret is not None:
        headers.update(signature_headers(secret, body))
    return json.dumps({**HTTP_EVENT, "headers": headers, "body": body}).encode()


def measure_overhead(pairs: int, prefix: str) -> Overhead:
    """`pairs` rounds of a webhook bind, a bare SDK call and the required work alone, after a
    warm-up of all three."""
    _product_path()
    from aliyunsdkcore.auth.credentials import AccessKeyCredential
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import CommonRequest

    from index import http_handler
    from wababind.config import parse_cams_endpoint
    from wababind.credentials import Credentials as Key
    from wababind_local.bench.required_work import RequiredWork

    result = Overhead()
    with CamsSimulator(qps=None) as sim:
        endpoint = parse_cams_endpoint(sim.endpoint)
        bare_client = AcsClient(
            region_id="ap-southeast-1",
            credential=AccessKeyCredential(
                DEFAULT_KEY.access_key_id, DEFAULT_KEY.access_key_secret
            ),
            port=endpoint.port,
            auto_retry=False,
        )

        def bare(waba_id: str) -> None:
            request = CommonRequest(
                domain=endpoint.host, version="2020-06-06", action_name="ChatappBindWaba"
            )
            request.set_product("cams")
            request.set_protocol_type(endpoint.scheme)
            request.set_method("POST")
            request.set_accept_format("JSON")
            request.add_query_param("WabaId", waba_id)
            # A caller reads the answer: the webhook's outcome carries CAMS's CustSpaceId.
            answer = json.loads(bare_client.do_action_with_exception(request))
            if not answer["Data"]["CustSpaceId"]:
                raise RuntimeError("the bare call bound nothing")

        required = RequiredWork(
            endpoint, BENCH_SECRET, Key(DEFAULT_KEY.access_key_id, DEFAULT_KEY.access_key_secret)
        )
        context = FCContext(
            function=FunctionMeta("bind-waba-http", "index.http_handler", 512, 30),
            credentials=Credentials(DEFAULT_KEY.access_key_id, DEFAULT_KEY.access_key_secret),
        )
        env = {
            "CAMS_ENDPOINT": sim.endpoint,
            # The production quota, each webhook arriving when a slot is free (an idle signup
            # never waits): at 10,000 calls/s the 0.1-ms slots were missed by every sleep's
            # overshoot, and the limiter's retries were timed as the webhook's own cost.
            "CAMS_QPS": f"{QPS:g}",
            "WEBHOOK_AUTH": None,
            "WEBHOOK_SECRET": BENCH_SECRET,
            "OUTCOME_SINKS": "log",
            "REDIS_URL": None,
        }
        # The log sink's lines go to a real file: each costs a write and a flush, as on FC.
        with (
            patched_env(env),
            tempfile.TemporaryFile("w+", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
        ):
            _reset_runtime()
            answers: list[Any] = []
            try:
                for n in range(WARM_UP + pairs):
                    # The event arrives as bytes (FC builds it): only the handler is timed.
                    event = webhook_event(f"{prefix}1{n:06d}", BENCH_SECRET)
                    # Each call follows the same idle gap (a slot apart): a call right after
                    # another runs on warm caches, and the second of each pair looked cheaper.
                    time.sleep(GAP_S)
                    hook = _timed(lambda event=event: answers.append(http_handler(event, context)))
                    time.sleep(GAP_S)
                    plain = _timed(lambda n=n: bare(f"{prefix}2{n:06d}"))
                    event = webhook_event(f"{prefix}3{n:06d}", BENCH_SECRET)
                    time.sleep(GAP_S)
                    least = _timed(lambda event=event: answers.append(required.handle(event)))
                    if n >= WARM_UP:
                        result.webhook_cpu_s.append(hook[0])
                        result.webhook_wall_s.append(hook[1])
                        result.bare_cpu_s.append(plain[0])
                        result.bare_wall_s.append(plain[1])
                        result.required_cpu_s.append(least[0])
                        result.required_wall_s.append(least[1])
            finally:
                _reset_runtime()
    refused = [a.get("statusCode") for a in answers if a.get("statusCode") != 200]
    if refused:  # a refused webhook costs less than a bind: the ratio would flatter us
        raise RuntimeError(f"{len(refused)} webhook binds answered {refused[0]}, not 200")
    return result


def main(argv: list[str] | None = None) -> int:
    """`pairs` (default 200) alternating calls per run, `runs` (default 1) runs in a row."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    pairs = int(args[0]) if args else 200
    runs = int(args[1]) if len(args) > 1 else 1
    for run in range(runs):
        got = measure_overhead(pairs, f"9{run % 10}")
        print(
            f"run {run + 1}: CPU {got.cpu_ratio:.3f}x (webhook "
            f"{percentile(got.webhook_cpu_s, 50) * 1e3:.3f} ms, bare "
            f"{percentile(got.bare_cpu_s, 50) * 1e3:.3f} ms), wall {got.wall_ratio:.3f}x; "
            f"required work alone {got.required_ratio:.3f}x bare, webhook "
            f"{got.over_required:.3f}x it",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
