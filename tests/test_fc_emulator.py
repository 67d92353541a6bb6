"""The local FC emulator, driven by the real `fc2` client over HTTP, the CAMS simulator behind."""

from __future__ import annotations

import base64
import email.utils
import json
import time
import uuid
from pathlib import Path
from typing import Any

import fc2
import pytest
import requests

import index
from tests.fixtures.handlers import signed_event, signed_headers
from wababind.runtime import reset_runtime
from wababind_local.fc_emulator import (
    LOCAL_FC_KEY_ID,
    LOCAL_FC_KEY_SECRET,
    ROOT,
    load_project,
    resolve,
)

# Fields that differ between two runs of the same bind.
VOLATILE = ("StartedAt", "FinishedAt", "DurationMs", "EventId", "RequestId")

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
        "function": [context.function.name, context.function.handler,
                     context.function.memory, context.function.timeout],
        "log": [context.service.log_project, context.service.log_store],
        "region": context.region,
        "env": os.environ.get("PROBE_SETTING"),
    })

def http(event, context):
    return {"statusCode": 201, "headers": {"X-Echo": "yes"},
            "body": base64_of(event), "isBase64Encoded": True}

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


# --- the MQ function through fc2 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"WabaId": "4000000000000001", "Reference": "one"},
        [
            {"WabaId": "4000000000000002", "Reference": "a"},
            {"WabaId": 4000000000000003},
            {"WabaId": "12ab", "Reference": "invalid"},
        ],
    ],
    ids=["one-request", "array"],
)
def test_fc2_sync_invoke_gives_the_outcomes_of_a_direct_handler_call(local_fc, payload):
    body = json.dumps(payload).encode()
    spec = local_fc.emulator.project.functions["bind-waba-mq"]
    direct = json.loads(index.mq_handler(body, local_fc.emulator.context(spec, "direct-call")))
    reset_runtime()  # forget the binds, as a fresh deployment would

    response = local_fc.client().invoke_function(local_fc.service, "bind-waba-mq", payload=body)
    via_fc2 = json.loads(response.data)

    assert comparable(via_fc2["Outcomes"]) == comparable(direct["Outcomes"])
    assert {k: v for k, v in via_fc2.items() if k != "Outcomes"} == {
        k: v for k, v in direct.items() if k != "Outcomes"
    }
    request_id = response.headers["x-fc-request-id"]
    assert all(r["EventId"].startswith(request_id) for r in via_fc2["Outcomes"])


def test_fc2_async_invoke_answers_202_and_binds_in_the_background(local_fc):
    waba_id = "4000000000000010"
    response = local_fc.client().invoke_function(
        local_fc.service,
        "bind-waba-mq",
        payload=json.dumps({"WabaId": waba_id}).encode(),
        headers={"x-fc-invocation-type": "Async"},
    )
    assert response.data == b"" and response.headers["x-fc-request-id"]
    raw = signed_invoke(
        local_fc,
        "bind-waba-mq",
        json.dumps({"WabaId": "4000000000000011"}).encode(),
        {"x-fc-invocation-type": "Async"},
    )
    assert raw.status_code == 202 and raw.headers["x-fc-request-id"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and local_fc.cams.count() < 2:
        time.sleep(0.02)
    assert local_fc.cams.count(waba_id=waba_id) == 1
    assert local_fc.cams.count(waba_id="4000000000000011") == 1


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


def test_fc2_invokes_the_http_function_with_an_http_trigger_event(local_fc):
    event = signed_event({"WabaId": "4000000000000032"})
    response = local_fc.client().invoke_function(local_fc.service, "bind-waba-http", payload=event)
    answer = json.loads(response.data)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["Status"] == "bound"


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


def test_an_unhandled_exception_is_reported_as_fc_does_without_a_traceback(probe_fc):
    raw = signed_invoke(probe_fc, "probe", b'{"raise": true}')
    assert raw.status_code == 200
    assert raw.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert raw.json() == {"errorMessage": "the probe was asked to fail", "errorType": "ValueError"}
    assert "Traceback" not in raw.text and "probe_index.py" not in raw.text

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
    assert json.loads(error.message)["errorType"] == "RetryableBatchError"
    assert "Traceback" not in error.message


def test_the_handler_gets_fc_context_fields(probe_fc):
    response = probe_fc.client().invoke_function(probe_fc.service, "probe", payload=b"{}")
    seen = json.loads(response.data)
    from wababind_local.cams_simulator import DEFAULT_KEY

    assert seen["request_id"] == response.headers["x-fc-request-id"]
    assert seen["key_id"] == DEFAULT_KEY.access_key_id and seen["has_secret"]
    assert seen["function"] == ["probe", "probe_index.handler", 256, 42]
    assert seen["log"] == ["probe-logs", "probe-store"]
    assert seen["region"] == "cn-hangzhou"
    assert seen["env"] == "from-vars"


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
