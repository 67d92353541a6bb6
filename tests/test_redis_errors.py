"""Redis's own answers are not an outage (SPEC, "When Redis is away"): each error class, from a
real redis-server, is classified as redis_errors says and logged with Redis's error code.

Servers here: a replica (`replicaof` a real primary, read-only) answering READONLY as after a
failover; one with `maxmemory 1mb`, `noeviction`, filled up (OOM); one with `requirepass`
(NOAUTH, WRONGPASS); the release before this (3.2.6) for the old script-error wrapping; a proxy
that flushes the scripts just before a command goes on (NOSCRIPT mid-pipeline).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from index import http_handler
from tests.fixtures.handlers import outcome_lines, signed_event
from tests.fixtures.redis_proxy import RedisProxy
from tests.fixtures.redis_server import RedisServer, free_port
from tests.test_duplicates import deliver, rocketmq
from tests.test_redis_outage import app_logs, outage_lines
from wababind import idempotency
from wababind.errors import SHARED_STORE_UNAVAILABLE, SharedStoreUnavailable
from wababind.idempotency import IdempotencyRecord, RecordStatus, RedisStore
from wababind.lifecycle import REDIS_UNREACHABLE, initialize
from wababind.ratelimit import DEFAULT_KEY, RedisRateLimiter, redis_client
from wababind.redis_errors import RedisProblem, classify
from wababind.runtime import get_runtime

PASSWORD = "redis-Pa55-of-this-test"
OLD_REDIS = os.environ.get(
    "WABABIND_OLD_REDIS_SERVER",
    str(Path(__file__).parent.parent / "build" / "redis-3.2.6" / "redis-server"),
)
# Redis 7 uses about 0.9 MB empty, so its maxmemory here is 4 MB (not 1), noeviction
MAXMEMORY = "4mb"
FULL_MARGIN = 256 * 1024
FILL_MAX = 100_000  # filler keys at most: 4 MB fill after about 3,000 of 1,000 bytes


def fill(client: Any) -> None:
    """Write filler keys until Redis refuses with OOM, then set maxmemory FULL_MARGIN below
    what Redis uses, so a client's buffers freed or a key expiring does not let a write in."""
    client.config_set("maxmemory", MAXMEMORY)
    for i in range(FILL_MAX):
        try:
            client.set(f"filler:{i}", "x" * 1000)
        except redis.exceptions.OutOfMemoryError:
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", used - FULL_MARGIN)
            return
    raise AssertionError("Redis never ran out of memory")


def make_room(client: Any) -> None:
    """What an operator does: drop what filled Redis up (DEL is allowed when full)."""
    names = list(client.scan_iter("filler:*", count=1000))
    for start in range(0, len(names), 1000):
        client.delete(*names[start : start + 1000])


def refusals(err: str) -> list[tuple[str, str | None, str]]:
    """(Level, RedisCode, Operation) of each 'Redis refused a command' line."""
    return [
        (r["Level"], r.get("RedisCode"), r["Operation"])
        for r in app_logs(err)
        if r["Message"].startswith("Redis refused a command")
    ]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RedisServer]]:
    """A primary, its read-only replica, a full one, one with a password, the old release."""
    started: dict[str, RedisServer] = {}
    try:
        started["primary"] = RedisServer().start()
        port = str(started["primary"].port)
        started["replica"] = RedisServer(
            config=("--replicaof", "127.0.0.1", port, "--replica-read-only", "yes")
        ).start()
        started["full"] = RedisServer(
            config=("--maxmemory", MAXMEMORY, "--maxmemory-policy", "noeviction")
        ).start()
        started["locked"] = RedisServer(config=("--requirepass", PASSWORD)).start()
        started["old"] = RedisServer(binary=OLD_REDIS).start()
        fill(redis.Redis(port=started["full"].port, protocol=2))
        yield started
    finally:
        for server in started.values():
            server.close()


def on(server: RedisServer, password: str | None = None) -> Any:
    return redis.Redis(port=server.port, password=password, protocol=2)


# ---- the classification, one row per class, errors from real servers -----------------------


def _script(server: RedisServer, body: str, key: str) -> Callable[[], object]:
    client = on(server)
    client.set(key, "a string")
    return lambda: client.eval(body, 1, key)


ROWS: dict[str, tuple[Callable[[dict[str, RedisServer]], Callable[[], object]], RedisProblem]] = {
    "no answer (connection refused)": (
        lambda s: redis_client(f"redis://127.0.0.1:{free_port()}/0").ping,
        RedisProblem("away", None, "ConnectionError", "Redis does not answer", True),
    ),
    "a replica after a failover": (
        lambda s: lambda: on(s["replica"]).set("k", "v"),
        RedisProblem("away", "READONLY", "ReadOnlyError", "", True),
    ),
    "a write from a script on a replica": (
        lambda s: lambda: on(s["replica"]).eval("return redis.call('SET', KEYS[1], 1)", 1, "k"),
        RedisProblem("away", "READONLY", "ReadOnlyError", "", True),
    ),
    "out of memory": (
        lambda s: lambda: on(s["full"]).set("k", "v"),
        RedisProblem("refused", "OOM", "OutOfMemoryError", "", True),
    ),
    "a wrong type": (
        lambda s: lambda: (on(s["primary"]).set("wt0", "x"), on(s["primary"]).hget("wt0", "f")),
        RedisProblem("refused", "WRONGTYPE", "ResponseError", "", False),
    ),
    "a wrong type in a script": (
        lambda s: _script(s["primary"], "return redis.call('HGET', KEYS[1], 'f')", "wt1"),
        RedisProblem("refused", "WRONGTYPE", "ResponseError", "", False),
    ),
    "a wrong type in a script on Redis 3.2": (
        lambda s: _script(s["old"], "return redis.call('HGET', KEYS[1], 'f')", "wt2"),
        RedisProblem("refused", "WRONGTYPE", "ResponseError", "", False),
    ),
    "a script error": (
        lambda s: _script(s["primary"], "return cjson.decode(redis.call('GET', KEYS[1]))", "se"),
        RedisProblem("refused", "ERR", "ResponseError", "", False),
    ),
    "an unknown script": (
        lambda s: lambda: on(s["primary"]).evalsha("0" * 40, 0),
        RedisProblem("reload", "NOSCRIPT", "NoScriptError", "", True),
    ),
    "no password": (
        lambda s: on(s["locked"]).ping,
        RedisProblem("refused", "NOAUTH", "AuthenticationError", "", False),
    ),
    "a wrong password": (
        lambda s: on(s["locked"], "not-" + PASSWORD).ping,
        RedisProblem("refused", "WRONGPASS", "AuthenticationError", "", False),
    ),
    "a record that is not ours": (
        lambda s: lambda: IdempotencyRecord.from_json("not json"),
        RedisProblem("refused", None, "JSONDecodeError", "", False),
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_each_redis_error_class_is_read_as_what_it_is(
    row: str, servers: dict[str, RedisServer]
) -> None:
    make, expected = ROWS[row]
    with pytest.raises(Exception) as raised:
        make(servers)()
    problem = classify(raised.value)
    assert (problem.kind, problem.code, problem.error, problem.retryable) == (
        expected.kind,
        expected.code,
        expected.error,
        expected.retryable,
    )
    assert PASSWORD not in problem.message and str(raised.value) not in problem.message


def test_a_record_with_fields_a_newer_version_added_is_read() -> None:
    doc = {"key": "w", "status": "COMPLETED", "cust_space_id": "cs-1", "AddedLater": [1]}
    record = IdempotencyRecord.from_json(json.dumps(doc))
    assert (record.status, record.cust_space_id) == (RecordStatus.COMPLETED, "cs-1")


def test_a_completion_written_by_a_newer_version_answers_duplicate(
    wababind_env: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, context: Any
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    waba_id = "9810000000000001"
    doc = {"key": waba_id, "status": "COMPLETED", "owner": "x", "cust_space_id": "cs-new"}
    redis.Redis.from_url(redis_url).set(f"wababind:idem:{waba_id}", json.dumps({**doc, "N": 2}))
    response = http_handler(signed_event({"WabaId": waba_id}), context())
    body = json.loads(response["body"])
    assert (response["statusCode"], body["Status"], body["CustSpaceId"]) == (
        200,
        "duplicate",
        "cs-new",
    )
    assert wababind_env.count() == 0


# ---- the functions on each server -----------------------------------------------------------


@pytest.fixture
def on_redis(wababind_env: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point the functions at a Redis URL (no CAMS quota, so only Redis decides)."""
    monkeypatch.setenv("CAMS_QPS", "1000")
    wababind_env.set_qps(None)
    return lambda url: monkeypatch.setenv("REDIS_URL", url)


def retryable_without_a_call(response: dict[str, Any], stdout: str, sim: Any) -> None:
    """The webhook answered 503 + Retry-After, the bulk bind ended retryable, CAMS saw nothing."""
    assert response["statusCode"] == 503 and response["headers"]["Retry-After"] == "5"
    outcome = json.loads(response["body"])
    assert (outcome["Code"], outcome["Retryable"], outcome["Attempts"]) == (
        SHARED_STORE_UNAVAILABLE,
        True,
        0,
    )
    bulk = [r for r in outcome_lines(stdout) if r["Lane"] == "bulk"]
    assert [(r["Code"], r["Retryable"]) for r in bulk] == [(SHARED_STORE_UNAVAILABLE, True)]
    assert sim.count() == 0


def test_a_replica_after_a_failover_is_away_with_its_code_and_binds_after_promotion(
    servers: dict[str, RedisServer],
    on_redis: Callable[[str], None],
    wababind_env: Any,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim, replica = wababind_env, servers["replica"]
    on_redis(replica.url)
    body = {"WabaId": "9820000000000001"}
    response = http_handler(signed_event(body, msg_id="msg_ro_1"), context(timeout=4))
    raised, _ = deliver([rocketmq("ro-bulk-1", "9820000000000002")], context, timeout=4)
    assert raised
    captured = capsys.readouterr()
    retryable_without_a_call(response, captured.out, sim)
    away, _ = outage_lines(captured.err)
    assert [(r["Level"], r.get("RedisCode")) for r in away] == [("WARNING", "READONLY")], [
        r["Message"][:40] for r in app_logs(captured.err)
    ]
    assert refusals(captured.err) == []

    get_runtime().store.health.retry_after_s = 0.2
    on(replica).replicaof("NO", "ONE")  # the failover ends: this node is the primary now
    try:
        time.sleep(0.2)
        again = http_handler(signed_event(body, msg_id="msg_ro_1"), context())
    finally:
        on(replica).replicaof("127.0.0.1", servers["primary"].port)
    assert again["statusCode"] == 200, again["body"]
    assert json.loads(again["body"])["Status"] == "bound"
    assert sim.count(waba_id=body["WabaId"], code="OK") == 1
    _, back = outage_lines(capsys.readouterr().err)
    assert len(back) == 1  # PINGs answered all along: only the write said it was back


@dataclass
class Refusal:
    """A Redis that answers and refuses: how to make it so, and how an operator mends it."""

    server: str
    password: str | None
    break_it: Callable[[Any, str], None]  # (client, WabaId)
    mend: Callable[[Any, str], None]
    code: str
    operation: str


def _set_password(client: Any, _: str) -> None:
    client.config_set("requirepass", "not-" + PASSWORD)


REFUSALS: dict[str, Refusal] = {
    "out of memory": Refusal(
        "full",
        None,
        lambda c, w: None,  # filled by the fixture
        lambda c, w: make_room(c),  # filled again after the test
        "OOM",
        "claim",
    ),
    "the quota hash holds a string": Refusal(
        "primary",
        None,
        lambda c, w: c.set(DEFAULT_KEY, "not a hash"),
        lambda c, w: c.delete(DEFAULT_KEY),
        "WRONGTYPE",
        "quota decision",
    ),
    "the record's key holds a hash": Refusal(
        "primary",
        None,
        lambda c, w: c.hset(f"wababind:idem:{w}", "f", "1"),
        lambda c, w: c.delete(f"wababind:idem:{w}"),
        "WRONGTYPE",
        "claim",
    ),
    "REDIS_URL's password is refused": Refusal(
        "locked", "not-" + PASSWORD, lambda c, w: None, _set_password, "WRONGPASS", "claim"
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refusal_is_logged_with_its_code_binds_nothing_and_the_retry_binds_once(
    case: str,
    servers: dict[str, RedisServer],
    on_redis: Callable[[str], None],
    wababind_env: Any,
    context: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim, refusal = wababind_env, REFUSALS[case]
    server = servers[refusal.server]
    admin = on(server, PASSWORD if refusal.server == "locked" else None)
    number = list(REFUSALS).index(case)
    waba_id, bulk_id = f"983{number:013d}", f"984{number:013d}"
    password = f":{refusal.password}@" if refusal.password else ""
    on_redis(f"redis://{password}127.0.0.1:{server.port}/0")
    refusal.break_it(admin, waba_id)
    refusal.break_it(admin, bulk_id)

    tries = {"claim": 0, "quota decision": 0}  # how often the webhook's bind asked Redis
    claim, decide = RedisStore.claim, RedisRateLimiter.decide

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def asking(*args: Any, **kwargs: Any) -> Any:
            tries[name] += 1
            return method(*args, **kwargs)

        return asking

    monkeypatch.setattr(RedisStore, "claim", counted("claim", claim))
    monkeypatch.setattr(RedisRateLimiter, "decide", counted("quota decision", decide))
    body = {"WabaId": waba_id}
    response = http_handler(signed_event(body, msg_id=f"msg_{case}"), context(timeout=4))
    monkeypatch.setattr(RedisStore, "claim", claim)
    monkeypatch.setattr(RedisRateLimiter, "decide", decide)
    raised, _ = deliver([rocketmq(f"bulk-{case}", bulk_id)], context, timeout=4)
    assert raised
    captured = capsys.readouterr()
    retryable_without_a_call(response, captured.out, sim)
    message = json.loads(response["body"])["Message"]
    assert "refused" in message and refusal.code in message  # said as what it is
    if refusal.code == "OOM":  # memory frees as records expire: the person's bind waits
        assert tries[refusal.operation] > 1
    else:  # an operator must act: the bind answers at once, without asking again
        assert tries[refusal.operation] == 1
    said = refusals(captured.err)
    assert said and set(said) == {("ERROR", refusal.code, refusal.operation)}, said
    assert outage_lines(captured.err)[0] == []  # not "Redis unreachable"
    for text in (captured.out, captured.err, response["body"]):
        assert PASSWORD not in text and "Traceback" not in text

    try:
        refusal.mend(admin, waba_id)
        refusal.mend(admin, bulk_id)
        again = http_handler(signed_event(body, msg_id=f"msg_{case}"), context())
        raised, summary = deliver([rocketmq(f"bulk-{case}", bulk_id)], context)
    finally:
        if refusal.server == "locked":
            on(server, "not-" + PASSWORD).config_set("requirepass", PASSWORD)
        if refusal.server == "full":
            fill(admin)
    assert again["statusCode"] == 200, again["body"]
    assert not raised and summary["Bound"] == 1
    assert {w: sim.count(waba_id=w, code="OK") for w in (waba_id, bulk_id)} == {
        waba_id: 1,
        bulk_id: 1,
    }


def test_a_completion_redis_refuses_for_lack_of_memory_is_kept_and_written_later(
    servers: dict[str, RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """CAMS bound the WABA, then Redis is full: never lost, never "unreachable"."""
    full = servers["full"]
    admin = on(full)
    store = RedisStore(redis_client(full.url))
    waba_id = "9850000000000001"
    admin.flushall()
    try:
        assert store.claim(waba_id, "a", 30) is None
        fill(admin)
        assert not store.complete(waba_id, "a", cust_space_id="cs-1", request_id="R", ttl_s=60)
        assert store.unsynced == 1
        with pytest.raises(SharedStoreUnavailable):
            store.flush()
        make_room(admin)
        store.flush()
        assert store.unsynced == 0
        shared = RedisStore(redis_client(full.url)).get(waba_id)
        assert shared is not None and (shared.status, shared.cust_space_id) == (
            RecordStatus.COMPLETED,
            "cs-1",
        )
    finally:
        admin.delete(f"wababind:idem:{waba_id}")
        fill(admin)
    err = capsys.readouterr().err
    assert refusals(err) == [("ERROR", "OOM", "complete")]  # once a minute per code
    assert outage_lines(err)[0] == []


# ---- NOSCRIPT: scripts flushed under the functions ------------------------------------------


class FlushScripts:
    """Before the next `times` commands that carry EVALSHA reach Redis, SCRIPT FLUSH it."""

    def __init__(self, server: RedisServer, times: int):
        self._admin, self.left = on(server), times

    def __call__(self, data: bytes) -> None:
        if self.left > 0 and b"EVALSHA" in data.upper():
            self.left -= 1
            self._admin.script_flush()


def noscript_count(server: RedisServer) -> int:
    stats = on(server).info("errorstats")
    return int(stats.get("errorstat_NOSCRIPT", {}).get("count", 0))


@pytest.fixture
def proxied(redis_server: RedisServer) -> Iterator[tuple[RedisServer, RedisProxy]]:
    with RedisProxy(redis_server.port) as proxy:
        yield redis_server, proxy


def test_the_limiter_keeps_deciding_when_scripts_are_flushed_even_during_a_reload(
    proxied: tuple[RedisServer, RedisProxy], capsys: pytest.CaptureFixture[str]
) -> None:
    """redis-py's Script reloads after one NOSCRIPT; a flush that lands between its reload and
    its retry (a second NOSCRIPT) is the classification's reload."""
    server, proxy = proxied
    limiter = RedisRateLimiter(redis_client(proxy.url), 100, on_outage="wait")
    for flushes in (0, 1, 2):
        proxy.on_commands = FlushScripts(server, flushes)
        assert limiter.decide("bulk", 0.0, time.monotonic() + 5) is not None
        assert proxy.on_commands.left == 0
    limiter.throttled()
    # the first call loads it (1); one flush: redis-py reloads (1); two: redis-py reloads, meets
    # the second, and the classification's retry meets the flushed script again and reloads (3)
    assert noscript_count(server) == 1 + 1 + 3
    assert not limiter.health.degraded
    assert [r["Message"] for r in app_logs(capsys.readouterr().err)] == []


def test_a_replay_pipeline_that_meets_noscript_reloads_and_is_written(
    proxied: tuple[RedisServer, RedisProxy],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipeline loads its scripts once, before it runs: a flush after that is NOSCRIPT in
    the middle of the replay of what Redis missed, and the replay is made once more."""
    server, proxy = proxied
    monkeypatch.setattr(idempotency, "SYNC_EVERY_S", 60.0)  # the test replays, not the thread
    store = RedisStore(redis_client(proxy.url))
    store.health.retry_after_s = 0.05
    waba_id = "9860000000000001"
    assert store.claim(waba_id, "a", 30) is None
    server.stop()
    store.release(waba_id, "a")  # Redis is away: kept
    assert store.unsynced == 1
    server.start()
    on(server).set(
        f"wababind:idem:{waba_id}",
        IdempotencyRecord(waba_id, RecordStatus.IN_PROGRESS, "a").to_json(),
    )  # the claim as it was before the restart
    proxy.on_commands = FlushScripts(server, 1)
    time.sleep(0.05)
    store.flush()
    assert (store.unsynced, noscript_count(server)) == (0, 1)
    assert on(server).get(f"wababind:idem:{waba_id}") is None  # released
    logs = app_logs(capsys.readouterr().err)
    assert not [r for r in logs if r["Message"].startswith("Redis refused")]


def test_a_password_refused_at_start_is_said_as_refused_not_unreachable(
    servers: dict[str, RedisServer],
    wababind_env: Any,
    monkeypatch: pytest.MonkeyPatch,
    context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "not-" + PASSWORD
    monkeypatch.setenv("REDIS_URL", f"redis://:{wrong}@127.0.0.1:{servers['locked'].port}/0")
    initialize(context())
    err = capsys.readouterr().err
    said = [(r["Level"], r.get("RedisCode")) for r in app_logs(err) if r["Component"] == "redis"]
    assert said == [("ERROR", "WRONGPASS")]
    assert [r for r in app_logs(err) if r["Message"] == REDIS_UNREACHABLE] == []
    assert PASSWORD not in err and "Traceback" not in err


def test_with_on_redis_outage_local_a_refusal_still_binds_nothing_on_memory(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`local` trades an outage for availability; a Redis that answers and refuses is no outage:
    the quota and the records are there, so no slot or claim is guessed from memory."""
    admin = redis.Redis.from_url(redis_url)
    admin.set(DEFAULT_KEY, "not a hash")
    admin.hset("wababind:idem:9870000000000001", "f", "1")
    limiter = RedisRateLimiter(redis_client(redis_url), 100, on_outage="local")
    store = RedisStore(redis_client(redis_url), on_outage="local")
    with pytest.raises(SharedStoreUnavailable):
        limiter.decide("bulk", 0.0, time.monotonic() + 5)
    with pytest.raises(SharedStoreUnavailable):
        store.claim("9870000000000001", "a", 30)
    with pytest.raises(SharedStoreUnavailable):  # unknown here, and Redis cannot say
        store.get("9870000000000001")
    assert not limiter.health.degraded and not store.health.degraded
    said = {(code, operation) for _, code, operation in refusals(capsys.readouterr().err)}
    assert said == {("WRONGTYPE", "quota decision"), ("WRONGTYPE", "claim")}

    # the same two, with Redis away (nothing listens): the fallback stands in, as chosen
    away = f"redis://127.0.0.1:{free_port()}/0"
    assert RedisRateLimiter(redis_client(away), 100, on_outage="local").decide(
        "bulk", 0.0, time.monotonic() + 5
    )
    fallback = RedisStore(redis_client(away), on_outage="local")
    assert fallback.claim("9870000000000002", "a", 30) is None
