"""The observability/ definitions turned into SLS request bodies: the index, saved searches, the
dashboard and the alert rules. Pure: no network (observe.py sends them).

Queries name the outcome fields plainly. In the search part (before `|`) a field is the word
before `:` or a comparison (`Status: failed`, `Attempts > 1`); in the SQL part a field is always
"double-quoted" and a string 'single-quoted'. That one rule lets this module list the fields of
every query (each must be indexed) and write them for the layout the records have in the
logstore:

    layout fc      Function Compute's logConfig: each line is the field `message` (JSON), so
                   the fields are json keys of it:   message.Status: failed | ... "message.Status"
    layout fields  the `sls` sink's PutLogs, one log field per record field, so
                   the fields stay as written:       Status: failed | ... "Status"

(JSON-type field indexes, their `a.b` search paths and "a.b" SQL columns:
https://www.alibabacloud.com/help/doc-detail/69357.html)
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFINITIONS = Path(__file__).resolve().parents[2] / "observability"
LAYOUTS = ("fc", "fields")
FC_FIELD = "message"  # where Function Compute's logConfig puts each stdout/stderr line
PREFIX = "wababind-"
BUILTIN_FIELDS = frozenset({"__time__", "__topic__", "__source__"})
FIELD_TYPES = frozenset({"text", "long", "double"})
# SLS's default delimiters for text indexes (CreateIndex, "token":
# https://www.alibabacloud.com/help/en/sls/api-createindex).
TOKENS = [",", " ", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">",
          "/", ":", "\n", "\t", "\r"]  # fmt: skip
# Alert severities as SLS numbers them (alert data structure, severityConfigurations).
SEVERITIES = {"critical": 10, "high": 8, "medium": 6, "low": 4, "report": 2}
_SEARCH_FIELD = re.compile(r"(?<![\w.*])([A-Za-z_][\w.]*)(?=\s*(?::|>=|<=|>|<|=))")
_BARE_WORD = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")


class DefinitionError(Exception):
    """The definitions are wrong (a file, a variable, a query); the message says where."""


# --- queries ---------------------------------------------------------------------------------


def _segments(text: str) -> list[tuple[str, str]]:
    """Split into (quote, piece): quote is '"', "'" or "" for text outside quotes."""
    pieces: list[tuple[str, str]] = []
    plain: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "\"'":
            end = text.find(char, i + 1)
            if end < 0:
                raise DefinitionError(f"unclosed {char} in query: {text}")
            pieces.append(("", "".join(plain)))
            pieces.append((char, text[i + 1 : end]))
            plain = []
            i = end + 1
        else:
            plain.append(char)
            i += 1
    pieces.append(("", "".join(plain)))
    return pieces


def _join(pieces: list[tuple[str, str]]) -> str:
    return "".join(f"{quote}{piece}{quote}" for quote, piece in pieces)


def split_query(query: str) -> tuple[str, str | None]:
    """(search, SQL or None): the query splits at its first `|` outside quotes."""
    offset = 0
    for quote, piece in _segments(query):
        if not quote and "|" in piece:
            at = offset + piece.index("|")
            return query[:at].strip(), query[at + 1 :].strip()
        offset += len(piece) + 2 * len(quote)
    return query.strip(), None


def query_fields(query: str) -> set[str]:
    """Every field a query names: search words before `:` or a comparison, SQL "identifiers"."""
    search, sql = split_query(query)
    fields = {
        match.group(1)
        for quote, piece in _segments(search)
        if not quote
        for match in _SEARCH_FIELD.finditer(piece)
    }
    if sql is not None:
        fields |= {piece for quote, piece in _segments(sql) if quote == '"'}
    return fields


def check_query(query: str, indexed: set[str], where: str) -> None:
    """Refuse a query naming a field the index lacks, or a field left unquoted in its SQL."""
    unknown = sorted(query_fields(query) - indexed - BUILTIN_FIELDS)
    if unknown:
        raise DefinitionError(f"{where}: not in the index: {', '.join(unknown)}")
    _, sql = split_query(query)
    if sql is not None:
        bare = {
            m.group(1)
            for quote, piece in _segments(sql)
            if not quote
            for m in _BARE_WORD.finditer(piece)
        }
        if bare & indexed:
            names = ", ".join(sorted(bare & indexed))
            raise DefinitionError(f'{where}: write SQL fields in double quotes: "{names}"')


def for_layout(query: str, fields: set[str], layout: str) -> str:
    """The query as the layout needs it: under `fc`, each field F becomes message.F."""
    if layout == "fields":
        return query
    search, sql = split_query(query)

    def nested(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{FC_FIELD}.{name}" if name in fields else name

    out = _join([(q, p if q else _SEARCH_FIELD.sub(nested, p)) for q, p in _segments(search)])
    if sql is not None:
        sql_pieces = [
            (q, f"{FC_FIELD}.{p}" if q == '"' and p in fields else p) for q, p in _segments(sql)
        ]
        out += " | " + _join(sql_pieces)
    return out


# --- definitions -----------------------------------------------------------------------------


def _read(directory: Path, name: str) -> dict[str, Any]:
    path = directory / name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DefinitionError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DefinitionError(f"{path}: expected a mapping at the top")
    return data


def _sql_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join("'" + str(v).replace("'", "''") + "'" for v in value)
    return str(value)


def _substitute(value: Any, variables: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        try:
            return string.Template(value).substitute(variables)
        except KeyError as exc:
            raise DefinitionError(f"{where}: unknown variable ${{{exc.args[0]}}}") from None
        except ValueError as exc:
            raise DefinitionError(f"{where}: {exc}") from None
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` from --set; VALUE is read as YAML (a number, a list, a string)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise DefinitionError(f"--set {text!r}: expected NAME=VALUE")
    try:
        return name.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise DefinitionError(f"--set {text!r}: VALUE is not valid YAML") from None


@dataclass(frozen=True)
class Definitions:
    """observability/ read, with the variables filled in."""

    variables: dict[str, Any]
    fields: dict[str, str]  # name -> text | long | double
    saved_searches: list[dict[str, Any]]
    dashboard: dict[str, Any]
    alerts: list[dict[str, Any]]


def load(directory: Path = DEFINITIONS, overrides: Mapping[str, Any] | None = None) -> Definitions:
    """Read the definitions; every query must name only indexed fields."""
    variables = _read(directory, "variables.yaml")
    for name, value in (overrides or {}).items():
        if name not in variables:
            known = ", ".join(sorted(variables))
            raise DefinitionError(f"--set {name}: no such variable (known: {known})")
        variables[name] = value
    as_text = {name: _sql_value(value) for name, value in variables.items()}
    fields = _read(directory, "index.yaml").get("fields") or {}
    for name, kind in fields.items():
        if kind not in FIELD_TYPES:
            raise DefinitionError(f"index.yaml: {name}: type {kind!r} is not one of {FIELD_TYPES}")
    parts = {
        name: _substitute(_read(directory, name), as_text, name)
        for name in ("saved-searches.yaml", "dashboard.yaml", "alerts.yaml")
    }
    definitions = Definitions(
        variables=variables,
        fields=dict(fields),
        saved_searches=parts["saved-searches.yaml"].get("saved_searches") or [],
        dashboard=parts["dashboard.yaml"],
        alerts=parts["alerts.yaml"].get("alerts") or [],
    )
    for where, query in queries(definitions):
        check_query(query, set(fields), where)
    return definitions


def queries(definitions: Definitions) -> list[tuple[str, str]]:
    """(where, query) for every query in the definitions, as written there."""
    found = [(f"saved search {s['name']}", s["query"]) for s in definitions.saved_searches]
    found += [(f"chart {c['title']!r}", c["query"]) for c in definitions.dashboard["charts"]]
    found += [(f"alert {a['name']}", a["query"]) for a in definitions.alerts]
    return found


# --- SLS request bodies ----------------------------------------------------------------------


def _key(kind: str) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "token": TOKENS, "caseSensitive": False, "doc_value": True}
    return {"type": kind, "doc_value": True}


def index_body(definitions: Definitions, layout: str) -> dict[str, Any]:
    """CreateIndex's body: full-text `line` plus the field keys, or `message` as json (fc)."""
    line = {"token": TOKENS, "caseSensitive": False, "chn": False}
    if layout == "fields":
        keys = {name: _key(kind) for name, kind in definitions.fields.items()}
    else:
        json_keys = {
            name: {"type": kind, "doc_value": True} for name, kind in definitions.fields.items()
        }
        keys = {
            FC_FIELD: {
                "type": "json",
                "token": TOKENS,
                "caseSensitive": False,
                "doc_value": False,
                "index_all": True,
                "max_depth": -1,
                "json_keys": json_keys,
            }
        }
    return {"line": line, "keys": keys}


def indexed_fields(index: Mapping[str, Any]) -> set[str]:
    """The names a query may use under an index body: keys, and `key.sub` for json keys."""
    names = set()
    for name, key in (index.get("keys") or {}).items():
        names.add(name)
        names |= {f"{name}.{sub}" for sub in key.get("json_keys") or {}}
    return names


def merge_index(existing: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """Our keys over an existing index; keys (and json keys) that only it has are kept."""
    merged = json.loads(json.dumps(existing))
    for drop in ("lastModifyTime", "ttl", "index_mode", "storage"):
        merged.pop(drop, None)
    merged.setdefault("line", ours["line"])
    keys = merged.setdefault("keys", {})
    for name, key in ours["keys"].items():
        before = keys.get(name) or {}
        if key.get("type") == "json" and before.get("type") == "json":
            key = {**key, "json_keys": {**before.get("json_keys", {}), **key["json_keys"]}}
        keys[name] = key
    return merged


def _with_layout(definitions: Definitions, layout: str, query: str) -> str:
    return for_layout(query, set(definitions.fields), layout)


def saved_search_bodies(
    definitions: Definitions, logstore: str, layout: str
) -> list[dict[str, Any]]:
    """CreateSavedSearch bodies (https://www.alibabacloud.com/help/en/sls/developer-reference/api-createsavedsearch)."""
    return [
        {
            "savedsearchName": PREFIX + search["name"],
            "displayName": search["display_name"],
            "searchQuery": _with_layout(definitions, layout, search["query"]),
            "logstore": logstore,
            "topic": "",
        }
        for search in definitions.saved_searches
    ]


def dashboard_body(definitions: Definitions, logstore: str, layout: str) -> dict[str, Any]:
    """CreateDashboard's body, charts two to a row (https://www.alibabacloud.com/help/en/sls/developer-reference/create-dashboard)."""
    board = definitions.dashboard
    charts = []
    for number, chart in enumerate(board["charts"]):
        charts.append(
            {
                "title": chart["title"],
                "type": chart["type"],
                "search": {
                    "logstore": logstore,
                    "topic": "",
                    "query": _with_layout(definitions, layout, chart["query"]),
                    "start": str(definitions.variables["dashboard_range"]),
                    "end": "now",
                },
                "display": {
                    "displayName": chart["title"],
                    "xAxis": chart.get("x", []),
                    "yAxis": chart.get("y", []),
                    "xPos": (number % 2) * 6,
                    "yPos": (number // 2) * 6,
                    "width": 6,
                    "height": 6,
                },
                "action": {},
            }
        )
    return {
        "dashboardName": PREFIX + board["name"],
        "displayName": board["display_name"],
        "description": "wababind outcome records (observability/dashboard.yaml)",
        "attribute": {"type": "grid"},
        "charts": charts,
    }


def alert_bodies(
    definitions: Definitions, project: str, logstore: str, layout: str, region: str | None = None
) -> list[dict[str, Any]]:
    """Alert 2.0 rules, jobs of type Alert (https://www.alibabacloud.com/help/en/log-service/latest/alert-data-structure;
    the query: https://www.alibabacloud.com/help/en/sls/developer-reference/api-sls-2020-12-30-struct-alertquery)."""
    variables = definitions.variables
    bodies = []
    for alert in definitions.alerts:
        if alert["severity"] not in SEVERITIES:
            raise DefinitionError(f"alert {alert['name']}: severity {alert['severity']!r}")
        what_to_do = " ".join(str(alert["what_to_do"]).split())
        bodies.append(
            {
                "name": PREFIX + alert["name"],
                "displayName": alert["display_name"],
                "description": what_to_do,
                "type": "Alert",
                "status": "Enabled",
                "schedule": {
                    "type": "FixedRate",
                    "interval": alert["every"],
                    "runImmediately": False,
                },
                "configuration": {
                    "version": "2.0",
                    "type": "default",
                    "dashboard": "internal-alert-analysis",
                    "queryList": [
                        {
                            "storeType": "log",
                            "project": project,
                            "store": logstore,
                            "query": _with_layout(definitions, layout, alert["query"]),
                            "timeSpanType": "Relative",
                            "start": f"-{alert['window']}",
                            "end": "now",
                            "powerSqlMode": "auto",
                        }
                        | ({"region": region} if region else {})
                    ],
                    "groupConfiguration": {"type": "no_group", "fields": []},
                    "joinConfigurations": [],
                    "severityConfigurations": [
                        {
                            "severity": SEVERITIES[alert["severity"]],
                            "evalCondition": {
                                "condition": " ".join(str(alert["condition"]).split()),
                                "countCondition": "",
                            },
                        }
                    ],
                    "labels": [{"key": "service", "value": "wababind"}],
                    "annotations": [
                        {"key": "title", "value": alert["display_name"]},
                        {"key": "desc", "value": what_to_do},
                    ],
                    "autoAnnotation": True,
                    "sendResolved": False,
                    "threshold": 1,
                    "noDataFire": False,
                    "noDataSeverity": 6,
                    "policyConfiguration": {
                        "alertPolicyId": "sls.builtin.dynamic",
                        "actionPolicyId": str(variables["action_policy_id"]),
                        "repeatInterval": str(variables["repeat_interval"]),
                    },
                },
            }
        )
    return bodies
