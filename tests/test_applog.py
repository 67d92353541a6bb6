"""App-log context: every line carries the FC request id (`FcRequestId`) and, inside a bind, the
WabaId, including lines logged from the MQ function's worker threads, which do not inherit the
handler's context. Lines logged outside any invocation carry neither."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.fixtures.fc import free_port
from tests.fixtures.handlers import signed_event
from wababind import applog

BATCH = ["7700000000000001", "7700000000000002", "7700000000000003", "7700000000000004"]


def app_log(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if '"Kind":"AppLog"' in line]


def redis_away(monkeypatch: Any) -> None:
    """REDIS_URL where nothing listens, binds on local memory: the outage is logged from
    inside the first bind that meets it."""
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("ON_REDIS_OUTAGE", "local")


def test_a_line_logged_inside_a_webhook_bind_has_the_request_id_and_the_waba_id(
    wababind_env: Any, monkeypatch: Any, context: Any, capsys: Any
) -> None:
    from index import http_handler

    redis_away(monkeypatch)
    # trigger-level auth: no webhook-id guard asks Redis before the bind does
    monkeypatch.delenv("WEBHOOK_SECRET")
    monkeypatch.setenv("WEBHOOK_AUTH", "none")
    ctx = context()
    answer = http_handler(signed_event({"WabaId": "7700000000000009"}), ctx)
    assert answer["statusCode"] == 200
    lines = app_log(capsys.readouterr().err)
    assert lines and all(line["FcRequestId"] == ctx.request_id for line in lines)
    [outage] = [line for line in lines if line["Level"] == "WARNING"]
    assert outage["WabaId"] == "7700000000000009"


def test_lines_logged_from_the_mq_worker_threads_have_the_request_id_and_their_waba_id(
    wababind_env: Any, monkeypatch: Any, context: Any, capsys: Any
) -> None:
    from index import mq_handler

    redis_away(monkeypatch)
    ctx = context()
    summary = json.loads(mq_handler(json.dumps([{"WabaId": w} for w in BATCH]).encode(), ctx))
    assert summary["Bound"] == len(BATCH)
    lines = app_log(capsys.readouterr().err)
    outage = [line for line in lines if line["Level"] == "WARNING"]
    assert outage, "the outage is logged by the first bind to meet it, on a worker thread"
    assert all(line["FcRequestId"] == ctx.request_id for line in lines)
    assert all(line["WabaId"] in BATCH for line in outage)


def test_each_pool_task_logs_its_own_context_and_none_leaks_to_the_next(capsys: Any) -> None:
    """A worker thread runs many tasks: what one task set is gone when the next starts."""

    def task(waba_id: str) -> None:
        with applog.Scope(FcRequestId="req-1", WabaId=waba_id):
            applog.log("INFO", "in a task")
        applog.log("INFO", "after a task")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(task, BATCH))
    lines = app_log(capsys.readouterr().err)
    inside = [line for line in lines if line["Message"] == "in a task"]
    after = [line for line in lines if line["Message"] == "after a task"]
    assert sorted(line["WabaId"] for line in inside) == BATCH
    assert {line["FcRequestId"] for line in inside} == {"req-1"}
    assert len(after) == len(BATCH) and not any("WabaId" in line for line in after)
    assert not any("FcRequestId" in line for line in after)


def test_scopes_nest_and_an_empty_value_adds_no_field(capsys: Any) -> None:
    with applog.Scope(FcRequestId="req-2"):
        with applog.Scope(WabaId=None):
            applog.log("INFO", "no waba yet")
        with applog.Scope(WabaId="7700000000000005"):
            applog.log("INFO", "binding", Component="test")
        applog.log("INFO", "request only")
    applog.log("INFO", "outside")
    lines = {line["Message"]: line for line in app_log(capsys.readouterr().err)}
    assert "WabaId" not in lines["no waba yet"] and lines["no waba yet"]["FcRequestId"] == "req-2"
    assert (lines["binding"]["WabaId"], lines["binding"]["Component"]) == (
        "7700000000000005",
        "test",
    )
    assert list(lines["binding"])[:6] == [
        "Kind",
        "Level",
        "Message",
        "Time",
        "FcRequestId",
        "WabaId",
    ]
    assert "WabaId" not in lines["request only"]
    assert "FcRequestId" not in lines["outside"]


def test_the_initializer_s_lines_have_its_request_id(
    wababind_env: Any, monkeypatch: Any, context: Any, capsys: Any
) -> None:
    from index import initialize

    ctx = context()
    initialize(ctx)
    lines = app_log(capsys.readouterr().err)
    assert lines and all(line["FcRequestId"] == ctx.request_id for line in lines)
