"""No exception leaves a handler as the runtime's error: anything unexpected is a JSON 500
`InternalError` carrying the FC request id (HTTP) or an `InternalError` raised without the
package's frames (MQ, so the trigger redelivers); it is logged once, as its type and the line
that raised it, with the request id and the WabaId, never a trace or its message; and the
sender's retry then succeeds (no claim left held, nothing remembered as failed).

The exceptions come through real code paths: the function's stdout closed under the log sink
(a broken pipe), and a context whose AccessKey secret is no string, on which the CAMS SDK's
signer fails.
"""

from __future__ import annotations

import errno
import io
import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import index
from tests.fixtures.handlers import FakeCredentials, http_event, signed_headers
from wababind.errors import InternalError

GOOD = None  # the simulator's key, from the environment (wababind_env)
UNSIGNABLE = FakeCredentials("STS.unsignable", 12345, "token")  # type: ignore[arg-type]


class ClosedPipe(io.TextIOBase):
    """stdout whose reader went away: every write is EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def app_log(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if '"Kind":"AppLog"' in line]


def errors(text: str) -> list[dict[str, Any]]:
    return [line for line in app_log(text) if line["Level"] == "ERROR"]


def webhook(waba_id: str, msg_id: str, later_s: int = 0) -> bytes:
    """A signed webhook; a sender's retry has the same id, a new timestamp and signature."""
    text = json.dumps({"WabaId": waba_id})
    when = datetime.now(timezone.utc) + timedelta(seconds=later_s)
    return http_event(text, signed_headers(text, msg_id=msg_id, when=when))


def package_frames(exc: BaseException) -> list[str]:
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return [f for f in frames if "bind_waba" in f]


def assert_internal_error(answer: dict[str, Any], request_id: str) -> None:
    assert answer["statusCode"] == 500
    assert answer["headers"]["Content-Type"] == "application/json"
    body = json.loads(answer["body"])
    assert (body["Code"], body["RequestId"], body["Errors"]) == ("InternalError", request_id, [])


def assert_logged_once(err: str, request_id: str, waba_id: str, error: str) -> None:
    [line] = errors(err)
    assert (line["FcRequestId"], line["WabaId"], line["Error"]) == (request_id, waba_id, error)
    assert line["At"].count(":") == 1  # module:line, never a trace
    assert "Traceback" not in err and 'File "' not in err


def test_http_a_failing_cams_signer_is_a_json_500_and_the_retry_binds(
    wababind_env: Any, context: Any, capsys: Any
) -> None:
    waba_id, msg_id = "7500000000000001", "msg_unsignable"
    first = context(credentials=UNSIGNABLE)
    assert_internal_error(index.http_handler(webhook(waba_id, msg_id), first), first.request_id)
    out = capsys.readouterr()
    assert_logged_once(out.err, first.request_id, waba_id, "TypeError")
    assert "12345" not in out.err + out.out
    assert wababind_env.count() == 0

    retry = index.http_handler(webhook(waba_id, msg_id, later_s=1), context())
    body = json.loads(retry["body"])
    assert (retry["statusCode"], body["Status"]) == (200, "bound")  # the claim was released
    assert wababind_env.count() == 1


def test_http_a_broken_log_pipe_is_a_json_500_and_the_retry_gets_the_bind(
    wababind_env: Any, context: Any, capsys: Any, monkeypatch: Any
) -> None:
    waba_id, msg_id = "7500000000000002", "msg_broken_pipe"
    first = context()
    with monkeypatch.context() as broken:
        broken.setattr(sys, "stdout", ClosedPipe())
        answer = index.http_handler(webhook(waba_id, msg_id), first)
    assert_internal_error(answer, first.request_id)
    assert_logged_once(capsys.readouterr().err, first.request_id, waba_id, "BrokenPipeError")

    retry = index.http_handler(webhook(waba_id, msg_id, later_s=1), context())
    body = json.loads(retry["body"])
    assert retry["statusCode"] == 200 and body["CustSpaceId"]
    assert wababind_env.count() == 1  # bound once; the retry is answered from the record


BATCH = json.dumps([{"WabaId": "7600000000000001"}, {"WabaId": "7600000000000002"}]).encode()


def mq_internal_error(context: Any, capsys: Any) -> tuple[InternalError, str]:
    with pytest.raises(InternalError) as raised:
        index.mq_handler(BATCH, context)
    exc = raised.value
    assert context.request_id in str(exc)
    assert package_frames(exc) == [index.__file__]  # FC's stackTrace: one index.py line
    assert exc.__cause__ is None and exc.__suppress_context__
    return exc, capsys.readouterr().err


def test_mq_a_failing_cams_signer_raises_a_clean_error_and_the_redelivery_binds(
    wababind_env: Any, context: Any, capsys: Any
) -> None:
    first = context(credentials=UNSIGNABLE)
    exc, err = mq_internal_error(first, capsys)
    [line] = errors(err)  # both messages failed; the batch is logged once
    assert (line["FcRequestId"], line["Error"]) == (first.request_id, "TypeError")
    assert line["WabaId"] in ("7600000000000001", "7600000000000002")
    assert "12345" not in str(exc) + err

    summary = json.loads(index.mq_handler(BATCH, context()))  # the trigger redelivers
    assert (summary["Bound"], summary["Failed"]) == (2, 0)  # no claim held, nothing "failed"
    assert wababind_env.count() == 2


def test_mq_a_broken_log_pipe_raises_a_clean_error_and_the_redelivery_is_duplicate(
    wababind_env: Any, context: Any, capsys: Any, monkeypatch: Any
) -> None:
    first = context()
    with monkeypatch.context() as broken:
        broken.setattr(sys, "stdout", ClosedPipe())
        _, err = mq_internal_error(first, capsys)
    [line] = errors(err)
    assert (line["FcRequestId"], line["Error"]) == (first.request_id, "BrokenPipeError")

    summary = json.loads(index.mq_handler(BATCH, context()))
    assert (summary["Duplicate"], summary["Failed"]) == (2, 0)
    assert wababind_env.count() == 2


def test_the_initializer_never_raises_and_the_first_request_still_binds(
    wababind_env: Any, context: Any, capsys: Any
) -> None:
    """A context FC would never hand over (an AccessKey id that is a list) breaks the CAMS
    client's preparation: logged once, and the instance serves."""
    broken = context(credentials=FakeCredentials(["STS.x"], "s", "t"))  # type: ignore[arg-type]
    index.initialize(broken)
    [line] = errors(capsys.readouterr().err)
    assert (line["Message"], line["FcRequestId"]) == (
        "unexpected error in the initializer",
        broken.request_id,
    )
    answer = index.http_handler(webhook("7500000000000003", "msg_after_init"), context())
    assert answer["statusCode"] == 200
    assert wababind_env.count() == 1


def test_a_package_without_the_sls_sdk_is_a_configuration_error(
    wababind_env: Any, context: Any, capsys: Any, monkeypatch: Any
) -> None:
    """OUTCOME_SINKS names sls but the package was built without its SDK: the variable is
    named, as for any other broken setting."""
    import wababind.sinks.sls

    monkeypatch.setattr(wababind.sinks.sls, "_client_class", None)
    monkeypatch.setitem(sys.modules, "aliyun.log", None)  # import aliyun.log fails
    for name, value in {
        "OUTCOME_SINKS": "log,sls",
        "SLS_ENDPOINT": "ap-southeast-1.log.aliyuncs.com",
        "SLS_PROJECT": "wababind-logs",
        "SLS_LOGSTORE": "outcomes",
    }.items():
        monkeypatch.setenv(name, value)
    index.initialize(context())
    answer = index.http_handler(webhook("7500000000000004", "msg_no_sdk"), context())
    body = json.loads(answer["body"])
    assert (answer["statusCode"], body["Code"]) == (500, "ConfigurationError")
    assert "OUTCOME_SINKS" in body["Message"]
    [line] = errors(capsys.readouterr().err)
    assert "OUTCOME_SINKS" in line["Reason"]
