"""No abandoned calls (SPEC "Calling CAMS"): a CAMS call starts only when the invocation can wait
it out, connect and whole read timeout; otherwise the bind ends `DeadlineExceeded` without a call,
503 with `Retry-After` for a webhook. A call given up on at the deadline had often bound the
WABA, and the sender's retry bound it again.

The burst is the issue's reproduction: more webhooks than the quota serves before a short function
timeout, on several processes sharing a real redis-server, then the senders' retries (same
`webhook-id`, new timestamp and signature) until each has its answer.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from index import http_handler
from tests.fixtures.handlers import signed_event
from tests.test_duplicates import Child, child_env

BURST = 12  # webhooks at once
INSTANCES = 4  # processes, each serving BURST / INSTANCES of them at a time
QUOTA = 2  # binds/s, at CAMS and in CAMS_QPS
LATENCY_S = 0.7  # CAMS's answer time
READ_TIMEOUT_S = "1"  # CAMS_TIMEOUT_S: above the latency, so every call that starts is answered
FN_TIMEOUT = 3  # FC function timeout of each delivery: room for about 3 calls of the 12
MAX_ROUNDS = 15  # sender retries, bounded


def worker() -> None:
    """In a child: one FC instance of the HTTP function. Each stdin line is a delivery (an HTTP
    trigger event); it answers `RESP {"Tag", "Status", "Headers", "Outcome"}` per line."""
    from tests.fixtures.handlers import FakeContext, FakeFunction
    from wababind.runtime import get_runtime

    job = json.loads(sys.argv[1])
    get_runtime()
    print("READY", flush=True)

    def serve(line: str) -> None:
        request = json.loads(line)
        context = FakeContext(function=FakeFunction(timeout=job["timeout"]))
        response = http_handler(request["Event"].encode(), context)
        answer = {
            "Tag": request["Tag"],
            "Status": response["statusCode"],
            "Headers": response["headers"],
            "Outcome": json.loads(response["body"]),
        }
        sys.stdout.write("RESP " + json.dumps(answer) + "\n")  # one write: the log sink's lines
        sys.stdout.flush()  # (outcomes on stdout too) come from other threads meanwhile

    with ThreadPoolExecutor(job["concurrency"]) as pool:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            pool.submit(serve, line)


def test_a_burst_over_the_quota_binds_each_waba_once_and_every_answer_is_in_an_outcome(
    wababind_env: Any, redis_url: str
) -> None:
    sim = wababind_env
    sim.set_qps(QUOTA)
    sim.set_latency(LATENCY_S)
    env = child_env(REDIS_URL=redis_url, CAMS_QPS=str(QUOTA), CAMS_TIMEOUT_S=READ_TIMEOUT_S)
    job = {"timeout": FN_TIMEOUT, "concurrency": BURST // INSTANCES}
    children = [Child(job, env, target="tests.test_no_abandoned_calls") for _ in range(INSTANCES)]
    senders = {f"msg_burst_{i:02d}": f"70000000000000{i:02d}" for i in range(BURST)}
    answers: dict[str, list[dict[str, Any]]] = defaultdict(list)  # webhook-id → its deliveries
    signatures: dict[str, list[str]] = defaultdict(list)
    pending = dict(senders)
    try:
        for child in children:
            child.wait_for("READY")
        for number in range(MAX_ROUNDS):
            if not pending:
                break
            sent: Counter[int] = Counter()
            for index, (webhook_id, waba_id) in enumerate(pending.items()):
                # a resend: the same id, signed again now (a new timestamp and signature), and
                # often another instance
                event = signed_event({"WabaId": waba_id}, msg_id=webhook_id)
                signatures[webhook_id].append(json.loads(event)["headers"]["webhook-signature"])
                target = (index + number) % INSTANCES
                children[target].send(json.dumps({"Tag": webhook_id, "Event": event.decode()}))
                sent[target] += 1
            for target, count in sent.items():
                for _ in range(count):
                    answer = json.loads(children[target].wait_for("RESP ")[5:])
                    answers[answer["Tag"]].append(answer)
            pending = {w: senders[w] for w in pending if answers[w][-1]["Status"] != 200}
        for child in children:
            child.send("quit")
        for child in children:
            assert child.proc.wait(30) == 0, child.stderr
    finally:
        sim.set_latency(0)
        for child in children:
            child.kill()

    assert not pending, f"still unanswered after {MAX_ROUNDS} rounds: {sorted(pending)}"
    first = [a[0] for a in answers.values()]
    late = [a for a in first if a["Status"] == 503]
    assert late, "the burst fitted the quota: nothing was tested"
    outcomes = [a["Outcome"] for deliveries in answers.values() for a in deliveries]
    for answer in (a for deliveries in answers.values() for a in deliveries):
        outcome = answer["Outcome"]
        assert outcome["Ambiguous"] is False, outcome  # every call that started was answered
        if answer["Status"] == 503:
            assert outcome["Retryable"] is True and answer["Headers"]["Retry-After"].isdigit()
        if outcome["Code"] == "DeadlineExceeded":
            assert outcome["Attempts"] == 0, outcome  # no time for a whole call: none started
        else:
            assert answer["Status"] in (200, 503), outcome
    for webhook_id, deliveries in answers.items():
        assert deliveries[-1]["Outcome"]["Status"] in ("bound", "duplicate")
        assert deliveries[-1]["Outcome"]["CustSpaceId"] == sim.bound()[senders[webhook_id]]
        assert len(set(signatures[webhook_id])) == len(deliveries)  # each resend signed anew

    ok = [c for c in sim.calls() if c.code == "OK"]
    assert Counter(c.waba_id for c in ok) == Counter(senders.values())  # one each, never two
    held = {o["RequestId"] for o in outcomes if o["Status"] in ("bound", "duplicate")}
    assert {c.request_id for c in ok} <= held, "CAMS bound a WABA that no outcome reports"
    assert len(sim.calls()) == sum(o["Attempts"] for o in outcomes)  # no call without an outcome


NO_TIME = [
    # (CAMS_TIMEOUT_S, function timeout): connect + read timeout never fit before the deadline
    ("5", 3),
    ("10", 10),
    ("30", 30),
]


@pytest.mark.parametrize(("read_timeout", "fn_timeout"), NO_TIME)
def test_with_no_time_for_a_whole_call_a_webhook_gets_503_and_cams_is_not_called(
    wababind_env: Any,
    context: Any,
    monkeypatch: pytest.MonkeyPatch,
    read_timeout: str,
    fn_timeout: int,
) -> None:
    monkeypatch.setenv("CAMS_TIMEOUT_S", read_timeout)
    response = http_handler(signed_event({"WabaId": "7100000000000001"}), context(fn_timeout))
    outcome = json.loads(response["body"])
    assert response["statusCode"] == 503 and response["headers"]["Retry-After"].isdigit()
    assert (outcome["Code"], outcome["Retryable"], outcome["Attempts"]) == (
        "DeadlineExceeded",
        True,
        0,
    )
    assert outcome["Ambiguous"] is False
    assert wababind_env.count() == 0
