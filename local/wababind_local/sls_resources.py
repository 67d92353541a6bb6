"""What the local SLS server does for the configuration APIs: index, saved searches, dashboards
and alert jobs, kept per project the way SLS keeps them. No HTTP here (sls_server.py has that).

Create answers "already exists" when the name is taken and update answers "does not exist" when
it is not, with the codes SLS uses, so a client's create-else-update path runs as in the cloud.
API pages: https://www.alibabacloud.com/help/en/sls/api-createindex (POST/PUT/GET
/logstores/{logstore}/index), .../api-createsavedsearch (/savedsearches), .../create-dashboard
(/dashboards), https://www.alibabacloud.com/help/en/log-service/latest/alert-data-structure (alert
rules are jobs of type Alert under /jobs).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class SlsError(Exception):
    """An SLS error answer: HTTP status, `errorCode` and `errorMessage`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ApiCall:
    """One configuration call as the server received it (body parsed), and how it answered."""

    method: str
    path: str
    project: str
    body: Any
    status: int
    code: str = ""


@dataclass(frozen=True)
class _Kind:
    """A named resource kind: where it lives, which body field names it, its SLS error codes."""

    collection: str
    name_field: str
    exists: tuple[int, str, str]  # status, code, message format for a create on a taken name
    missing: tuple[int, str]

    def already_exists(self, name: str) -> SlsError:
        status, code, message = self.exists
        return SlsError(status, code, message.format(name=name))

    def not_found(self, name: str) -> SlsError:
        return SlsError(
            self.missing[0], self.missing[1], f"{self.collection} {name} does not exist"
        )


_KINDS = {
    "savedsearches": _Kind(
        "savedsearches",
        "savedsearchName",
        (400, "SavedSearchAlreadyExist", "savedsearch {name} already exists"),
        (404, "SavedSearchNotExist"),
    ),
    # The SDK's own copy_dashboard() recognises this answer: ParameterInvalid, "already exists".
    "dashboards": _Kind(
        "dashboards",
        "dashboardName",
        (400, "ParameterInvalid", "specified dashboard {name} already exists"),
        (404, "DashboardNotExist"),
    ),
    "jobs": _Kind(
        "jobs",
        "name",
        (400, "JobAlreadyExist", "job {name} already exists"),
        (404, "JobNotExist"),
    ),
}
_INDEX = re.compile(r"^/logstores/([A-Za-z0-9_-]+)/index$")
_ENTITY = re.compile(r"^/(savedsearches|dashboards|jobs)(?:/([A-Za-z0-9_.-]+))?$")
_KEY_TYPES = frozenset({"text", "long", "double", "json"})
_JSON_KEY_TYPES = frozenset({"text", "long", "double"})


@dataclass
class _Project:
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {kind: {} for kind in _KINDS}
    )


def _object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        raise SlsError(400, "PostBodyInvalid", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise SlsError(400, "PostBodyInvalid", "the body must be a JSON object")
    return value


def check_index(config: dict[str, Any]) -> None:
    """What CreateIndex refuses: no `line` and no `keys`, an unknown type, a json key without
    json_keys of text/long/double."""
    keys = config.get("keys") or {}
    if not keys and "line" not in config:
        raise SlsError(400, "ParameterInvalid", "index needs line or keys")
    for name, key in keys.items():
        kind = key.get("type", "text")
        if kind not in _KEY_TYPES:
            raise SlsError(400, "ParameterInvalid", f"key {name}: unknown type {kind!r}")
        if kind in ("text", "json") and not isinstance(key.get("token"), list):
            raise SlsError(400, "ParameterInvalid", f"key {name}: a {kind} key needs token")
        for sub, sub_config in (key.get("json_keys") or {}).items():
            if sub_config.get("type") not in _JSON_KEY_TYPES:
                raise SlsError(400, "ParameterInvalid", f"json key {name}.{sub}: bad type")


def _check_entity(collection: str, body: dict[str, Any]) -> None:
    if collection == "savedsearches":
        for name in ("searchQuery", "logstore"):
            if not body.get(name):
                raise SlsError(400, "ParameterInvalid", f"savedsearch needs {name}")
    elif collection == "dashboards":
        if not isinstance(body.get("charts"), list):
            raise SlsError(400, "ParameterInvalid", "dashboard needs charts")
        for chart in body["charts"]:
            search = chart.get("search") or {}
            if not search.get("logstore") or not search.get("query"):
                raise SlsError(400, "ParameterInvalid", "each chart needs search.logstore/query")
    elif collection == "jobs":
        if body.get("type") != "Alert":
            raise SlsError(400, "ParameterInvalid", "this server keeps jobs of type Alert only")
        configuration = body.get("configuration") or {}
        if not configuration.get("queryList") or not configuration.get("severityConfigurations"):
            raise SlsError(400, "ParameterInvalid", "alert needs queryList and severities")
        if not (body.get("schedule") or {}).get("type"):
            raise SlsError(400, "ParameterInvalid", "alert needs schedule.type")


class SlsResources:
    """The configuration side of SLS, per project; every call is recorded in `calls`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[str, _Project] = {}
        self.calls: list[ApiCall] = []

    def handles(self, path: str) -> bool:
        return bool(_INDEX.match(path) or _ENTITY.match(path))

    def handle(
        self, project: str, method: str, path: str, params: dict[str, str], body: bytes
    ) -> Any:
        """Answer one call: a JSON-able body for 200 (None for an empty one), or raise SlsError."""
        parsed: Any = None
        try:
            if method in ("POST", "PUT") and params.get("action") is None:
                parsed = _object(body)
            with self._lock:
                answer = self._dispatch(
                    self._projects.setdefault(project, _Project()), method, path, params, parsed
                )
        except SlsError as error:
            self._record(ApiCall(method, path, project, parsed, error.status, error.code))
            raise
        self._record(ApiCall(method, path, project, parsed, 200))
        return answer

    def index(self, project: str, logstore: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._projects.get(project, _Project()).indexes.get(logstore)
            return json.loads(json.dumps(stored)) if stored is not None else None

    def entities(self, project: str, collection: str) -> dict[str, dict[str, Any]]:
        """The saved searches, dashboards or jobs of a project, by name."""
        with self._lock:
            stored = self._projects.get(project, _Project()).entities[collection]
            return json.loads(json.dumps(stored))

    def _record(self, call: ApiCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _dispatch(
        self, project: _Project, method: str, path: str, params: dict[str, str], body: Any
    ) -> Any:
        index = _INDEX.match(path)
        if index is not None:
            return self._index(project, method, index.group(1), body)
        entity = _ENTITY.match(path)
        assert entity is not None
        collection, name = entity.group(1), entity.group(2)
        return self._entity(project, method, _KINDS[collection], name, params, body)

    @staticmethod
    def _index(project: _Project, method: str, logstore: str, body: Any) -> Any:
        stored = project.indexes.get(logstore)
        if method == "GET":
            if stored is None:
                raise SlsError(404, "IndexConfigNotExist", f"logstore {logstore} has no index")
            return stored
        if method == "DELETE":
            if project.indexes.pop(logstore, None) is None:
                raise SlsError(404, "IndexConfigNotExist", f"logstore {logstore} has no index")
            return None
        if method == "POST" and stored is not None:
            raise SlsError(400, "IndexAlreadyExist", f"logstore {logstore} already has an index")
        if method == "PUT" and stored is None:
            raise SlsError(404, "IndexConfigNotExist", f"logstore {logstore} has no index")
        if method not in ("POST", "PUT"):
            raise SlsError(405, "MethodNotAllowed", f"{method} on an index")
        check_index(body)
        project.indexes[logstore] = {**body, "ttl": 30, "lastModifyTime": int(time.time())}
        return None

    @staticmethod
    def _entity(
        project: _Project,
        method: str,
        kind: _Kind,
        name: str | None,
        params: dict[str, str],
        body: Any,
    ) -> Any:
        stored = project.entities[kind.collection]
        if name is None:
            if method == "GET":
                items = [
                    e
                    for e in stored.values()
                    if kind.collection != "jobs" or e.get("type") == params.get("jobType", "Alert")
                ]
                offset, size = int(params.get("offset", 0)), int(params.get("size", 100))
                page = items[offset : offset + size]
                return {
                    "count": len(page),
                    "total": len(items),
                    kind.collection: page,
                    "results": page,
                }
            if method != "POST":
                raise SlsError(405, "MethodNotAllowed", f"{method} /{kind.collection}")
            new_name = body.get(kind.name_field)
            if not new_name:
                raise SlsError(400, "ParameterInvalid", f"{kind.name_field} is missing")
            if new_name in stored:
                raise kind.already_exists(new_name)
            _check_entity(kind.collection, body)
            stored[new_name] = {**body, "createTime": int(time.time())}
            return None
        if name not in stored:
            raise kind.not_found(name)
        if method == "GET":
            return stored[name]
        if method == "DELETE":
            del stored[name]
            return None
        if method != "PUT":
            raise SlsError(405, "MethodNotAllowed", f"{method} /{kind.collection}/{name}")
        action = params.get("action")
        if action is not None:  # PUT /jobs/{name}?action=enable|disable
            if kind.collection != "jobs" or action not in ("enable", "disable"):
                raise SlsError(400, "ParameterInvalid", f"unknown action {action!r}")
            stored[name]["status"] = "Enabled" if action == "enable" else "Disabled"
            return None
        if body.get(kind.name_field) not in (None, name):
            raise SlsError(400, "ParameterInvalid", f"{kind.name_field} does not match the path")
        _check_entity(kind.collection, body)
        stored[name] = {
            **body,
            kind.name_field: name,
            "createTime": stored[name].get("createTime"),
            "lastModifiedTime": int(time.time()),
        }
        return None
