"""`wababind report`: what it counts in mixed JSON Lines, its `--json`, its plot, the README."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.fc import local_env
from tests.test_cli import code_blocks, run_block, wababind_shim
from wababind.sinks.log import UNDELIVERED_KIND
from wababind_local.cli import main
from wababind_local.cli.report import PLOT_DPI, PLOT_SIZE_IN, STATUS_COLOURS

README = Path(__file__).resolve().parents[1] / "README.md"
KEYS = [
    "Total", "ByStatus", "ByCode", "ByLane", "Retryable", "Ambiguous", "AfterBind", "DurationMs",
    "QuotaWaitMs", "BindsPerSecond", "Undelivered", "Skipped",
]  # fmt: skip
PNG_SIZE = (int(PLOT_SIZE_IN[0] * PLOT_DPI), int(PLOT_SIZE_IN[1] * PLOT_DPI))


def outcome(status: str, code: str, lane: str | None, duration_ms: float, wait_ms: float | None,
            started: str, finished: str, retryable: bool = False) -> dict[str, Any]:  # fmt: skip
    record: dict[str, Any] = {
        "Kind": "WabaBindOutcome", "EventId": "e", "Source": "direct", "WabaId": "1234567890123",
        "Reference": None, "Status": status, "CustSpaceId": None, "Code": code, "Message": "",
        "RequestId": None, "AccessDeniedDetail": None, "Retryable": retryable, "Attempts": 1,
        "StartedAt": f"2026-11-30T10:00:{started}Z", "FinishedAt": f"2026-11-30T10:00:{finished}Z",
        "DurationMs": duration_ms,
    }  # fmt: skip
    if wait_ms is not None:
        record["QuotaWaitMs"] = wait_ms
    if lane is not None:
        record["Lane"] = lane
    return record


def line(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def undelivered(sink: str) -> str:
    """As wababind.sinks.log.log_undelivered writes it: the outcome inside, with why."""
    inner = outcome("bound", "OK", "bulk", 100, 0, "00.000", "00.100")
    return line({"Kind": UNDELIVERED_KIND, "Sink": sink, "Reason": "HTTP 500", "Outcome": inner})


OUTCOMES = [
    line(outcome("bound", "OK", "bulk", 100, 0, "00.000", "00.100")),
    line(outcome("bound", "OK", "bulk", 200, 50, "00.500", "00.700")),
    line(outcome("duplicate", "OK", "interactive", 5, 0, "01.000", "01.005")),
    line({**outcome("failed", "ServiceUnavailable", "bulk", 1000, 100, "01.000", "02.000", True),
          "Ambiguous": True}),
    line(outcome("failed", "Ram.PermissionDeny", "interactive", 300, 150, "02.000", "02.300")),
    # a `bulk --out` line: the row key first
    line({"Row": "2:12345", **outcome("bound", "OK", "bulk", 400, 200, "03.000", "04.000")}),
    # an FC log export: the line the function wrote is the field `message`
    line({"__time__": 1796032804, "functionName": "bind-waba-http",
          "message": line(outcome("bound", "OK", "interactive", 600, 250, "04.500", "05.000"))}),
    # a row bulk refused itself: no Lane, no QuotaWaitMs
    line(outcome("failed", "InvalidRow", None, 0, None, "00.000", "00.000")),
    # a log line with a text prefix
    "2026-11-30T10:00:06Z c0ffee [INFO] "
    + line(outcome("bound", "OK", "bulk", 700, 300, "05.000", "06.000")),
]  # fmt: skip
UNDELIVERED = [undelivered("callback"), undelivered("sls"), undelivered("callback")]
APP_LOGS = [
    line({"Level": "WARNING", "Message": "CAMS throttled", "Code": "System.LimitControl"}),
    line({"Level": "INFO", "Message": "batch of 3"}),
    "FC Invoke Start RequestId: 1-abc",
]
BLANK = ["", "   "]
BROKEN = [
    '{"Kind":"WabaBindOutcome","Status":"bou',
    "[1, 2, 3]",
    line({"Kind": "SomethingElse", "Status": "bound"}),
    line({"message": "not a record"}),
]
EXPECTED = {
    "Total": 9,
    "ByStatus": {"bound": 5, "failed": 3, "duplicate": 1},
    "ByCode": {"OK": 6, "ServiceUnavailable": 1, "Ram.PermissionDeny": 1, "InvalidRow": 1},
    "ByLane": {"bulk": 5, "interactive": 3, "unknown": 1},
    "Retryable": 1,
    "Ambiguous": 1,  # the ServiceUnavailable one: an earlier call of it went unanswered
    "AfterBind": {},  # AFTER_BIND empty: no steps ran
    # 0 5 100 200 300 400 600 700 1000: rank 4 → 300; rank 7.6 → 700 + 0.6 x 300
    "DurationMs": {"p50": 300.0, "p95": 880.0, "max": 1000.0},
    # 0 0 50 100 150 200 250 300: rank 3.5 → 125; rank 6.65 → 250 + 0.65 x 50
    "QuotaWaitMs": {"p50": 125.0, "p95": 282.5},
    "BindsPerSecond": 0.833,  # 5 bound / (10:00:06.000 - 10:00:00.000)
    "Undelivered": {"callback": 2, "sls": 1},
    "Skipped": 9,  # 3 app logs + 2 blank + 4 broken
}


def mixed_file(tmp_path: Path) -> Path:
    lines = [*OUTCOMES, *UNDELIVERED, *APP_LOGS, *BLANK, *BROKEN]
    order = [7, 0, 12, 1, 9, 2, 15, 3, 10, 4, 13, 16, 5, 11, 6, 17, 14, 8, 18, 19, 20]
    assert sorted(order) == list(range(len(lines)))
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines[i] for i in order) + "\n", encoding="utf-8")
    return path


def report_json(capsys: Any, *args: str) -> dict[str, Any]:
    assert main(["report", *args, "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_every_number_of_a_mixed_file(tmp_path, capsys):
    doc = report_json(capsys, str(mixed_file(tmp_path)))
    assert list(doc) == KEYS
    assert doc == EXPECTED


def test_records_of_several_files_and_stdin_add_up(tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(OUTCOMES[:4] + APP_LOGS) + "\n")
    second.write_text("\n".join(OUTCOMES[4:] + UNDELIVERED) + "\n")
    assert report_json(capsys, str(first), str(second))["Total"] == 9

    monkeypatch.setattr("sys.stdin", open(second, encoding="utf-8"))  # noqa: SIM115
    doc = report_json(capsys, str(first), "-")
    assert (doc["Total"], doc["Skipped"], doc["Undelivered"]) == (9, 3, {"callback": 2, "sls": 1})


def test_nothing_to_report_is_zeros_and_nulls(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n".join(APP_LOGS) + "\n")
    assert report_json(capsys, str(empty)) == {
        "Total": 0, "ByStatus": {}, "ByCode": {}, "ByLane": {}, "Retryable": 0, "Ambiguous": 0,
        "AfterBind": {}, "DurationMs": {"p50": None, "p95": None, "max": None},
        "QuotaWaitMs": {"p50": None, "p95": None},
        "BindsPerSecond": None, "Undelivered": {}, "Skipped": 3,
    }  # fmt: skip


def test_the_table_shows_the_same_numbers(tmp_path, capsys):
    assert main(["report", str(mixed_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "9 outcomes from" in out
    rows = {
        cells[0]: cells[1:]
        for row in out.splitlines()
        if (cells := [c.strip() for c in re.split(r"[│┃]", row)[1:-1]])
    }
    assert rows["bound"] == ["5", "56%"]
    assert rows["failed, retryable"] == ["1", "11%"]
    assert rows["binds per second"][0] == "0.833"
    assert rows["ServiceUnavailable"] == ["1", "11%"]
    assert rows["unknown"] == ["1", "11%"]
    assert rows["DurationMs"] == ["300", "880", "1000"]
    assert rows["QuotaWaitMs"] == ["125", "282.5", ""]
    assert rows["callback"] == ["2"] and rows["sls"] == ["1"]
    assert "9 other line(s) skipped" in out


def colours(path: Path) -> set[tuple[int, int, int]]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == PNG_SIZE
        return {c for _, c in image.convert("RGB").getcolors(maxcolors=PNG_SIZE[0] * PNG_SIZE[1])}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def test_plot_writes_a_png_of_the_expected_size_with_each_status(tmp_path, capsys):
    png = tmp_path / "binds.png"
    assert main(["report", str(mixed_file(tmp_path)), "--plot", str(png), "--qps", "4"]) == 0
    assert f"plot written to {png}" in capsys.readouterr().err
    drawn = colours(png)
    for status in ("bound", "duplicate", "failed"):
        assert rgb(STATUS_COLOURS[status]) in drawn, status


def test_plot_of_no_outcome_is_still_a_png(tmp_path):
    empty, png = tmp_path / "empty.jsonl", tmp_path / "none.png"
    empty.write_text("\n")
    assert main(["report", str(empty), "--plot", str(png)]) == 0
    assert rgb(STATUS_COLOURS["bound"]) not in colours(png)


def test_a_long_run_gets_wider_bins_not_thousands_of_bars(tmp_path):
    records = [
        line({**outcome("bound", "OK", "bulk", 10, 0, "00.000", "00.000"),
              "FinishedAt": f"2026-11-30T{10 + s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"})
        for s in range(0, 7200, 3)
    ]  # fmt: skip
    path, png = tmp_path / "long.jsonl", tmp_path / "long.png"
    path.write_text("\n".join(records) + "\n")
    assert main(["report", str(path), "--plot", str(png)]) == 0
    assert rgb(STATUS_COLOURS["bound"]) in colours(png)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["missing.jsonl"], "cannot read missing.jsonl"),
        (["{file}", "--qps", "0"], "--qps: wants calls per second above 0"),
        (["{file}", "--qps", "fast"], "--qps: wants calls per second above 0"),
        (["{file}", "--plot", "/nonexistent-dir/x.png"], "cannot write /nonexistent-dir/x.png"),
    ],
)
def test_usage_problems_exit_2_naming_them(tmp_path, capsys, monkeypatch, args, problem):
    monkeypatch.chdir(tmp_path)
    file = str(mixed_file(tmp_path))
    argv = ["report", *(a.replace("{file}", file) for a in args)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses a bad flag value itself
        code = int(exc.code or 0)
    assert code == 2
    assert problem in capsys.readouterr().err


# --- the README ----------------------------------------------------------------------------------


def readme_section() -> str:
    text = README.read_text()
    start = text.index("## Reports (`wababind report`)")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_readme_json_example_is_what_the_mixed_file_gives(tmp_path, capsys):
    (example,) = code_blocks(readme_section(), "json")
    shown = json.loads(example)
    assert list(shown) == KEYS
    assert shown == report_json(capsys, str(mixed_file(tmp_path)))


def test_the_readme_examples_run(tmp_path):
    (block,) = code_blocks(readme_section(), "bash")
    env = local_env()
    env["PATH"] = f"{wababind_shim(tmp_path)}:{env['PATH']}"
    work = tmp_path / "work"
    work.mkdir()
    result = run_block(block, work, env)
    records = (work / "demo.jsonl").read_text().splitlines()
    summary = json.loads((work / "summary.json").read_text())
    assert list(summary) == KEYS
    assert summary["Total"] == len(records) > 0
    assert sum(summary["ByStatus"].values()) == summary["Total"] == sum(summary["ByCode"].values())
    assert summary["Skipped"] == 0 and summary["Undelivered"] == {}
    assert f"{summary['Total']} outcomes from demo.jsonl" in result.stdout
    assert rgb(STATUS_COLOURS["bound"]) in colours(work / "binds.png")


def test_the_after_bind_steps_codes_are_counted_per_step(tmp_path, capsys):
    def with_steps(after: dict[str, Any] | None) -> str:
        record = outcome("bound", "OK", "bulk", 10, 0, "2026-11-25T10:00:00.000Z",
                         "2026-11-25T10:00:01.000Z")  # fmt: skip
        record["AfterBind"] = after
        return json.dumps(record)

    ok = {"Code": "OK", "Retryable": False}
    lines = [
        with_steps({"sync-phone-numbers": ok, "account-webhook": ok}),
        with_steps({"sync-phone-numbers": ok,
                    "account-webhook": {"Code": "Ram.PermissionDeny", "Retryable": False}}),
        with_steps({"sync-phone-numbers": {"Code": "DeadlineExceeded", "Retryable": True}}),
        with_steps(None),
    ]  # fmt: skip
    path = tmp_path / "steps.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert report_json(capsys, str(path))["AfterBind"] == {
        "account-webhook": {"OK": 1, "Ram.PermissionDeny": 1},
        "sync-phone-numbers": {"OK": 2, "DeadlineExceeded": 1},
    }
    assert main(["report", str(path)]) == 0
    table = capsys.readouterr().out
    assert "After the bind" in table and "Ram.PermissionDeny" in table
