"""Scenario: what a webhook bind costs over a bare aliyunsdkcore call, in CPU time.

One process, one simulator (no latency, no quota), both clients warm and keep-alive. Calls
alternate (webhook bind, bare call, webhook bind, ...) so both see the same machine load; each
is timed with the calling thread's CPU clock (the simulator's threads do not count). The ratio
is the median webhook CPU time over the median bare CPU time; wall times are shown beside it.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from wababind_local.bench.handler import _product_path, _reset_runtime, patched_env
from wababind_local.cams_simulator import DEFAULT_KEY, CamsSimulator
from wababind_local.fc_context import Credentials, FCContext, FunctionMeta
from wababind_local.stats import percentile

WARM_UP = 20  # calls of each kind before measuring: both clients connected, caches filled
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
    """CPU and wall seconds per call, webhook binds and bare SDK calls, measured alternately."""

    webhook_cpu_s: list[float] = field(default_factory=list)
    bare_cpu_s: list[float] = field(default_factory=list)
    webhook_wall_s: list[float] = field(default_factory=list)
    bare_wall_s: list[float] = field(default_factory=list)

    @property
    def cpu_ratio(self) -> float:
        return percentile(self.webhook_cpu_s, 50) / percentile(self.bare_cpu_s, 50)

    @property
    def wall_ratio(self) -> float:
        return percentile(self.webhook_wall_s, 50) / percentile(self.bare_wall_s, 50)


def _timed(call: Any) -> tuple[float, float]:
    cpu, wall = time.thread_time(), time.perf_counter()
    call()
    return time.thread_time() - cpu, time.perf_counter() - wall


def webhook_event(waba_id: str) -> bytes:
    return json.dumps({**HTTP_EVENT, "body": json.dumps({"WabaId": waba_id})}).encode()


def measure_overhead(pairs: int, prefix: str) -> Overhead:
    """`pairs` alternating webhook binds and bare SDK calls after a warm-up of both."""
    _product_path()
    from aliyunsdkcore.auth.credentials import AccessKeyCredential
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import CommonRequest

    from index import http_handler
    from wababind.config import parse_cams_endpoint

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
            bare_client.do_action_with_exception(request)

        context = FCContext(
            function=FunctionMeta("bind-waba-http", "index.http_handler", 512, 30),
            credentials=Credentials(DEFAULT_KEY.access_key_id, DEFAULT_KEY.access_key_secret),
        )
        env = {
            "CAMS_ENDPOINT": sim.endpoint,
            "CAMS_QPS": "10000",  # the quota is not what this measures
            "WEBHOOK_AUTH": "none",
            "WEBHOOK_SECRET": None,
            "OUTCOME_SINKS": "log",
            "REDIS_URL": None,
        }
        with patched_env(env), contextlib.redirect_stdout(io.StringIO()):
            _reset_runtime()
            try:
                for n in range(WARM_UP + pairs):
                    # The event arrives as bytes (FC builds it): only the handler is timed.
                    event = webhook_event(f"{prefix}1{n:06d}")
                    hook = _timed(lambda event=event: http_handler(event, context))
                    plain = _timed(lambda n=n: bare(f"{prefix}2{n:06d}"))
                    if n >= WARM_UP:
                        result.webhook_cpu_s.append(hook[0])
                        result.webhook_wall_s.append(hook[1])
                        result.bare_cpu_s.append(plain[0])
                        result.bare_wall_s.append(plain[1])
            finally:
                _reset_runtime()
    return result
