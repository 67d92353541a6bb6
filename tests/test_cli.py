"""The `wababind` command line: bulk with resume, bind, sign, events, and the README examples."""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.fixtures.fc import free_port, local_env
from tests.fixtures.handlers import WEBHOOK_SECRET
from wababind_local.cli import main, read_rows
from wababind_local.fc_emulator import LOCAL_FC_KEY_ID, ROOT

BULK_ROWS = 500


def remote(fc) -> list[str]:
    """The emulator's endpoint; on loopback the CLI signs with the local dev key by itself."""
    return ["--endpoint", fc.endpoint]


def wababind(*args: str) -> list[str]:
    return [sys.executable, "-m", "wababind_local.cli", *args]


def outcome_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append({"Row": None, "Broken": line})
    return records


def printed_record(out: str) -> dict[str, Any]:
    """The record `bind` printed (indented); the in-process log sink's lines come before it."""
    return json.loads(out[out.rindex('{\n  "Kind"') :])


def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# --- bulk --------------------------------------------------------------------------------------


def sending_count(stderr: str) -> int:
    return int(re.search(r"sending (\d+) to", stderr).group(1))


def start_bulk(fc, command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, env=fc.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("interruption", ["--stop-after", "ctrl-c", "kill-9"])
def test_bulk_interrupted_and_resumed_binds_each_row_exactly_once(
    start_local_fc, tmp_path, interruption
):
    fc = start_local_fc(env={"CAMS_QPS": "200"})
    fc.cams.set_qps(None)  # the function's own limiter paces the calls
    rows = tmp_path / "wabas.csv"
    rows.write_text(
        "WabaId,Reference\n"
        + "".join(f"{5000000000000000 + i},row-{i}\n" for i in range(BULK_ROWS))
    )
    out = tmp_path / "outcomes.jsonl"
    command = wababind("bulk", str(rows), "--out", str(out), "--batch-size", "20")

    if interruption == "--stop-after":
        first = subprocess.run(
            [*command, "--stop-after", "200"],
            env=fc.cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        err = first.stderr
        assert len(outcome_lines(out)) == 200
    else:
        running = start_bulk(fc, command)
        try:
            assert wait_for(lambda: len(outcome_lines(out)) >= 100, 60), "no progress"
            running.send_signal(signal.SIGINT if interruption == "ctrl-c" else signal.SIGKILL)
            _, err = running.communicate(timeout=60)
        finally:
            running.kill()
        first = running
    if interruption == "kill-9":
        assert first.returncode == -signal.SIGKILL
    else:
        assert first.returncode == 130, err
        assert "run the same command again to resume" in err
    assert "Traceback" not in err
    if interruption == "ctrl-c":  # the batches under way were waited for and written
        assert "stopping: waiting for the" in err
        assert {r["Status"] for r in outcome_lines(out)} == {"bound"}
    done_before = len([r for r in outcome_lines(out) if r.get("Status")])
    assert 100 <= done_before < BULK_ROWS

    second = subprocess.run(
        command, env=fc.cli_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert second.returncode == 0, second.stderr
    assert sending_count(second.stderr) == BULK_ROWS - done_before  # only the rest was sent
    assert "rows/s" in second.stderr and "ETA" in second.stderr  # the progress lines
    assert f"{BULK_ROWS} rows: " in second.stdout

    records = outcome_lines(out)
    assert len(records) == BULK_ROWS
    assert {r["Row"] for r in records} == {row.key for row in read_rows(rows)}
    assert {r["Status"] for r in records} <= {"bound", "duplicate"}
    assert sorted(r["Reference"] for r in records) == sorted(f"row-{i}" for i in range(BULK_ROWS))
    assert fc.cams.count() == BULK_ROWS  # no WABA was bound twice
    assert len(fc.cams.bound()) == BULK_ROWS


def test_bulk_writes_an_outcome_for_bad_rows_and_exits_1(local_fc, tmp_path, capsys):
    rows = tmp_path / "wabas.jsonl"
    rows.write_text(
        '{"WabaId": "5100000000000001", "Reference": "good"}\n'
        "not json\n"
        "\n"
        '{"WabaId": "12ab"}\n'
        '["an", "array"]\n'
    )
    out = tmp_path / "out.jsonl"
    code = main(["bulk", str(rows), "--out", str(out), *remote(local_fc)])
    assert code == 1
    by_row = {r["Row"]: r for r in outcome_lines(out)}
    assert by_row["1:5100000000000001"]["Status"] == "bound"
    assert by_row["2:"]["Code"] == "InvalidRow" and not by_row["2:"]["Retryable"]
    assert by_row["4:12ab"]["Code"] == "InvalidMessage"
    assert by_row["5:"]["Code"] == "InvalidRow"
    assert len(by_row) == 4
    assert "1 bound" in capsys.readouterr().out

    assert main(["bulk", str(rows), "--out", str(out), *remote(local_fc)]) == 1
    assert len(outcome_lines(out)) == 4  # failed for good: not sent again
    assert local_fc.cams.count(waba_id="5100000000000001") == 1


def test_a_resume_compacts_retryable_and_torn_lines_and_sends_those_rows_again(local_fc, tmp_path):
    rows = tmp_path / "wabas.csv"
    rows.write_text("WabaId\n5200000000000001\n5200000000000002\n5200000000000003\n")
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps({"Row": "2:5200000000000001", "Status": "bound"})
        + "\n"
        + json.dumps({"Row": "3:5200000000000002", "Status": "failed", "Retryable": True})
        + "\n"
        + '{"Row": "4:5200000000000003", "Sta'
    )
    assert main(["bulk", str(rows), "--out", str(out), *remote(local_fc)]) == 0
    records = outcome_lines(out)
    assert [r["Row"] for r in records] == [
        "2:5200000000000001",
        "3:5200000000000002",
        "4:5200000000000003",
    ]
    assert local_fc.cams.count(waba_id="5200000000000001") == 0
    assert local_fc.cams.count(waba_id="5200000000000002") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Reference\nx\n", "WabaId column"),
        ("WabaId\n5300000000000001\n5300000000000001\n", None),
    ],
    ids=["no-wabaid-column", "same-waba-twice-is-two-rows"],
)
def test_bulk_input_checks(local_fc, tmp_path, capsys, content, message):
    rows = tmp_path / "in.csv"
    rows.write_text(content)
    code = main(["bulk", str(rows), "--out", str(tmp_path / "o.jsonl"), *remote(local_fc)])
    if message:
        assert code == 2 and message in capsys.readouterr().err
    else:
        assert code == 0
        statuses = sorted(r["Status"] for r in outcome_lines(tmp_path / "o.jsonl"))
        assert statuses == ["bound", "duplicate"]


def test_bulk_with_a_wrong_key_stops_with_fc_s_refusal(local_fc, tmp_path, capsys):
    rows = tmp_path / "in.csv"
    rows.write_text("WabaId\n5400000000000001\n")
    flags = ["--access-key-id", LOCAL_FC_KEY_ID, "--access-key-secret", "wrong-secret-7f3a"]
    code = main(["bulk", str(rows), "--out", str(tmp_path / "o.jsonl"), *remote(local_fc), *flags])
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert code == 2 and "SignatureNotMatch" in err
    assert "wrong-secret-7f3a" not in err and f"FC {LOCAL_FC_KEY_ID}:" not in err
    assert local_fc.cams.count() == 0


def test_bulk_progress_bar_shows_rate_and_eta_on_a_terminal():
    from rich.console import Console

    from wababind_local.cli import RichProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    progress = RichProgress(10, console)
    for _ in range(10):
        progress.advance()
    progress.close()
    shown = console.file.getvalue()
    assert "10/10" in shown and "rows/s" in shown and "ETA" in shown


def test_a_cloud_endpoint_needs_a_key(tmp_path, monkeypatch, capsys):
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    rows = tmp_path / "in.csv"
    rows.write_text("WabaId\n5400000000000002\n")
    code = main(
        [
            "bulk",
            str(rows),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--endpoint",
            "https://1234567890123456.ap-southeast-1.fc.aliyuncs.com",
        ]
    )
    assert code == 2 and "no AccessKey" in capsys.readouterr().err


# --- bind --------------------------------------------------------------------------------------


def test_bind_through_the_function(local_fc, capsys):
    assert main(["bind", "5500000000000001", "--reference", "r1", *remote(local_fc)]) == 0
    record = printed_record(capsys.readouterr().out)
    assert (record["Status"], record["Reference"], record["Source"]) == ("bound", "r1", "direct")


def test_bind_local_calls_the_handler_in_process(wababind_env, capsys):
    assert main(["bind", "5500000000000002", "--local"]) == 0
    record = printed_record(capsys.readouterr().out)
    assert record["Status"] == "bound" and record["WabaId"] == "5500000000000002"
    assert wababind_env.count(waba_id="5500000000000002") == 1


def test_bind_of_an_invalid_id_exits_1(local_fc, capsys):
    assert main(["bind", "12ab", *remote(local_fc)]) == 1
    assert printed_record(capsys.readouterr().out)["Code"] == "InvalidMessage"


# --- sign and events ---------------------------------------------------------------------------


def test_sign_prints_headers_that_standard_webhooks_verifies(capsys):
    body = '{"WabaId":"5600000000000001"}'
    assert main(["sign", "--secret", WEBHOOK_SECRET, "--id", "msg_fixed", body]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    headers = dict(line.split(": ", 1) for line in lines)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_fixed"
    assert Webhook(WEBHOOK_SECRET).verify(body, headers) == json.loads(body)


def test_sign_reads_a_file_and_prints_a_curl_command(tmp_path, capsys):
    body_file = tmp_path / "body.json"
    body_file.write_text('{"WabaId": "5600000000000002"}')
    assert main(["sign", "--secret", WEBHOOK_SECRET, "--curl", "http://x/", f"@{body_file}"]) == 0
    argv = shlex.split(capsys.readouterr().out)
    assert argv[:5] == ["curl", "-sS", "-X", "POST", "http://x/"]
    headers = dict(argv[i + 1].split(": ", 1) for i, a in enumerate(argv) if a == "-H")
    body = argv[argv.index("--data-raw") + 1]
    assert Webhook(WEBHOOK_SECRET).verify(body, headers)


@pytest.mark.parametrize("secret", ["not-a-whsec", "whsec_"])
def test_sign_refuses_a_bad_secret(capsys, secret):
    assert main(["sign", "--secret", secret, "{}"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_events_lists_every_sample_and_prints_one(capsys):
    assert main(["events", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == sorted(p.name for p in (ROOT / "events").glob("*.json"))
    assert main(["events", "direct-single"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# direct-single.json\n")
    json.loads(out.split("\n", 1)[1])
    assert main(["events"]) == 0
    assert capsys.readouterr().out.count("\n# ") == len(listed) - 1


def test_events_unknown_name_exits_2(capsys):
    assert main(["events", "no-such-event"]) == 2


# --- the README examples -----------------------------------------------------------------------

FIRST, LAST = "## Local Function Compute (`make serve`)", "## The `wababind` command line"


def readme_sources() -> list[Path]:
    return [ROOT / "README.md"]


def our_sections(path: Path) -> str:
    text = path.read_text()
    start = text.index(FIRST)
    after_last = text.index(LAST) + len(LAST)
    end = text.find("\n## ", after_last)
    return text[start : end if end >= 0 else len(text)]


def code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.S | re.M)


def wababind_shim(tmp_path: Path) -> Path:
    """A `wababind` executable, as `pip install -e .` makes one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "wababind"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m wababind_local.cli "$@"\n')
    shim.chmod(0o755)
    return bin_dir


def run_block(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


@pytest.mark.parametrize("source", readme_sources(), ids=lambda p: p.name)
def test_the_readme_examples_run(local_fc, tmp_path, source):
    env = local_fc.cli_env()
    env["PATH"] = f"{wababind_shim(tmp_path)}:{env['PATH']}"
    work = tmp_path / "work"
    work.mkdir()
    blocks = code_blocks(our_sections(source), "bash")
    assert len(blocks) >= 5
    out = "".join(run_block(block, work, env).stdout for block in blocks)

    assert "refused: 403 SignatureNotMatch" in out
    lines = (work / "outcomes.jsonl").read_text().splitlines()
    assert len(lines) == 3
    statuses = {json.loads(line)["WabaId"]: json.loads(line)["Status"] for line in lines}
    assert statuses.pop("12ab") == "failed"
    assert set(statuses.values()) <= {"bound", "duplicate"} and len(statuses) == 2
    assert wait_for(lambda: local_fc.cams.count(waba_id="1234567890123603") == 1, 10)
    for waba_id in ("1234567890123601", "1234567890123604", "1234567890123605", "1234567890123606"):
        assert local_fc.cams.count(waba_id=waba_id) == 1


@pytest.mark.parametrize("source", readme_sources(), ids=lambda p: p.name)
def test_the_readme_simulate_example_runs(serve, tmp_path, source):
    sh_blocks = code_blocks(our_sections(source), "sh")
    command = next(b for b in sh_blocks if "wababind simulate" in b).strip()
    local_binds = next(b for b in sh_blocks if "--local" in b)
    port = str(free_port())
    argv = shlex.split(command.replace("--port 9100", f"--port {port}"))
    assert argv[0] == "wababind"
    simulator = serve("-m", "wababind_local.cli", *argv[1:])
    banner = simulator.wait_for("Ctrl-C stops.")
    assert f"export CAMS_ENDPOINT=http://127.0.0.1:{port}" in banner
    assert "1234567890123699: CAMS answers ServiceUnavailable (HTTP 503)" in banner

    env = local_env()
    env["PATH"] = f"{wababind_shim(tmp_path)}:{env['PATH']}"
    result = run_block(local_binds.replace("9100", port), tmp_path, env)
    printed = [json.loads(p) for p in re.findall(r"^\{\n.*?^\}", result.stdout, re.S | re.M)]
    assert [(r["WabaId"], r["Status"], r["Code"], r["Attempts"]) for r in printed] == [
        ("1234567890123699", "bound", "OK", 3),
        ("1234567890123698", "failed", "Ram.PermissionDeny", 1),
    ]
    assert "exit 1" in result.stdout

    status, out, err = simulator.interrupt()
    assert status == 0 and "stopped after 4 ChatappBindWaba calls" in out, err
    assert "Traceback" not in out + err
    from wababind_local.cams_simulator import DEFAULT_KEY

    assert DEFAULT_KEY.access_key_secret not in out + err


@pytest.mark.parametrize(
    ("fault", "problem"),
    [("Nope", "unknown fault"), ("slow:abc", "seconds"), ("drop*x", "*N")],
)
def test_simulate_refuses_a_fault_it_does_not_know(capsys, fault, problem):
    assert main(["simulate", "--port", "0", "--fault", f"1234567890123699={fault}"]) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err
