"""The idempotency store: one owner per WabaId, explicit states, expiry, and Redis outages."""

from __future__ import annotations

import json
import threading
import time

import pytest

from wababind.errors import SharedStoreUnavailable
from wababind.idempotency import (
    IdempotencyRecord,
    InMemoryStore,
    RecordStatus,
    RedisStore,
    make_store,
)
from wababind.ratelimit import redis_client


def test_the_first_claim_wins_and_later_ones_see_it_in_progress(store):
    assert store.claim("w1", "a", 30) is None
    seen = store.claim("w1", "b", 30)
    assert seen is not None and (seen.status, seen.owner) == (RecordStatus.IN_PROGRESS, "a")


def test_complete_records_the_cust_space_id_for_duplicates(store):
    store.claim("w1", "a", 30)
    store.complete("w1", "a", cust_space_id="cs-1", request_id="R1", ttl_s=60)
    seen = store.claim("w1", "b", 30)
    assert seen is not None
    assert (seen.status, seen.cust_space_id, seen.request_id) == (
        RecordStatus.COMPLETED,
        "cs-1",
        "R1",
    )


def test_a_terminal_failure_is_remembered_only_by_its_owner_and_briefly(store):
    store.claim("w1", "a", 30)
    store.fail("w1", "intruder", code="X", message="no", ttl_s=60)
    assert store.get("w1").status is RecordStatus.IN_PROGRESS
    store.fail("w1", "a", code="Product.Unsubscript", message="not subscribed", ttl_s=0.2)
    record = store.get("w1")
    assert (record.status, record.code) == (RecordStatus.FAILED, "Product.Unsubscript")
    time.sleep(0.3)
    assert store.claim("w1", "b", 30) is None


def test_release_frees_the_waba_id_only_for_its_owner(store):
    store.claim("w1", "a", 30)
    store.release("w1", "intruder")
    assert store.get("w1") is not None
    store.release("w1", "a")
    assert store.get("w1") is None
    assert store.claim("w1", "b", 30) is None


def test_a_late_owner_cannot_overwrite_the_claim_of_the_one_that_took_over(store):
    store.claim("w1", "crashed", 0.1)
    time.sleep(0.2)
    assert store.claim("w1", "successor", 30) is None
    store.release("w1", "crashed")
    store.fail("w1", "crashed", code="X", message="late", ttl_s=60)
    assert store.get("w1").owner == "successor"


def test_an_in_progress_record_expires_so_a_dead_instance_blocks_nothing(store):
    assert store.claim("w1", "dead", 0.2) is None
    assert store.claim("w1", "b", 30) is not None
    time.sleep(0.3)
    assert store.claim("w1", "b", 30) is None


def test_concurrent_claims_have_exactly_one_winner(store):
    winners: list[str] = []
    barrier = threading.Barrier(20)

    def worker(i: int) -> None:
        barrier.wait(10)
        if store.claim("w1", f"o{i}", 30) is None:
            winners.append(f"o{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1


def test_records_survive_a_json_round_trip():
    record = IdempotencyRecord("w", RecordStatus.FAILED, "o", None, "R", "C", "ü message")
    assert IdempotencyRecord.from_json(record.to_json()) == record


def test_make_store_picks_redis_only_with_a_client(redis_url):
    assert isinstance(make_store(None), InMemoryStore)
    assert isinstance(make_store(redis_client(redis_url)), RedisStore)


def test_redis_records_are_shared_between_instances(redis_url):
    a, b = RedisStore(redis_client(redis_url)), RedisStore(redis_client(redis_url))
    assert a.claim("w1", "a", 30) is None
    assert b.claim("w1", "b", 30).owner == "a"
    a.complete("w1", "a", cust_space_id="cs-1", request_id="R", ttl_s=60)
    assert b.get("w1").cust_space_id == "cs-1"


def test_with_on_redis_outage_local_an_outage_degrades_to_memory(redis_server, capsys):
    store = RedisStore(redis_client(redis_server.url), on_outage="local")
    store.health.retry_after_s = 0.2
    store.claim("w1", "a", 30)
    store.complete("w1", "a", cust_space_id="cs-1", request_id="R", ttl_s=60)

    redis_server.stop()
    assert store.claim("w1", "b", 30).status is RecordStatus.COMPLETED  # mirrored locally
    assert store.claim("w2", "b", 30) is None  # kept in this instance while Redis is down

    redis_server.start()
    time.sleep(0.3)
    assert store.claim("w3", "c", 30) is None
    logs = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    said = [(r["Level"], r["Message"]) for r in logs if r.get("Component") == "idempotency"]
    assert [level for level, _ in said] == ["WARNING", "INFO", "INFO"], said
    assert "ON_REDIS_OUTAGE=local" in said[0][1]


def test_with_on_redis_outage_wait_a_claim_raises_and_known_records_still_answer(redis_server):
    store = RedisStore(redis_client(redis_server.url))
    store.health.retry_after_s = 0.2
    store.claim("w1", "a", 30)
    store.complete("w1", "a", cust_space_id="cs-1", request_id="R", ttl_s=60)
    assert store.claim("w2", "a", 30) is None

    redis_server.stop()
    assert store.claim("w1", "b", 30).status is RecordStatus.COMPLETED  # known here: no bind
    with pytest.raises(SharedStoreUnavailable):
        store.claim("w3", "b", 30)
    assert store.get("w2").owner == "a"  # this instance's own claim still counts
    with pytest.raises(SharedStoreUnavailable):
        store.get("w4")
    assert store.complete("w2", "a", cust_space_id="cs-2", request_id="R2", ttl_s=60) is False
    assert store.unsynced == 2  # w2's completion, w3's claim to undo

    redis_server.start()
    time.sleep(0.3)
    store.flush()
    assert store.unsynced == 0
    other = RedisStore(redis_client(redis_server.url))  # another instance sees it all
    assert other.get("w2").status is RecordStatus.COMPLETED
    assert other.get("w3") is None


def test_a_record_a_newer_version_wrote_is_read_not_refused(redis_url):
    """A rolling deploy: a newer version's record has a field (and maybe a status) this one
    does not know. The known fields decide; an unknown status holds the WabaId."""
    client = redis_client(redis_url)
    newer = {"key": "w1", "status": "COMPLETED", "owner": "o", "cust_space_id": "cs-1"}
    client.set("wababind:idem:w1", json.dumps({**newer, "ambiguous": False, "added": [1]}))
    client.set("wababind:idem:w2", json.dumps({"key": "w2", "status": "CHECKING", "owner": "o"}))
    store = RedisStore(client)
    seen = store.claim("w1", "b", 30)
    assert seen is not None and (seen.status, seen.cust_space_id) == (
        RecordStatus.COMPLETED,
        "cs-1",
    )
    held = store.claim("w2", "b", 30)
    assert held is not None and (held.status, held.owner) == (RecordStatus.IN_PROGRESS, "o")


def test_pending_writes_are_flushed_at_the_end_of_an_invocation_not_by_a_thread(redis_server):
    """FC freezes every thread between invocations: the handler's last step gives Redis what it
    missed, in one bounded try while Redis answers, and skips it during the outage's pause."""
    store = RedisStore(redis_client(redis_server.url))
    store.health.retry_after_s = 0.2
    assert store.claim("w1", "a", 30) is None
    redis_server.stop()
    assert store.complete("w1", "a", cust_space_id="cs-1", request_id="R", ttl_s=60) is False
    assert store.flush_pending() == 1  # in the pause: not tried, nothing waits
    redis_server.start()
    time.sleep(0.3)
    assert store.flush_pending() == 0
    assert InMemoryStore().flush_pending() == 0
    other = RedisStore(redis_client(redis_server.url))
    assert other.get("w1").cust_space_id == "cs-1"
