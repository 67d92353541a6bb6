"""FC 3.0 lifecycle hooks: the initializer readies an instance once, before its first invocation
(the first request then imports no SDK), Redis out of reach is said once at start and fails
nothing, and preStop lets sink deliveries under way finish."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from tests.fixtures.fc import free_port, local_env
from tests.fixtures.handlers import WEBHOOK_SECRET, http_event, signed_event
from wababind.credentials import Credentials
from wababind.lifecycle import NO_REDIS, REDIS_UNREACHABLE, initialize, pre_stop
from wababind.outcome import Outcome
from wababind.runtime import get_runtime, reset_runtime
from wababind.sinks.dispatch import Dispatcher
from wababind.webhook import http_handler
from wababind_local.fc_emulator import FcEmulator

TOY_S_YAML = """\
edition: 3.0.0
name: toy
resources:
{functions}
"""
TOY_FUNCTION = """\
  {name}:
    component: fc3
    props:
      region: ap-southeast-1
      functionName: {name}
      runtime: python3.10
      code: ./code
      handler: {module}.handler
      timeout: 5
      instanceLifecycleConfig:
        initializer:
          handler: {module}.initialize
          timeout: 5
        preStop:
          handler: {module}.pre_stop
          timeout: 5
"""
TOY_CODE = """\
import os, threading, time

_lock = threading.Lock()
_failures_left = [int(os.environ.get("TOY_FAILED_INITS", "0"))]


def _note(what, context):
    with _lock, open(os.environ["TOY_LOG"], "a") as log:
        log.write(f"{what} {context.function.name}\\n")


def initialize(context):
    if _failures_left[0] > 0:
        _failures_left[0] -= 1
        _note("init-failed", context)
        raise RuntimeError("not ready")
    time.sleep(0.2)  # concurrent first invocations arrive while it runs
    _note("init", context)


def handler(event, context):
    _note("handle", context)
    return "ok"


def pre_stop(context):
    _note("stop", context)
"""


def toy_project(tmp_path: Path, *names: str) -> tuple[Path, Path]:
    """A project whose hooks write what ran to a log (a module name of its own per test)."""
    module = f"toy_{uuid.uuid4().hex[:8]}"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / f"{module}.py").write_text(TOY_CODE)
    functions = "".join(TOY_FUNCTION.format(name=n, module=module) for n in names)
    (tmp_path / "s.yaml").write_text(TOY_S_YAML.format(functions=functions))
    return tmp_path / "s.yaml", tmp_path / "hooks.log"


def test_the_emulator_initializes_each_instance_once_before_its_first_invocation(tmp_path):
    s_yaml, log = toy_project(tmp_path, "fn-a", "fn-b")
    emulator = FcEmulator(s_yaml=s_yaml, env={"TOY_LOG": str(log)}).start()
    try:
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: emulator.invoke("fn-a", b"{}"), range(4)))
        replies.append(emulator.invoke("fn-b", b"{}"))
        replies.append(emulator.invoke("fn-a", b"{}"))
        assert [r.body for r in replies] == [b"ok"] * 6
        assert log.read_text().splitlines() == [
            "init fn-a",
            *["handle fn-a"] * 4,
            "init fn-b",
            "handle fn-b",
            "handle fn-a",
        ]
    finally:
        emulator.stop()
    assert log.read_text().splitlines()[-2:] == ["stop fn-a", "stop fn-b"]


def test_a_failed_initializer_fails_that_invocation_and_runs_again_on_the_next(tmp_path):
    s_yaml, log = toy_project(tmp_path, "fn-a")
    env = {"TOY_LOG": str(log), "TOY_FAILED_INITS": "1"}
    with FcEmulator(s_yaml=s_yaml, env=env) as emulator:
        first, second = emulator.invoke("fn-a", b"{}"), emulator.invoke("fn-a", b"{}")
    assert ("x-fc-error-type", "UnhandledInvocationError") in first.headers
    assert b"not ready" in first.body and second.body == b"ok"
    assert log.read_text().splitlines() == [
        "init-failed fn-a",
        "init fn-a",
        "handle fn-a",
        "stop fn-a",
    ]


def test_an_instance_never_invoked_is_never_initialized_nor_stopped(tmp_path):
    s_yaml, log = toy_project(tmp_path, "fn-a")
    with FcEmulator(s_yaml=s_yaml, env={"TOY_LOG": str(log)}):
        pass
    assert not log.exists()


WATCH_SDK_IMPORTS = """\
import json, sys, threading

threads = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "aliyunsdkcore":
            threads.append(threading.current_thread().name)


sys.meta_path.insert(0, Watch())
from wababind_local.fc_emulator import FcEmulator

emulator = FcEmulator(env=json.loads(sys.argv[1])).start()
at_start = sorted(set(threads))
reply = emulator.invoke("bind-waba-mq", json.dumps({"WabaId": "1234567"}).encode())
emulator.stop()
print(json.dumps({"at_start": at_start, "threads": sorted(set(threads)),
                  "summary": json.loads(reply.body)}))
"""


def test_the_first_invocation_imports_no_sdk_the_initializer_did(cams_sim):
    """`make serve`'s emulator, in a fresh interpreter: which thread imported aliyunsdkcore."""
    from wababind_local.cams_simulator import DEFAULT_STS_KEY

    env = {
        "CAMS_ENDPOINT": cams_sim.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_STS_KEY.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_STS_KEY.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": DEFAULT_STS_KEY.security_token or "",
        "OUTCOME_SINKS": "log",
    }
    done = subprocess.run(
        [sys.executable, "-c", WATCH_SDK_IMPORTS, json.dumps(env)],
        env=local_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["at_start"] == []
    assert report["threads"] == ["fc-init-bind-waba-mq"]
    assert report["summary"]["Bound"] == 1
    assert cams_sim.count() == 1


# A fresh interpreter: FC's initializer for one function, then that function's first request;
# prints the modules the request imported. The context is a SimpleNamespace, so nothing but
# index and what it imports is loaded before the count.
FIRST_REQUEST_IMPORTS = """\
import json, sys
from types import SimpleNamespace

import index

handler, event = sys.argv[1], sys.argv[2].encode()
context = SimpleNamespace(
    request_id="first", credentials=None,
    function=SimpleNamespace(name="fn", handler=handler, memory=512, timeout=30),
)
index.initialize(context)
ready = set(sys.modules)
reply = getattr(index, handler.rpartition(".")[2])(event, context)
print(json.dumps({"new": sorted(set(sys.modules) - ready), "reply": reply}))
"""


def first_request_imports(cams_sim, handler: str, event: bytes) -> tuple[list[str], object]:
    from wababind_local.cams_simulator import DEFAULT_KEY

    env = local_env(
        CAMS_ENDPOINT=cams_sim.endpoint,
        ALIBABA_CLOUD_ACCESS_KEY_ID=DEFAULT_KEY.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=DEFAULT_KEY.access_key_secret,
        OUTCOME_SINKS="log",
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        CALLBACK_ALLOWED_HOSTS="hooks.example.com",
    )
    done = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST_IMPORTS, handler, event.decode()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    return report["new"], report["reply"]


def test_after_the_http_initializer_the_first_webhook_request_imports_nothing(cams_sim):
    body = {"WabaId": "1234567", "CallbackUrl": "https://hooks.example.com/bound"}
    new, reply = first_request_imports(cams_sim, "index.http_handler", signed_event(body))
    assert json.loads(reply["body"])["Status"] == "bound"  # signature checked, CAMS called
    assert new == []
    assert cams_sim.count() == 1


def test_after_the_mq_initializer_the_first_batch_imports_nothing(cams_sim):
    batch = json.dumps([{"WabaId": "1234567"}, {"WabaId": "7654321", "Reference": "r"}])
    new, reply = first_request_imports(cams_sim, "index.mq_handler", batch.encode())
    assert json.loads(reply)["Bound"] == 2
    assert new == []
    assert cams_sim.count() == 2


def test_the_initializer_finds_the_handler_in_the_context_or_fc_s_environment(monkeypatch):
    from types import SimpleNamespace

    from wababind.lifecycle import handler_modules

    def ctx(handler):
        return SimpleNamespace(function=SimpleNamespace(handler=handler))

    monkeypatch.delenv("FC_FUNCTION_HANDLER", raising=False)
    assert handler_modules(ctx("index.http_handler")) == ("wababind.webhook",)
    assert handler_modules(ctx("index.mq_handler")) == ("wababind.batch",)
    everything = ("wababind.webhook", "wababind.batch")
    assert handler_modules(SimpleNamespace()) == everything  # unknown: the first call pays none
    assert handler_modules(ctx("other.handler")) == everything
    monkeypatch.setenv("FC_FUNCTION_HANDLER", "index.mq_handler")
    assert handler_modules(SimpleNamespace()) == ("wababind.batch",)


def test_each_function_imports_only_its_own_handler(cams_sim):
    """The MQ function never loads the webhook's modules, nor the HTTP function the batch's."""
    for handler, own, other in [
        ("index.mq_handler", "wababind.batch", "wababind.webhook"),
        ("index.http_handler", "wababind.webhook", "wababind.batch"),
    ]:
        code = (
            "import sys; from types import SimpleNamespace; import index; "
            f"index.initialize(SimpleNamespace(function=SimpleNamespace(handler={handler!r}))); "
            f"print({own!r} in sys.modules, {other!r} in sys.modules, "
            "'standardwebhooks' in sys.modules)"
        )
        env = local_env(CAMS_ENDPOINT=cams_sim.endpoint, WEBHOOK_SECRET=WEBHOOK_SECRET)
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        http = handler == "index.http_handler"
        assert done.stdout.split() == ["True", "False", str(http)], handler


def app_log(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if '"Kind":"AppLog"' in line]


def test_redis_out_of_reach_is_said_once_at_start_and_fails_nothing(
    wababind_env, monkeypatch, context, capsys
):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    initialize(context())
    warnings = [r for r in app_log(capsys.readouterr().err) if r["Message"] == REDIS_UNREACHABLE]
    assert len(warnings) == 1 and warnings[0]["Level"] == "WARNING"
    assert "redis://" not in json.dumps(warnings)  # the URL may hold a password


def test_without_redis_url_the_initializer_says_once_what_it_costs(
    wababind_env, monkeypatch, redis_url, context, capsys
):
    """FC runs one request per instance: without a shared Redis, the quota and "never twice"
    hold per instance only. One WARNING line per instance, none when REDIS_URL is set."""
    initialize(context())  # FC runs it once per instance
    warnings = [r for r in app_log(capsys.readouterr().err) if r["Message"] == NO_REDIS]
    assert len(warnings) == 1 and warnings[0]["Level"] == "WARNING"
    assert "per instance" in NO_REDIS and "\n" not in NO_REDIS
    monkeypatch.setenv("REDIS_URL", redis_url)
    reset_runtime()
    initialize(context())
    assert not [r for r in app_log(capsys.readouterr().err) if r["Message"] == NO_REDIS]
    pre_stop(context())


def test_the_initializer_opens_the_redis_connection(wababind_env, monkeypatch, redis_url, context):
    monkeypatch.setenv("REDIS_URL", redis_url)
    watcher = redis.Redis.from_url(redis_url)
    before = len(watcher.client_list())
    initialize(context())
    assert len(watcher.client_list()) == before + 1
    pre_stop(context())
    assert len(watcher.client_list()) == before
    watcher.close()


def test_the_initializer_builds_the_cams_client_for_the_instance_credentials(wababind_env, context):
    from tests.fixtures.handlers import FakeCredentials

    creds = FakeCredentials("STS.key", "secret", "token")
    initialize(context(credentials=creds))
    cams = get_runtime().binder.cams
    assert Credentials("STS.key", "secret", "token") in cams._clients
    assert wababind_env.count() == 0  # ready, and nothing called


def test_a_bad_setting_never_fails_the_initializer_and_every_request_names_it(
    wababind_env, monkeypatch, context, capsys
):
    monkeypatch.setenv("CAMS_QPS", "lots")
    initialize(context())
    initialize(context())
    errors = [r for r in app_log(capsys.readouterr().err) if r["Level"] == "ERROR"]
    assert len(errors) == 1 and "CAMS_QPS" in errors[0]["Reason"]
    answer = http_handler(http_event('{"WabaId": "1"}'), context())
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["Code"] == "ConfigurationError"


class SlowSink:
    """A network sink that delivers when released (stands for a slow callback receiver)."""

    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[Outcome] = []

    def send(self, outcome: Outcome, credentials: object, deadline: float | None = None) -> None:
        self.release.wait(10)
        self.sent.append(outcome)


def test_pre_stop_lets_deliveries_under_way_finish(capsys):
    sink = SlowSink()
    dispatcher = Dispatcher([sink])
    outcome = Outcome("e1", "direct", "1", None, "bound", "OK", "")
    deliveries = dispatcher.deliver(outcome, None, time.monotonic() + 0.05)
    dispatcher.settle(deliveries, time.monotonic() + 0.05)  # the invocation ends without it
    threading.Timer(0.2, sink.release.set).start()
    assert dispatcher.flush(5.0) == 0
    assert sink.sent == [outcome]


def test_pre_stop_gives_up_after_its_time_and_counts_what_is_left():
    sink = SlowSink()
    dispatcher = Dispatcher([sink])
    dispatcher.deliver(Outcome("e2", "direct", "2", None, "bound", "OK", ""), None)
    assert dispatcher.flush(0.1) == 1
    sink.release.set()


def test_the_hook_handlers_run_in_a_fresh_fc_like_process(tmp_path):
    """index.initialize and index.pre_stop are what s.yaml names, callable with a context."""
    script = textwrap.dedent(
        """
        import index
        from types import SimpleNamespace
        ctx = SimpleNamespace(request_id="r", credentials=None, function=None)
        index.initialize(ctx)
        index.pre_stop(ctx)
        print("ok")
        """
    )
    env = local_env(WEBHOOK_AUTH="none", OUTCOME_SINKS="log")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
