"""The local FC emulator, driven by the real `fc2` client over HTTP, the CAMS simulator behind."""

from __future__ import annotations

import base64
import email.utils
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import fc2
import pytest
import requests

import index
from tests.fixtures.fc import free_port
from tests.fixtures.handlers import outcome_lines, signed_event, signed_headers
from wababind.runtime import reset_runtime
from wababind_local.fc_emulator import (
    LOCAL_FC_KEY_ID,
    LOCAL_FC_KEY_SECRET,
    ROOT,
    load_project,
    resolve,
)

# Fields that differ between two runs of the same bind.
VOLATILE = ("StartedAt", "FinishedAt", "DurationMs", "QuotaWaitMs", "EventId", "RequestId")

PROBE = """
import json, os

def handler(event, context):
    data = json.loads(event)
    if data.get("raise"):
        raise ValueError("the probe was asked to fail")
    return json.dumps({
        "request_id": context.request_id,
        "key_id": context.credentials.access_key_id if context.credentials else None,
        "has_secret": bool(context.credentials and context.credentials.access_key_secret),
        "has_token": bool(context.credentials and context.credentials.security_token),
        "function": [context.function.name, context.function.handler,
                     context.function.memory, context.function.timeout],
        "log": [context.service.log_project, context.service.log_store],
        "region": context.region,
        "env": os.environ.get("PROBE_SETTING"),
    })

def http(event, context):
    return {"statusCode": 201, "headers": {"X-Echo": "yes"},
            "body": base64_of(event), "isBase64Encoded": True}

def flaky(event, context):
    args = json.loads(event)
    with open(args["path"], "a") as record:
        record.write(context.request_id + "\\n")
    with open(args["path"]) as record:
        tries = len(record.read().splitlines())
    if tries < args["succeed_on"]:
        raise RuntimeError(f"try {tries} fails")
    return "ok"

def slow(event, context):
    import time
    time.sleep(json.loads(event)["sleep"])
    return "done"

def base64_of(data):
    import base64
    return base64.b64encode(data).decode()
"""

PROBE_YAML = """
edition: 3.0.0
name: probe-app
vars:
  region: ${env('PROBE_REGION', 'cn-hangzhou')}
  shared:
    setting: ${env('PROBE_UNSET_VARIABLE', 'from-vars')}
resources:
  probe:
    component: fc3
    props:
      region: ${vars.region}
      functionName: probe
      code: ./code
      handler: probe_index.handler
      memorySize: 256
      timeout: 42
      environmentVariables:
        PROBE_SETTING: ${vars.shared.setting}
      logConfig:
        project: probe-logs
        logstore: probe-store
  probe-flaky:
    component: fc3
    props:
      functionName: probe-flaky
      code: ./code
      handler: probe_index.flaky
      asyncInvokeConfig:
        maxAsyncRetryAttempts: 2
  probe-slow:
    component: fc3
    props:
      functionName: probe-slow
      code: ./code
      handler: probe_index.slow
      timeout: 1
  probe-http:
    component: fc3
    props:
      functionName: probe-http
      code: ./code
      handler: probe_index.http
      triggers:
        - triggerName: http
          triggerType: http
"""


@pytest.fixture
def probe_fc(start_local_fc, tmp_path: Path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "probe_index.py").write_text(PROBE)
    (tmp_path / "s.yaml").write_text(PROBE_YAML)
    return start_local_fc(tmp_path / "s.yaml")


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**{k: v for k, v in r.items() if k not in VOLATILE}, "HasRequestId": bool(r["RequestId"])}
        for r in records
    ]


def signed_invoke(
    fc, function: str, payload: bytes, headers: dict[str, str] | None = None
) -> requests.Response:
    """A raw invoke signed exactly as fc2 signs it, to see the status code fc2 hides."""
    client = fc.client()
    path = f"/2016-08-15/services/{fc.service}/functions/{function}/invocations"
    signed = client._build_common_headers("POST", path, headers or {})
    return requests.post(fc.endpoint + path, data=payload, headers=signed, timeout=30)


# --- both functions through fc2, sync and async, against a direct handler call ---------------

MQ_BATCH = [
    {"WabaId": "4000000000000002", "Reference": "a"},
    {"WabaId": 4000000000000003},
    {"WabaId": "12ab", "Reference": "invalid"},
]


def payload_for(function: str) -> bytes:
    if function == "bind-waba-mq":
        return json.dumps(MQ_BATCH).encode()
    return signed_event({"WabaId": "4000000000000004", "Reference": "signup"})


def answer_outcomes(function: str, answer: Any) -> list[dict[str, Any]]:
    """The outcomes a handler's return value carries (the MQ summary, or the HTTP body)."""
    if function == "bind-waba-mq":
        return answer["Outcomes"]
    return [json.loads(answer["body"])]


def logged(out: str) -> list[dict[str, Any]]:
    """The log sink's outcome lines, in WabaId order (a batch binds concurrently)."""
    return sorted(outcome_lines(out), key=lambda r: str(r["WabaId"]))


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("function", ["bind-waba-mq", "bind-waba-http"])
def test_fc2_invoke_gives_the_outcomes_of_a_direct_handler_call(local_fc, capsys, function, mode):
    payload = payload_for(function)
    spec = local_fc.emulator.project.functions[function]
    handler = index.mq_handler if function == "bind-waba-mq" else index.http_handler
    direct_answer = handler(payload, local_fc.emulator.context(spec, "direct-call"))
    if isinstance(direct_answer, str):
        direct_answer = json.loads(direct_answer)
    direct_logged = logged(capsys.readouterr().out)
    cams_calls = local_fc.cams.count()
    assert direct_logged and cams_calls == len(direct_logged) - (function == "bind-waba-mq")
    reset_runtime()  # forget the binds, as a fresh deployment would
    local_fc.cams.reset()

    headers = {"x-fc-invocation-type": "Async"} if mode == "async" else {}
    response = local_fc.client().invoke_function(
        local_fc.service, function, payload=payload, headers=headers
    )
    request_id = response.headers["x-fc-request-id"]
    if mode == "async":
        assert response.data == b""
        assert local_fc.emulator.drain(30)
    via_fc2_logged = logged(capsys.readouterr().out)

    assert comparable(via_fc2_logged) == comparable(direct_logged)
    assert local_fc.cams.count() == cams_calls
    if mode == "sync":
        answer = json.loads(response.data)
        if function == "bind-waba-mq":
            direct_summary = {k: v for k, v in direct_answer.items() if k != "Outcomes"}
            assert {k: v for k, v in answer.items() if k != "Outcomes"} == direct_summary
        else:
            assert answer["statusCode"] == direct_answer["statusCode"] == 200
        by_id = sorted(answer_outcomes(function, answer), key=lambda r: str(r["WabaId"]))
        assert comparable(by_id) == comparable(via_fc2_logged)
    if function == "bind-waba-mq":
        assert all(r["EventId"].startswith(request_id) for r in via_fc2_logged)


def test_fc2_async_invoke_answers_202_at_once(local_fc):
    raw = signed_invoke(
        local_fc,
        "bind-waba-mq",
        json.dumps({"WabaId": "4000000000000011"}).encode(),
        {"x-fc-invocation-type": "Async"},
    )
    assert raw.status_code == 202 and raw.headers["x-fc-request-id"] and raw.content == b""
    assert local_fc.emulator.drain(30)
    assert local_fc.cams.count(waba_id="4000000000000011") == 1


@pytest.mark.parametrize(("succeed_on", "tries"), [(2, 2), (99, 3)])
def test_a_failing_async_invocation_is_retried_as_s_yaml_says(
    probe_fc, tmp_path, succeed_on, tries
):
    record = tmp_path / "tries.txt"
    response = probe_fc.client().invoke_function(
        probe_fc.service,
        "probe-flaky",
        payload=json.dumps({"path": str(record), "succeed_on": succeed_on}).encode(),
        headers={"x-fc-invocation-type": "Async"},
    )
    assert probe_fc.emulator.drain(30)
    seen = record.read_text().splitlines()
    assert seen == [response.headers["x-fc-request-id"]] * tries


def test_a_handler_past_its_timeout_gets_fc_s_timeout_error(probe_fc):
    error = fc_error(
        lambda: probe_fc.client().invoke_function(
            probe_fc.service, "probe-slow", payload=b'{"sleep": 2}'
        )
    )
    assert error.status_code == 200
    assert json.loads(error.message)["errorMessage"] == "Function timed out after 1 seconds"


def test_a_qualifier_is_accepted_with_the_project_name(local_fc):
    response = local_fc.client().invoke_function(
        local_fc.service,
        "bind-waba-mq",
        payload=b'{"WabaId":"4000000000000020"}',
        qualifier="LATEST",
    )
    assert json.loads(response.data)["Bound"] == 1


# --- the HTTP function -------------------------------------------------------------------------


def test_http_function_answers_a_signed_webhook_post(local_fc):
    body = json.dumps({"WabaId": "4000000000000030", "Reference": "signup"})
    response = requests.post(
        local_fc.endpoint + "/",
        data=body,
        headers={"Content-Type": "application/json", **signed_headers(body)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    record = response.json()
    assert (record["Status"], record["Source"], record["Reference"]) == ("bound", "http", "signup")
    assert response.headers["x-fc-request-id"]


def test_http_function_refuses_an_unsigned_post(local_fc):
    response = requests.post(
        local_fc.endpoint + "/",
        json={"WabaId": "4000000000000031"},
        timeout=30,
    )
    assert response.status_code == 401 and "Traceback" not in response.text
    assert local_fc.cams.count(waba_id="4000000000000031") == 0


# --- FC's refusals -----------------------------------------------------------------------------


def fc_error(call) -> fc2.fc_exceptions.FcError:
    with pytest.raises(fc2.fc_exceptions.FcError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("key_id", "key_secret", "status", "code"),
    [
        (LOCAL_FC_KEY_ID, "not-the-secret", 403, "SignatureNotMatch"),
        (LOCAL_FC_KEY_ID, LOCAL_FC_KEY_SECRET + "x", 403, "SignatureNotMatch"),
        ("SomeoneElsesKeyId", LOCAL_FC_KEY_SECRET, 403, "InvalidAccessKeyID"),
    ],
)
def test_a_wrong_access_key_is_refused_as_fc_refuses_it(local_fc, key_id, key_secret, status, code):
    client = local_fc.client(key_id, key_secret)
    error = fc_error(
        lambda: client.invoke_function(
            local_fc.service, "bind-waba-mq", payload=b'{"WabaId":"4000000000000040"}'
        )
    )
    assert (error.status_code, error.err_code) == (status, code)
    assert error.request_id and error.request_id != "unknown"
    assert local_fc.cams.count(waba_id="4000000000000040") == 0


@pytest.mark.parametrize(
    ("date", "status", "code"),
    [
        (None, 400, "MissingRequiredHeader"),
        ("not a date", 403, "AccessDenied"),
        (email.utils.formatdate(time.time() - 3600, usegmt=True), 403, "AccessDenied"),
        (email.utils.formatdate(time.time() + 3600, usegmt=True), 403, "AccessDenied"),
    ],
    ids=["missing", "garbage", "an-hour-old", "an-hour-ahead"],
)
def test_a_missing_or_skewed_date_is_refused(local_fc, date, status, code):
    client = local_fc.client()
    path = f"/2016-08-15/services/{local_fc.service}/functions/bind-waba-mq/invocations"
    headers = client._build_common_headers("POST", path, {})
    if date is None:
        del headers["date"]
    else:
        headers["date"] = date
        headers["authorization"] = client.auth.sign_request("POST", path, headers)
    response = requests.post(local_fc.endpoint + path, data=b"{}", headers=headers, timeout=30)
    assert response.status_code == status
    assert response.json()["ErrorCode"] == code


@pytest.mark.parametrize(
    ("service", "function", "code"),
    [
        ("wababind", "no-such-function", "FunctionNotFound"),
        ("other-service", "bind-waba-mq", "ServiceNotFound"),
    ],
)
def test_unknown_names_are_404(local_fc, service, function, code):
    error = fc_error(lambda: local_fc.client().invoke_function(service, function, payload=b"{}"))
    assert (error.status_code, error.err_code) == (404, code)


def test_an_oversized_async_payload_is_refused(local_fc):
    response = signed_invoke(
        local_fc, "bind-waba-mq", b"x" * (128 * 1024 + 1), {"x-fc-invocation-type": "Async"}
    )
    assert response.status_code == 400 and response.json()["ErrorCode"] == "EntityTooLarge"


# --- handler errors and the context ------------------------------------------------------------


def test_an_unhandled_exception_is_reported_as_fc_does_with_the_handler_s_stack(probe_fc):
    """FC's body: message, type and `stackTrace` from the handler's frame down, none of its own."""
    raw = signed_invoke(probe_fc, "probe", b'{"raise": true}')
    assert raw.status_code == 200
    assert raw.headers["x-fc-error-type"] == "UnhandledInvocationError"
    body = raw.json()
    assert (body["errorMessage"], body["errorType"]) == (
        "the probe was asked to fail",
        "ValueError",
    )
    [(file, line, function, code)] = body["stackTrace"]
    assert file.endswith('probe_index.py"') and line.startswith("line ")
    assert (function, code) == ("in handler", 'raise ValueError("the probe was asked to fail")')
    assert "Traceback" not in raw.text and "fc_emulator" not in raw.text

    error = fc_error(
        lambda: probe_fc.client().invoke_function(probe_fc.service, "probe", payload=b'{"raise":1}')
    )
    assert json.loads(error.message)["errorType"] == "ValueError"


def test_the_mq_handler_raising_for_redelivery_reaches_fc2_as_a_function_error(start_local_fc):
    from wababind_local.cams_simulator import Fault

    fc = start_local_fc(timeout_s=2)
    fc.cams.set_fault("4000000000000050", Fault.error("ServiceUnavailable", 503, "try later"))
    error = fc_error(
        lambda: fc.client().invoke_function(
            fc.service, "bind-waba-mq", payload=b'{"WabaId":"4000000000000050"}'
        )
    )
    body = json.loads(error.message)
    assert body["errorType"] == "RetryableBatchError"
    assert "Traceback" not in error.message
    # raised again by index.mq_handler without its traceback: that one line, none of the package
    [(file, _, function, code)] = body["stackTrace"]
    assert file.endswith('index.py"') and function == "in mq_handler" and code.startswith("raise")


def test_the_handler_gets_fc_context_fields(probe_fc):
    response = probe_fc.client().invoke_function(probe_fc.service, "probe", payload=b"{}")
    seen = json.loads(response.data)
    from wababind_local.cams_simulator import DEFAULT_STS_KEY

    assert seen["request_id"] == response.headers["x-fc-request-id"]
    assert seen["key_id"] == DEFAULT_STS_KEY.access_key_id
    assert seen["has_secret"] and seen["has_token"]
    assert seen["function"] == ["probe", "probe_index.handler", 256, 42]
    assert seen["log"] == ["probe-logs", "probe-store"]
    assert seen["region"] == "cn-hangzhou"
    assert seen["env"] == "from-vars"


PROBE_312 = """
import json, os

def handler(event, context):
    return json.dumps({
        "has": [hasattr(context, name) for name in ("credentials", "service", "logger")],
        "log": [context.log_project, context.log_store],
        "function": [context.function.name, context.function.qualifier],
        "key_id": os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID"),
    })
"""


def test_a_python3_12_function_gets_that_runtime_s_context(start_local_fc, tmp_path):
    """FC docs, "Context", Python: python3.12 has no credentials and no service; log_project
    and log_store at the top, qualifier in function; the role's key in ALIBABA_CLOUD_*."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "probe312_index.py").write_text(PROBE_312)  # a module of its own
    yaml = PROBE_YAML.replace(
        "      handler: probe_index.handler\n",
        "      handler: probe312_index.handler\n      runtime: python3.12\n",
        1,
    )
    (tmp_path / "s.yaml").write_text(yaml)
    fc = start_local_fc(tmp_path / "s.yaml")
    seen = json.loads(fc.client().invoke_function(fc.service, "probe", payload=b"{}").data)
    from wababind_local.cams_simulator import DEFAULT_STS_KEY

    assert seen["has"] == [False, False, True]
    assert seen["log"] == ["probe-logs", "probe-store"]
    assert seen["function"] == ["probe", "LATEST"]
    assert seen["key_id"] == DEFAULT_STS_KEY.access_key_id


def test_a_timeout_override_reaches_the_context(start_local_fc, probe_fc, tmp_path):
    other = start_local_fc(tmp_path / "s.yaml", timeout_s=7)
    response = other.client().invoke_function(other.service, "probe", payload=b"{}")
    assert json.loads(response.data)["function"][3] == 7


def test_the_http_trigger_event_has_fc_3_shape(probe_fc):
    response = requests.post(
        probe_fc.endpoint + "/some/path?a=1&a=2&b=",
        data=b"\xff\xfe binary",
        headers={"X-Multi": "one", "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert response.status_code == 201 and response.headers["X-Echo"] == "yes"
    event = json.loads(response.content)
    assert event["version"] == "v1" and event["rawPath"] == "/some/path"
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe binary"
    assert event["queryParameters"] == {"a": "1,2", "b": ""}
    assert event["headers"]["X-Multi"] == "one"
    context = event["requestContext"]
    assert context["http"]["method"] == "POST" and context["http"]["path"] == "/some/path"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == response.headers["x-fc-request-id"]
    assert {"accountId", "domainName", "domainPrefix", "time", "timeEpoch"} <= set(context)


def test_a_text_body_is_passed_as_text(probe_fc):
    response = requests.post(probe_fc.endpoint + "/", data="héllo".encode(), timeout=30)
    event = json.loads(response.content)
    assert (event["body"], event["isBase64Encoded"]) == ("héllo", False)


# --- s.yaml ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${env('X', 'dflt')}", {}, "dflt"),
        ("${env('X', 'dflt')}", {"X": "set"}, "set"),
        ('${env("X")}', {}, ""),
        ("${vars.a.b}", {}, "deep"),
        ("${vars.a}", {}, {"b": "deep"}),
        ("pre-${vars.a.b}-post", {}, "pre-deep-post"),
        ("acs:ram::${config('AccountID')}:role/x", {}, "acs:ram::${config('AccountID')}:role/x"),
        ("${vars.missing}", {}, "${vars.missing}"),
        (30, {}, 30),
    ],
)
def test_s_yaml_templates_resolve_env_and_vars(value, env, expected):
    assert resolve(value, {"a": {"b": "deep"}}, env) == expected


def test_the_repository_s_yaml_gives_both_functions():
    project = load_project(ROOT / "s.yaml", {})
    assert project.name == "wababind"
    http_fn, mq_fn = project.functions["bind-waba-http"], project.functions["bind-waba-mq"]
    assert (http_fn.handler, http_fn.http_trigger) == ("index.http_handler", True)
    assert (mq_fn.handler, mq_fn.http_trigger) == ("index.mq_handler", False)
    assert mq_fn.code == ROOT / "functions" / "bind_waba"
    assert mq_fn.environment["CAMS_QPS"] == "10"
    assert project.http_function is http_fn


def test_the_emulator_restores_the_environment_it_changed(start_local_fc, monkeypatch):
    monkeypatch.setenv("CAMS_REGION", "before")
    fc = start_local_fc(env={"CAMS_REGION": "during", "PROBE_" + uuid.uuid4().hex: "x"})
    import os

    assert os.environ["CAMS_REGION"] == "during"
    fc.emulator.stop()
    assert os.environ["CAMS_REGION"] == "before"
    assert not [k for k in os.environ if k.startswith("PROBE_")]


# --- `make serve` ------------------------------------------------------------------------------


def test_make_serve_serves_both_functions_until_ctrl_c(serve):
    from wababind_local.cams_simulator import DEFAULT_KEY, DEFAULT_STS_KEY
    from wababind_local.fc_emulator import LOCAL_WEBHOOK_SECRET

    port = free_port()
    server = serve("-m", "wababind_local.fc_emulator", "--port", str(port))
    banner = server.wait_for("Ctrl-C stops.")
    endpoint = f"http://127.0.0.1:{port}"
    assert f"fc2 endpoint    {endpoint}  service wababind" in banner
    client = fc2.Client(
        endpoint=endpoint, accessKeyID=LOCAL_FC_KEY_ID, accessKeySecret=LOCAL_FC_KEY_SECRET
    )
    batch = [{"WabaId": "4000000000000070"}, {"WabaId": "900000000000001"}]  # a demo fault
    answer = json.loads(
        client.invoke_function("wababind", "bind-waba-mq", payload=json.dumps(batch)).data
    )
    codes = sorted(r["Code"] for r in answer["Outcomes"])
    assert (answer["Bound"], codes) == (1, ["OK", "Ram.PermissionDeny"])
    body = json.dumps({"WabaId": "4000000000000071"})
    response = requests.post(
        endpoint + "/",
        data=body,
        headers={"Content-Type": "application/json", **signed_headers(body, LOCAL_WEBHOOK_SECRET)},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["Status"] == "bound"

    status, out, err = server.interrupt()
    assert status == 0 and "stopping" in out, err
    assert "Traceback" not in out + err
    for secret in (
        LOCAL_FC_KEY_SECRET,
        LOCAL_WEBHOOK_SECRET,
        DEFAULT_KEY.access_key_secret,
        DEFAULT_STS_KEY.access_key_secret,
        str(DEFAULT_STS_KEY.security_token),
    ):
        assert secret not in out + err


def test_make_serve_on_a_busy_port_says_so(serve):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve("-m", "wababind_local.fc_emulator", "--port", str(port))
        assert server.proc.wait(30) == 1
        err = server.stderr()
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_the_emulator_sets_tcp_nodelay_on_its_connections():
    from wababind_local.fc_emulator import _RequestHandler

    assert _RequestHandler.disable_nagle_algorithm is True


def test_the_context_never_shows_the_secret_or_token():
    from wababind_local.fc_context import Credentials, FCContext, FunctionMeta

    context = FCContext(
        function=FunctionMeta("f", "index.h", 128, 3),
        credentials=Credentials("STS.id", "the-secret-value", "the-token-value"),
    )
    assert "the-secret-value" not in repr(context) and "the-token-value" not in repr(context)
