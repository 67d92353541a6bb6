"""`wababind observe apply`: observability/ put into SLS with the real aliyun-log SDK, against the
local SLS server; twice (create, then update), in both record layouts, and as a dry run."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import json
import re
import shutil
import subprocess
import typing
from pathlib import Path

import pytest

from tests.fixtures.fc import local_env
from tests.fixtures.sls import SLS_KEY_ID, SLS_KEY_SECRET
from tests.test_cli import code_blocks, wababind_shim
from wababind.outcome import Outcome
from wababind.sinks.log import log_undelivered
from wababind_local import observability, observe
from wababind_local.observability import (
    BUILTIN_FIELDS,
    DefinitionError,
    for_layout,
    indexed_fields,
    query_fields,
)
from wababind_local.sls_server import SlsServer

PROJECT, LOGSTORE = "wababind-logs", "wababind-outcomes"
ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": SLS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SLS_KEY_SECRET}
OUTCOME = Outcome("e", "http", "1", None, "bound", "OK", "")
OUTCOME_FIELDS = set(OUTCOME.to_record())  # SPEC.md "Outcome record", as the code writes it
NUMERIC = {"DurationMs": "double", "QuotaWaitMs": "double", "Attempts": "long"}


def undelivered_fields() -> set[str]:
    """The fields of the line the log sink writes for an undelivered outcome, but its Outcome
    (the record itself, kept whole in the line)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        log_undelivered(OUTCOME, "callback", "answered 500")
    return set(json.loads(out.getvalue())) - {"Outcome"}


UNDELIVERED_FIELDS = undelivered_fields()
DEFINED = observability.load()
RESOURCES = 1 + len(DEFINED.saved_searches) + 1 + len(DEFINED.alerts)


def apply(server: SlsServer, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    observe.add_arguments(parser)
    args = parser.parse_args(
        [
            "apply",
            "--project",
            PROJECT,
            "--logstore",
            LOGSTORE,
            "--endpoint",
            server.endpoint,
            *extra,
        ]
    )
    out = io.StringIO()
    code = observe.run(args, out=out, env=ENV if env is None else env)
    return code, out.getvalue()


def index_fields(server: SlsServer, layout: str) -> dict[str, str]:
    """name -> type, as the server keeps the index: json keys of `message` under fc."""
    index = server.resources.index(PROJECT, LOGSTORE)
    assert index is not None
    keys = index["keys"]
    if layout == "fc":
        keys = keys[observability.FC_FIELD]["json_keys"]
    return {name: key["type"] for name, key in keys.items()}


def sent_queries(server: SlsServer) -> list[tuple[str, str]]:
    """(where, query) of every saved search, chart and alert the server holds."""
    entities = {
        c: server.resources.entities(PROJECT, c) for c in ("savedsearches", "dashboards", "jobs")
    }
    found = [(n, s["searchQuery"]) for n, s in entities["savedsearches"].items()]
    for board in entities["dashboards"].values():
        found += [(c["title"], c["search"]["query"]) for c in board["charts"]]
    for name, job in entities["jobs"].items():
        found += [(name, q["query"]) for q in job["configuration"]["queryList"]]
    return found


# --- apply, twice ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", observability.LAYOUTS)
def test_apply_creates_everything_then_a_second_run_updates_it(sls_server, layout):
    code, out = apply(sls_server, "--layout", layout)
    assert code == 0, out
    assert f"{RESOURCES} created, 0 updated, 0 failed" in out
    first = sls_server.api_calls()
    assert [(c.method, c.status) for c in first] == [("POST", 200)] * RESOURCES

    code, out = apply(sls_server, "--layout", layout)
    assert code == 0, out
    assert f"0 created, {RESOURCES} updated, 0 failed" in out
    assert "updated  index wababind-outcomes" in out
    assert "updated  alert wababind-account-error" in out
    second = sls_server.api_calls()[len(first) :]
    creates = [c for c in second if c.method == "POST"]
    assert len(creates) == RESOURCES and all(c.status in (400, 404) for c in creates)
    assert {c.code for c in creates} == {
        "IndexAlreadyExist",
        "SavedSearchAlreadyExist",
        "ParameterInvalid",  # dashboards: "... already exists", as SLS answers
        "JobAlreadyExist",
    }
    assert [(c.method, c.status) for c in second if c.method != "POST"] == [
        ("GET", 200)  # the index is read, then merged
    ] + [("PUT", 200)] * RESOURCES

    assert len(sls_server.resources.entities(PROJECT, "savedsearches")) == len(
        DEFINED.saved_searches
    )
    assert list(sls_server.resources.entities(PROJECT, "dashboards")) == ["wababind-outcomes"]
    jobs = sls_server.resources.entities(PROJECT, "jobs")
    assert sorted(jobs) == sorted(f"wababind-{a['name']}" for a in DEFINED.alerts)
    assert all(j["type"] == "Alert" and j["status"] == "Enabled" for j in jobs.values())


@pytest.mark.parametrize("layout", observability.LAYOUTS)
def test_the_index_names_every_outcome_field_with_its_type(sls_server, layout):
    assert apply(sls_server, "--layout", layout)[0] == 0
    fields = index_fields(sls_server, layout)
    assert {"Kind", "Sink", "Reason"} <= UNDELIVERED_FIELDS  # and whatever the sink adds
    assert {"QuotaWaitMs", "Lane"} <= OUTCOME_FIELDS
    for name in OUTCOME_FIELDS | UNDELIVERED_FIELDS:
        assert fields.get(name) == NUMERIC.get(name, "text"), name
    index = sls_server.resources.index(PROJECT, LOGSTORE)
    keys = index["keys"]
    nested = keys[observability.FC_FIELD]["json_keys"] if layout == "fc" else keys
    assert all(key["doc_value"] for key in nested.values())  # SQL needs statistics on


@pytest.mark.parametrize("layout", observability.LAYOUTS)
def test_every_query_uses_only_indexed_fields(sls_server, layout):
    assert apply(sls_server, "--layout", layout)[0] == 0
    indexed = indexed_fields(sls_server.resources.index(PROJECT, LOGSTORE)) | BUILTIN_FIELDS
    queries = sent_queries(sls_server)
    assert len(queries) == len(observability.queries(DEFINED))
    used: set[str] = set()
    for where, query in queries:
        fields = query_fields(query)
        assert fields, f"{where}: no field found in {query}"
        assert fields <= indexed, f"{where}: {sorted(fields - indexed)} not indexed"
        used |= fields
    prefix = "message." if layout == "fc" else ""
    for name in ("Kind", "Status", "Code", "Lane", "QuotaWaitMs", "DurationMs", "Attempts", "Sink"):
        assert prefix + name in used


def test_the_index_update_keeps_fields_it_does_not_define(sls_server):
    from aliyun.log import IndexConfig, LogClient

    client = LogClient(sls_server.endpoint, SLS_KEY_ID, SLS_KEY_SECRET)
    client._isRowIp = True
    theirs = IndexConfig()
    theirs.from_json(
        {
            "line": {"token": [" "], "caseSensitive": True},
            "keys": {
                "functionName": {"type": "text", "token": [" "], "doc_value": True},
                "message": {"type": "json", "token": [" "], "index_all": True, "max_depth": -1,
                            "json_keys": {"TenantId": {"type": "text", "doc_value": True},
                                          "Attempts": {"type": "text", "doc_value": False}}},
            },
        }
    )  # fmt: skip
    client.create_index(PROJECT, LOGSTORE, theirs)

    code, out = apply(sls_server)
    assert code == 0 and "updated  index wababind-outcomes" in out
    index = sls_server.resources.index(PROJECT, LOGSTORE)
    assert index["keys"]["functionName"]["type"] == "text"
    assert index["line"]["caseSensitive"] is True
    json_keys = index["keys"]["message"]["json_keys"]
    assert json_keys["TenantId"]["type"] == "text"
    assert json_keys["Attempts"] == {"type": "long", "doc_value": True}  # ours wins


# --- dry run, failures, usage -----------------------------------------------------------------


def test_dry_run_prints_the_requests_and_sends_nothing(sls_server):
    code, out = apply(sls_server, "--dry-run", env={})  # no credentials needed
    assert code == 0
    assert sls_server.calls == 0 and sls_server.api_calls() == []
    lines = out.splitlines()
    requests = [i for i, line in enumerate(lines) if line.startswith("POST ")]
    assert len(requests) == RESOURCES
    bodies = [json.loads(lines[i + 1]) for i in requests]
    assert lines[requests[0]].startswith(
        f"POST http://{PROJECT}.127.0.0.1:{sls_server.endpoint.rsplit(':', 1)[1]}"
        f"/logstores/{LOGSTORE}/index"
    )
    assert "PUT /jobs/wababind-account-error" in lines[requests[-len(DEFINED.alerts)]]
    assert bodies[0]["keys"]["message"]["json_keys"]["QuotaWaitMs"]["type"] == "double"
    assert {b["name"] for b in bodies[-len(DEFINED.alerts) :]} == {
        f"wababind-{a['name']}" for a in DEFINED.alerts
    }
    assert lines[-1] == f"dry run: {RESOURCES} requests printed, nothing sent"


def test_a_refused_call_is_reported_and_the_rest_still_applied(sls_server):
    sls_server.fail_next(1, 403)  # the index create
    code, out = apply(sls_server)
    assert code == 1
    assert "failed   index wababind-outcomes: SLS index call failed: Unauthorized (HTTP 403)" in out
    assert f"{RESOURCES - 1} created, 0 updated, 1 failed" in out
    assert sls_server.resources.index(PROJECT, LOGSTORE) is None


@pytest.mark.parametrize(
    ("break_it", "why"),
    [
        (
            lambda server: server.stop(),
            "SLS index call failed: LogRequestError: connection refused",
        ),
        (lambda server: server.fail_next(1, 401), "SLS index call failed: Unauthorized (HTTP 401)"),
    ],
)
def test_unreachable_sls_or_a_refused_key_stops_after_the_first_call(
    sls_server, monkeypatch, break_it, why
):
    monkeypatch.setattr("aliyun.log.logclient.time.sleep", lambda s: None)  # the SDK's retries
    break_it(sls_server)
    code, out = apply(sls_server)
    assert code == 1
    assert f"failed   index wababind-outcomes: {why}" in out
    assert f"stopping: the next {RESOURCES - 1} would fail alike" in out
    assert out.splitlines()[-1] == f"0 created, 0 updated, 1 failed, {RESOURCES - 1} not tried"


@pytest.mark.parametrize(
    ("env", "extra", "problem"),
    [
        ({}, [], "set ALIBABA_CLOUD_ACCESS_KEY_ID"),
        (ENV, ["--set", "no_such=1"], "--set no_such: no such variable"),
        (ENV, ["--set", "failure_rate_percent"], "expected NAME=VALUE"),
        (ENV, ["--endpoint", "http://sls.example.com"], "plain http only for a loopback"),
        (ENV, ["--project", "Wababind.Logs"], "--project 'Wababind.Logs' is not an SLS name"),
        (ENV, ["--logstore", "a"], "--logstore 'a' is not an SLS name"),
    ],
)
def test_usage_problems_exit_2_before_sending(sls_server, capsys, env, extra, problem):
    code, _ = apply(sls_server, *extra, env=env)
    assert code == 2
    assert problem in capsys.readouterr().err
    assert sls_server.calls == 0


def test_set_overrides_a_threshold_for_one_run(sls_server):
    code, _ = apply(
        sls_server, "--set", "failure_rate_percent=7", "--set", "failure_rate_min_binds=50"
    )
    assert code == 0
    job = sls_server.resources.entities(PROJECT, "jobs")["wababind-failure-rate"]
    condition = job["configuration"]["severityConfigurations"][0]["evalCondition"]["condition"]
    assert condition == "binds >= 50 && failed_percent > 7"
    assert job["displayName"] == "wababind - failure rate above 7%"


# --- the definitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("Kind: WabaBindOutcome and Status: failed", {"Kind", "Status"}),
        ("Kind: X and Attempts > 1 and QuotaWaitMs >= 2", {"Kind", "Attempts", "QuotaWaitMs"}),
        ('Code: "Ram.PermissionDeny" | select "Code", count(*) as n group by "Code"', {"Code"}),
        ("* | select count_if(\"Status\" = 'failed') as failed", {"Status"}),
        ("Kind: A | select 'Status: x' as s, \"Lane\"", {"Kind", "Lane"}),  # a string is no field
        ('message.Kind: A | select "message.Lane"', {"message.Kind", "message.Lane"}),
    ],
)
def test_query_fields_finds_search_and_sql_fields(query, fields):
    assert query_fields(query) == fields


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [
        ("ap-southeast-1.log.aliyuncs.com", "ap-southeast-1"),
        ("https://cn-hangzhou-intranet.log.aliyuncs.com", "cn-hangzhou"),
        ("eu-central-1-share.log.aliyuncs.com", "eu-central-1"),
        ("http://127.0.0.1:9999", None),
    ],
)
def test_alert_queries_name_the_endpoints_region(endpoint, region):
    (alert, *_) = [
        r for r in observe.plan(DEFINED, PROJECT, LOGSTORE, "fc", endpoint) if r.kind == "alert"
    ]
    assert alert.body["configuration"]["queryList"][0].get("region") == region


def test_fc_layout_nests_fields_in_message_and_leaves_strings_alone():
    fields = {"Kind", "Status", "Code"}
    query = "Kind: WabaBindOutcome and Status: failed | select \"Code\", 'Status' as s from log"
    assert for_layout(query, fields, "fc") == (
        "message.Kind: WabaBindOutcome and message.Status: failed"
        " | select \"message.Code\", 'Status' as s from log"
    )
    assert for_layout(query, fields, "fields") == query


def definitions_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = tmp_path / "observability"
    shutil.copytree(observability.DEFINITIONS, copy)
    text = (copy / file).read_text()
    assert old in text
    (copy / file).write_text(text.replace(old, new, 1))
    return copy


BAD_DEFINITIONS = [  # file, text, replaced by, the error says
    (
        "saved-searches.yaml",
        "Status: failed'",
        "Stat: failed'",
        "failed-binds: not in the index: Stat",
    ),
    ("dashboard.yaml", '"Code", count(*) as f', "Code, count(*) as f", "fields in double quotes"),
    ("alerts.yaml", "undelivered > 0", "undelivered > ${nope}", "unknown variable ${nope}"),
    ("index.yaml", "Attempts: long", "Attempts: integer", "Attempts: type 'integer'"),
    ("alerts.yaml", "and Lane: interactive", 'and Lane: "interactive', "unclosed"),
]


@pytest.mark.parametrize(("file", "old", "new", "problem"), BAD_DEFINITIONS)
def test_bad_definitions_are_refused_naming_the_place(tmp_path, file, old, new, problem):
    with pytest.raises(DefinitionError, match=problem.replace("$", r"\$").replace("{", r"\{")):
        observability.load(definitions_with(tmp_path, file, old, new))


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_explains_every_alert_and_what_to_do():
    text = README.read_text()
    section = text[text.index("### Alerts") :]
    for alert in DEFINED.alerts:
        heading = f"**{alert['name']}**"
        assert heading in section, heading
        explained = section[section.index(heading) :].split("\n\n", 1)[0]
        assert "do:" in explained.lower() or "what to do" in explained.lower(), alert["name"]


def readme_section() -> str:
    text = README.read_text()
    start = text.index("## Observability")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_readme_example_runs(sls_server, tmp_path):
    (block,) = code_blocks(readme_section(), "bash")
    env = local_env(
        **ENV,
        SLS_ENDPOINT=sls_server.endpoint,
        WABABIND_LOG_PROJECT=PROJECT,
        WABABIND_LOG_STORE=LOGSTORE,
    )
    env["PATH"] = f"{wababind_shim(tmp_path)}:{env['PATH']}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(RESOURCES)
    assert f"{RESOURCES} created, 0 updated, 0 failed" in lines
    assert f"0 created, {RESOURCES} updated, 0 failed" in lines
    job = sls_server.resources.entities(PROJECT, "jobs")["wababind-failure-rate"]
    assert "failed_percent > 10" in json.dumps(job)


def written_values() -> dict[str, set[str]]:
    """The values the product writes into the fields that queries compare with a literal."""
    from wababind import applog
    from wababind.outcome import RECORD_KIND, Lane, Status
    from wababind.sinks.callback import CallbackSink
    from wababind.sinks.log import UNDELIVERED_KIND
    from wababind.sinks.sls import SlsSink

    return {
        "Kind": {RECORD_KIND, UNDELIVERED_KIND, applog.KIND},
        "Status": set(typing.get_args(Status)),
        "Lane": set(typing.get_args(Lane)),
        "Retryable": {"true", "false"},
        "Sink": {CallbackSink.name, SlsSink.name},
        "Level": {"INFO", "WARNING", "ERROR"},  # applog.log's callers
    }


def compared_values(query: str) -> list[tuple[str, str]]:
    """(field, literal) pairs: `Field: value` in the search part, "Field" = 'value' in SQL."""
    search, sql = observability.split_query(query)
    pairs = re.findall(r"(?<![\w.])([A-Za-z_]\w*):\s*([\w.]+)", search)
    pairs += re.findall(r"\"([A-Za-z_]\w*)\"\s*=\s*'([^']*)'", sql or "")
    return pairs


def test_every_value_a_query_looks_for_is_one_the_product_writes():
    values = written_values()
    checked = 0
    for where, query in observability.queries(DEFINED):
        for field, value in compared_values(query):
            if field in values:
                assert value in values[field], f"{where}: {field} is never {value!r}"
                checked += 1
    assert checked >= 20


# --- the operator's RAM policy -----------------------------------------------------------------

OPERATOR_POLICY = observability.DEFINITIONS / "ram-policy-operator.json"
# The RAM action and resource behind each call observe makes (SLS action list:
# https://www.alibabacloud.com/help/doc-detail/29051.html; alert rules are jobs).
CALL_ACTIONS = [  # method, path pattern, action, resource (after project/<P>/)
    ("GET", r"/logstores/([^/]+)/index", "log:GetIndex", "logstore/{}"),
    ("POST", r"/logstores/([^/]+)/index", "log:CreateIndex", "logstore/{}"),
    ("PUT", r"/logstores/([^/]+)/index", "log:UpdateIndex", "logstore/{}"),
    ("POST", r"/savedsearches", "log:CreateSavedSearch", "savedsearch/{name}"),
    ("PUT", r"/savedsearches/([^/]+)", "log:UpdateSavedSearch", "savedsearch/{}"),
    ("POST", r"/dashboards", "log:CreateDashboard", "dashboard/{name}"),
    ("PUT", r"/dashboards/([^/]+)", "log:UpdateDashboard", "dashboard/{}"),
    ("POST", r"/jobs", "log:CreateJob", "job/{name}"),
    ("PUT", r"/jobs/([^/]+)", "log:UpdateJob", "job/{}"),
]
NAME_FIELDS = ("savedsearchName", "dashboardName", "name")


def needed(call) -> tuple[str, str]:
    """(action, ARN) that one recorded call needs."""
    for method, pattern, action, resource in CALL_ACTIONS:
        match = re.fullmatch(pattern, call.path)
        if method == call.method and match:
            name = next((call.body[f] for f in NAME_FIELDS if call.body and f in call.body), "")
            arn = f"acs:log:ap-southeast-1:1234:project/{call.project}/" + resource.format(
                *match.groups(), name=name
            )
            return action, arn
    raise AssertionError(f"no RAM action known for {call.method} {call.path}")


def test_the_operator_policy_grants_exactly_what_observe_calls(sls_server):
    assert apply(sls_server)[0] == 0
    assert apply(sls_server)[0] == 0  # the second run: creates refused, reads and updates
    grants = [
        (action, arn)
        for statement in json.loads(OPERATOR_POLICY.read_text())["Statement"]
        for action in statement["Action"]
        for arn in (
            [statement["Resource"]]
            if isinstance(statement["Resource"], str)
            else statement["Resource"]
        )
    ]
    used = set()
    for call in sls_server.api_calls():
        action, arn = needed(call)
        matching = [a for a, pattern in grants if a == action and fnmatch.fnmatchcase(arn, pattern)]
        assert matching, f"{call.method} {call.path} needs {action} on {arn}"
        used.add(action)
    assert used == {action for action, _ in grants}  # nothing granted that is not used
