"""The SLS sink with the real aliyun-log SDK against the local PutLogs server."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sls import SLS_KEY_ID, SLS_KEY_SECRET
from wababind.credentials import Credentials
from wababind.outcome import Outcome
from wababind.sinks.base import SinkError
from wababind.sinks.sls import SlsSink, safe_reason
from wababind_local.sls_server import SlsServer

ROOT = Path(__file__).resolve().parents[1]
PROJECT, LOGSTORE = "wababind-test", "outcomes"
CREDS = Credentials(SLS_KEY_ID, SLS_KEY_SECRET)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def outcome(**kw: Any) -> Outcome:
    started = dt.datetime(2026, 11, 25, 8, 0, 0, 123000, tzinfo=dt.timezone.utc)
    fields: dict[str, Any] = {
        "event_id": "evt-9",
        "source": "rocketmq",
        "waba_id": "1029384756",
        "reference": "ref \u00e9\u00e8 42",
        "status": "failed",
        "code": "Ram.PermissionDeny",
        "message": "You are not authorized",
        "retryable": False,
        "attempts": 2,
        "cust_space_id": None,
        "request_id": "REQ-77",
        "access_denied_detail": '{"AuthAction":"cams:ChatappBindWaba"}',
        "started_at": started,
        "finished_at": started + dt.timedelta(milliseconds=1500),
    }
    fields.update(kw)
    return Outcome(**fields)


def sink(server: SlsServer, **kw: Any) -> SlsSink:
    args: dict[str, Any] = {
        "endpoint": server.endpoint,
        "project": PROJECT,
        "logstore": LOGSTORE,
        "timeout_s": 2.0,
        "sleep": Sleeps(),
    }
    args.update(kw)
    return SlsSink(**args)


def expected_fields(o: Outcome) -> dict[str, str]:
    as_text = {None: "", True: "true", False: "false"}
    out = {}
    for key, value in o.to_record().items():
        if isinstance(value, bool) or value is None:
            out[key] = as_text[value]
        else:
            out[key] = str(value)
    return out


def test_record_arrives_field_for_field(sls_server: SlsServer) -> None:
    o = outcome()
    sink(sls_server).send(o, CREDS)
    records = sls_server.records(PROJECT, LOGSTORE)
    assert len(records) == 1
    got = records[0]
    meta = {k: got.pop(k) for k in ("__topic__", "__source__", "__time__")}
    assert got == expected_fields(o)
    assert meta == {
        "__topic__": "WabaBindOutcome",
        "__source__": "wababind",
        "__time__": str(int(o.finished_at.timestamp())),
    }
    assert sls_server.records(PROJECT, "other") == []
    assert sls_server.records("other-project") == []


def test_bound_outcome_with_every_field(sls_server: SlsServer) -> None:
    o = outcome(
        status="bound",
        code="OK",
        message="OK",
        cust_space_id="cams-cs-1",
        access_denied_detail=None,
        retryable=True,
    )
    sink(sls_server).send(o, CREDS)
    got = sls_server.records()[0]
    assert {k: got[k] for k in expected_fields(o)} == expected_fields(o)


def test_sts_token_path() -> None:
    with SlsServer("STS.key", "sts-secret", security_token="sts-token-abc") as server:
        target = sink(server)
        target.send(
            outcome(event_id="with-token"), Credentials("STS.key", "sts-secret", "sts-token-abc")
        )
        with pytest.raises(SinkError) as caught:
            target.send(outcome(event_id="stale"), Credentials("STS.key", "sts-secret", "old"))
        assert "SecurityToken" in caught.value.reason
        assert "old" not in caught.value.reason.split(":", 1)[1]
        assert [r["EventId"] for r in server.records()] == ["with-token"]


def test_wrong_secret_is_refused(sls_server: SlsServer) -> None:
    with pytest.raises(SinkError) as caught:
        sink(sls_server).send(outcome(), Credentials(SLS_KEY_ID, "not-the-secret"))
    assert caught.value.reason.startswith("SLS PutLogs failed: SignatureNotMatch (HTTP 401)")
    assert "not-the-secret" not in caught.value.reason
    assert sls_server.refusals == ["SignatureNotMatch"]
    assert sls_server.records() == []


def test_unknown_key_is_refused(sls_server: SlsServer) -> None:
    with pytest.raises(SinkError) as caught:
        sink(sls_server).send(outcome(), Credentials("LTAI-other", SLS_KEY_SECRET))
    assert "InvalidAccessKeyId" in caught.value.reason


def test_no_credentials_is_an_error(sls_server: SlsServer) -> None:
    for creds in (None, Credentials(SLS_KEY_ID, "")):
        with pytest.raises(SinkError):
            sink(sls_server).send(outcome(), creds)
    assert sls_server.calls == 0


def test_server_500_is_retried_within_bounds(sls_server: SlsServer) -> None:
    sls_server.fail_next(1, 500)
    sleeps = Sleeps()
    sink(sls_server, sleep=sleeps).send(outcome(), CREDS)
    assert sls_server.calls == 2
    assert len(sleeps) == 1
    assert len(sls_server.records()) == 1


def test_server_500_forever_is_a_sink_error(sls_server: SlsServer) -> None:
    sls_server.fail_next(10, 500)
    with pytest.raises(SinkError) as caught:
        sink(sls_server, max_attempts=3).send(outcome(), CREDS)
    assert caught.value.reason == (
        "SLS PutLogs failed: InternalServerError (HTTP 500): injected fault"
    )
    assert sls_server.calls == 3  # not the SDK's own ten tries


def test_403_is_not_retried(sls_server: SlsServer) -> None:
    sls_server.fail_next(1, 403)
    with pytest.raises(SinkError) as caught:
        sink(sls_server).send(outcome(), CREDS)
    assert "Unauthorized (HTTP 403)" in caught.value.reason
    assert sls_server.calls == 1


def test_slow_server_times_out(sls_server: SlsServer) -> None:
    sls_server.slow_next(2, 5.0)
    with pytest.raises(SinkError) as caught:
        sink(sls_server, timeout_s=0.2, max_attempts=2).send(outcome(), CREDS)
    assert caught.value.reason == "SLS PutLogs failed: LogRequestError: timed out"
    # the client gave up after 0.2 s: the server's thread may not have counted the second try yet
    for _ in range(50):
        if sls_server.calls >= 2:
            break
        time.sleep(0.1)
    assert sls_server.calls == 2


def test_server_down_is_a_sink_error() -> None:
    server = SlsServer(SLS_KEY_ID, SLS_KEY_SECRET).start()
    endpoint = server.endpoint
    server.stop()
    with pytest.raises(SinkError) as caught:
        SlsSink(endpoint=endpoint, project=PROJECT, logstore=LOGSTORE, sleep=Sleeps()).send(
            outcome(), CREDS
        )
    assert caught.value.reason == "SLS PutLogs failed: LogRequestError: connection refused"


def test_one_client_per_credentials(sls_server: SlsServer) -> None:
    target = sink(sls_server)
    for n in range(3):
        target.send(outcome(event_id=f"e{n}"), Credentials(SLS_KEY_ID, SLS_KEY_SECRET))
    assert len(target._clients) == 1
    assert [r["EventId"] for r in sls_server.records()] == ["e0", "e1", "e2"]


def test_safe_reason_scrubs_long_tokens() -> None:
    from aliyun.log import LogException

    error = LogException(
        "SignatureNotMatch",
        "signature Zm9vYmFyYmF6cXV4cXV1eA== not match\nstring to sign: POST...",
        "REQ",
        401,
    )
    reason = safe_reason(error)
    assert (
        reason == "SLS PutLogs failed: SignatureNotMatch (HTTP 401): signature [redacted] not match"
    )


def test_importing_the_sink_does_not_import_the_sdk_building_it_does() -> None:
    """Without the sls sink the SDK never loads; with it, the initializer (which builds the
    sinks) pays its import, not the first outcome."""
    code = (
        "import sys, wababind.sinks.sls as sls\n"
        "def loaded(): return any(m.split('.')[:2] == ['aliyun', 'log'] for m in sys.modules)\n"
        "imported = loaded()\n"
        "sls.SlsSink(endpoint='127.0.0.1:1', project='p', logstore='s')\n"
        "print(imported, loaded())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "functions" / "bind_waba")},
    )
    assert done.stdout.split() == ["False", "True"]


def test_server_rejects_what_the_sdk_would_not_send(sls_server: SlsServer) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{sls_server.endpoint}/logstores/{LOGSTORE}/shards/lb",
        data=b"x",
        method="POST",
        headers={"Host": f"{PROJECT}.127.0.0.1"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    caught.value.close()
    assert caught.value.code == 401
    assert caught.value.headers["x-log-requestid"]
    assert sls_server.refusals == ["Unauthorized"]


def test_concurrent_sends_share_one_client(sls_server: SlsServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    target = sink(sls_server)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: target.send(outcome(event_id=f"c{n}"), CREDS), range(24)))
    assert sorted(r["EventId"] for r in sls_server.records()) == sorted(f"c{n}" for n in range(24))
    assert len(target._clients) == 1
