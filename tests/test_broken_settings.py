"""Each broken setting of the README's configuration table, through the initializer and both
handlers: the initializer returns and logs it once, naming the variable; the HTTP function
answers 500 `ConfigurationError` naming it; the MQ function raises a ConfigError naming it, with
no frame of the package (FC's `stackTrace` is the one line of index.py that raises). Nowhere a
traceback or the value: a URL may hold a password.

The settings that used to fail only when used (a REDIS_URL port or db, a port 0, a host with a
space) are refused at load time like the rest.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

import index
from tests.fixtures.handlers import signed_event, signed_headers
from wababind.errors import ConfigError

PASSWORD = "KnownRedisPassw0rd"
SLS = {"OUTCOME_SINKS": "log,sls", "SLS_PROJECT": "wababind-logs", "SLS_LOGSTORE": "outcomes"}
SLS_AT = {**SLS, "SLS_ENDPOINT": "ap-southeast-1.log.aliyuncs.com"}
CALLBACK = {"OUTCOME_SINKS": "log,callback"}
WEBHOOK_STEP = {"AFTER_BIND": "account-webhook"}

# (the variable, its broken value, what else the row needs)
BROKEN: list[tuple[str, str, dict[str, str]]] = [
    ("CAMS_ENDPOINT", "http://cams.example.com", {}),  # plain http off loopback
    ("CAMS_ENDPOINT", "cams.example.com:0", {}),
    ("CAMS_ENDPOINT", "cams.example.com:63a79", {}),
    ("CAMS_ENDPOINT", "https://cams example.com", {}),
    ("CAMS_ENDPOINT", "https://cams.example.com/some/path", {}),
    ("CAMS_REGION", "ap southeast 1", {}),
    ("CAMS_QPS", "ten per second", {}),
    ("CAMS_QPS", "0", {}),
    ("CAMS_QPS", "nan", {}),
    ("INTERACTIVE_MAX_SHARE", "1.5", {}),
    ("CAMS_TIMEOUT_S", "-1", {}),
    ("WEBHOOK_SECRET", "plain-text-webhook-secret", {}),
    ("WEBHOOK_AUTH", "maybe-later", {}),
    ("OUTCOME_SINKS", "log,kafka", {}),
    ("CALLBACK_URL", "http://hooks.example.com/bound", {}),
    ("CALLBACK_URL", "https://hooks.example.com:63a79/bound", {}),
    ("CALLBACK_URL", f"https://u:{PASSWORD}@hooks.example.com/bound", {}),
    ("CALLBACK_SECRET", "whsec_not-base64-!!", CALLBACK),
    ("CALLBACK_SECRET", "", CALLBACK),  # required by the callback sink
    ("CALLBACK_ALLOWED_HOSTS", "https://hooks.example.com", {}),
    ("CALLBACK_ALLOWED_HOSTS", "hooks.example.com:443", {}),
    ("CALLBACK_ALLOWED_HOSTS", "*.example.com", {}),
    ("SLS_ENDPOINT", "", SLS),  # required by the sls sink
    ("SLS_ENDPOINT", "ap-southeast-1.log.aliyuncs.com:63a79", SLS),
    ("SLS_ENDPOINT", "http://ap-southeast-1.log.aliyuncs.com", SLS),
    ("SLS_PROJECT", "Wababind_Logs", SLS_AT),
    ("SLS_LOGSTORE", "x", SLS_AT),
    ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:63a79/0", {}),  # ValueError in redis-py
    ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6379/notadb", {}),  # redis-py: db 0
    ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:99999/0", {}),
    ("REDIS_URL", f"redis://:{PASSWORD}@:6379/0", {}),  # no host
    ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6379/0?socket_timeout=30", {}),
    ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6379/0?ssl_cert_reqs=none", {}),
    ("REDIS_URL", f"http://:{PASSWORD}@127.0.0.1:6379/0", {}),
    ("REDIS_URL", "unix://", {}),
    ("IDEMPOTENCY_TTL_S", "forever", {}),
    ("ON_REDIS_OUTAGE", "fallback", {}),
    ("AFTER_BIND", "sync-phone-numbers,register-phone", {}),
    ("AFTER_BIND", "sync-phone-numbers,sync-phone-numbers", {}),
    ("ACCOUNT_WEBHOOK_URL", "", WEBHOOK_STEP),  # account-webhook needs a URL or the queue
    ("ACCOUNT_WEBHOOK_URL", "http://hooks.example.com/status", WEBHOOK_STEP),
    ("ACCOUNT_WEBHOOK_URL", f"https://u:{PASSWORD}@hooks.example.com/status", WEBHOOK_STEP),
    ("ACCOUNT_WEBHOOK_URL", "https://hooks.example.com:63a79/status", WEBHOOK_STEP),
    ("ACCOUNT_WEBHOOK_URL", "https://hooks.example.com/status", {}),  # no account-webhook
    ("ACCOUNT_WEBHOOK_QUEUE", "yes", WEBHOOK_STEP),
    ("ACCOUNT_WEBHOOK_QUEUE", "Y", {"AFTER_BIND": "sync-phone-numbers"}),
]


def row_id(row: tuple[str, str, dict[str, str]]) -> str:
    return f"{row[0]}={row[1].replace(PASSWORD, 'PW')}"


def app_errors(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if '"Kind":"AppLog"' in line]
    return [line for line in lines if line["Level"] == "ERROR"]


def assert_clean(text: str, name: str, value: str) -> None:
    """No traceback, and the value not echoed (values of 4 characters or fewer, such as `0`,
    occur anywhere and say nothing)."""
    assert "Traceback" not in text and 'File "' not in text
    assert PASSWORD not in text
    if len(value) > 4:
        assert value not in text, f"{name}'s value was echoed"


@pytest.mark.parametrize(("name", "value", "extra"), BROKEN, ids=[row_id(r) for r in BROKEN])
def test_a_broken_setting_is_named_by_the_initializer_and_both_handlers(
    wababind_env: Any,
    monkeypatch: Any,
    context: Any,
    capsys: Any,
    name: str,
    value: str,
    extra: Any,
) -> None:
    for variable, setting in {**extra, name: value}.items():
        monkeypatch.setenv(variable, setting)
    index.initialize(context())  # returns: a failing initializer would fail every invocation
    seen: list[str] = []
    for _ in range(2):  # the first invocation after the initializer, and the next
        answer = index.http_handler(signed_event({"WabaId": "7100000000000001"}), context())
        body = json.loads(answer["body"])
        assert (answer["statusCode"], body["Code"]) == (500, "ConfigurationError")
        assert name in body["Message"]
        seen.append(answer["body"])

        with pytest.raises(ConfigError) as raised:
            index.mq_handler(json.dumps({"WabaId": "7100000000000002"}).encode(), context())
        assert name in str(raised.value)
        frames = []
        tb = raised.value.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_filename)
            tb = tb.tb_next
        assert [f for f in frames if "bind_waba" in f] == [index.__file__]  # no package frame
        assert raised.value.__cause__ is None and raised.value.__suppress_context__
        seen.append(str(raised.value))

    out = capsys.readouterr()
    [logged] = app_errors(out.err)  # once per instance, by the initializer
    assert name in logged["Reason"]
    assert_clean("\n".join([*seen, out.out, out.err]), name, value)
    assert wababind_env.count() == 0  # nothing called CAMS


def test_a_settings_error_through_fc_has_no_stack_of_the_package(start_local_fc: Any) -> None:
    """The issue's case, through the emulator as FC runs it: the MQ function's error body holds
    errorType ConfigError and the one index.py line; the HTTP trigger answers JSON 500."""
    fc = start_local_fc(env={"REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:63a79/0"})
    reply = fc.emulator.invoke("bind-waba-mq", b'{"WabaId": "7100000000000003"}')
    assert reply.header("x-fc-error-type") == "UnhandledInvocationError"
    body = reply.json()
    assert body["errorType"] == "ConfigError" and "REDIS_URL" in body["errorMessage"]
    [(file, _, function, _)] = body["stackTrace"]
    assert file.endswith('index.py"') and function == "in mq_handler"
    assert PASSWORD not in reply.body.decode()

    text = json.dumps({"WabaId": "7100000000000004"})
    headers = {"Content-Type": "application/json", **signed_headers(text)}
    answer = requests.post(fc.endpoint + "/", data=text, headers=headers, timeout=30)
    assert answer.status_code == 500 and "x-fc-error-type" not in answer.headers
    assert answer.json()["Code"] == "ConfigurationError" and "REDIS_URL" in answer.text
    assert PASSWORD not in answer.text
    assert fc.cams.count() == 0
