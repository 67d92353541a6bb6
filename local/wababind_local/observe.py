"""`wababind observe apply`: create or update the observability/ definitions in an SLS project
through aliyun-log-python-sdk: the logstore's index, the saved searches, the dashboard and the
alert rules.

Idempotent: each resource is created, and updated when SLS answers that it already exists (the
index is merged: fields it has that we do not define are kept). `--dry-run` prints the requests
and sends nothing. Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET / _SECURITY_TOKEN.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

from wababind.sinks.sls import safe_reason
from wababind_local import observability
from wababind_local.observability import DefinitionError, Definitions

DEFAULT_ENDPOINT = "ap-southeast-1.log.aliyuncs.com"
# LogClient's method names per kind: create_savedsearch, update_dashboard, create_alert, ...
# (alerts are jobs of type Alert: POST /jobs, PUT /jobs/{name}).
_SDK_NAMES = {"saved search": "savedsearch", "dashboard": "dashboard", "alert": "alert"}
# SLS names: 3-63 lowercase letters, digits and hyphens, a letter or digit at both ends; a
# logstore may have underscores too (https://www.alibabacloud.com/help/en/sls/developer-reference/logstores).
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_LOGSTORE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^([a-z]+-[a-z0-9-]+?)(?:-intranet|-share)?\.log\.aliyuncs\.com$")


@dataclass(frozen=True)
class Resource:
    """One thing to put in SLS: how to create it and how to update it, as SDK calls and as the
    HTTP requests they make (for --dry-run)."""

    kind: str  # index | saved search | dashboard | alert
    name: str
    body: dict[str, Any]
    create_path: str  # POST
    update_path: str  # PUT


@dataclass
class Applied:
    """What `apply` did, resource by resource (labels like `alert wababind-undelivered`)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not tried: SLS unreachable or key refused


def plan(
    definitions: Definitions, project: str, logstore: str, layout: str, endpoint: str = ""
) -> list[Resource]:
    """Every resource, in the order they are applied (the index first: the rest query it)."""
    index = f"/logstores/{logstore}/index"
    resources = [
        Resource(
            "index",
            logstore,
            observability.index_body(definitions, layout),
            index,
            index,
        )
    ]
    for body in observability.saved_search_bodies(definitions, logstore, layout):
        name = body["savedsearchName"]
        resources.append(
            Resource("saved search", name, body, "/savedsearches", f"/savedsearches/{name}")
        )
    board = observability.dashboard_body(definitions, logstore, layout)
    name = board["dashboardName"]
    resources.append(Resource("dashboard", name, board, "/dashboards", f"/dashboards/{name}"))
    region = region_of(endpoint)
    for body in observability.alert_bodies(definitions, project, logstore, layout, region):
        resources.append(Resource("alert", body["name"], body, "/jobs", f"/jobs/{body['name']}"))
    return resources


def _every_call_would_fail(error: Exception) -> bool:
    """SLS unreachable (the SDK has already tried 10 times) or the key refused (HTTP 401)."""
    code = getattr(error, "get_error_code", lambda: "")()
    status = getattr(error, "resp_status", None)
    return (code == "LogRequestError" and status in (None, 200)) or status == 401


def region_of(endpoint: str) -> str | None:
    """`ap-southeast-1` of `ap-southeast-1.log.aliyuncs.com` (or its -intranet / -share form)."""
    host = urlsplit(_https(endpoint)).hostname or ""
    match = _REGION.match(host)
    return match.group(1) if match else None


def already_exists(error: Exception) -> bool:
    """SLS's answers to a create on a taken name: `IndexAlreadyExist`, `JobAlreadyExist`,
    `SavedSearchAlreadyExist`, ..., and for dashboards `ParameterInvalid` "... already exists"
    (the SDK's own copy_dashboard() checks for that one)."""
    code = str(getattr(error, "get_error_code", lambda: "")())
    message = str(getattr(error, "get_error_message", lambda: "")()).lower()
    return code.endswith(("AlreadyExist", "AlreadyExists")) or (
        code == "ParameterInvalid" and "already exist" in message
    )


def _https(endpoint: str) -> str:
    return endpoint if "://" in endpoint else "https://" + endpoint


def _endpoint_problem(endpoint: str) -> str | None:
    """Plain http only to a loopback address (the local SLS server), as for CAMS_ENDPOINT."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected a host name or http(s)://host[:port]"
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            return "plain http only for a loopback address; use https"
    return None


def _client(endpoint: str, env: dict[str, str]) -> Any:
    from aliyun.log import LogClient

    client: Any = LogClient(
        endpoint,
        env["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        securityToken=env.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None,
    )
    host = urlsplit(endpoint).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # the SDK fails to spot an IP in "http://ip:port" and would prefix the project to it
        client._isRowIp = True
    return client


class Applier:
    """Sends the resources with a LogClient: create, else update; reports each line to `out`."""

    def __init__(self, client: Any, project: str, out: IO[str]) -> None:
        self._client = client
        self._project = project
        self._out = out

    def apply(self, resources: Sequence[Resource]) -> Applied:
        applied = Applied()
        for number, resource in enumerate(resources):
            label = f"{resource.kind} {resource.name}"
            try:
                created = self._put(resource)
            except Exception as exc:  # the SDK raises LogException, and others on a bad network
                reason = safe_reason(exc, f"{resource.kind} call")
                applied.failed.append(label)
                print(f"failed   {label}: {reason}", file=self._out)
                if _every_call_would_fail(exc):
                    applied.skipped = [f"{r.kind} {r.name}" for r in resources[number + 1 :]]
                    print(
                        f"stopping: the next {len(applied.skipped)} would fail alike",
                        file=self._out,
                    )
                    break
                continue
            (applied.created if created else applied.updated).append(label)
            print(f"{'created' if created else 'updated'}  {label}", file=self._out)
        return applied

    def _put(self, resource: Resource) -> bool:
        """True when created, False when updated."""
        create, update = self._calls(resource)
        try:
            create()
            return True
        except Exception as exc:
            if not already_exists(exc):
                raise
        update()
        return False

    def _calls(self, resource: Resource) -> tuple[Callable[[], Any], Callable[[], Any]]:
        """(create, update) as LogClient calls; the index update merges with what is there."""
        client, project, body = self._client, self._project, resource.body
        if resource.kind == "index":
            logstore = resource.name

            def create_index() -> Any:
                return client.create_index(project, logstore, _index_config(body))

            def update_index() -> Any:
                existing = client.get_index_config(project, logstore).get_index_config()
                merged = observability.merge_index(existing.to_json(), body)
                return client.update_index(project, logstore, _index_config(merged))

            return create_index, update_index
        name = _SDK_NAMES[resource.kind]
        create, update = getattr(client, f"create_{name}"), getattr(client, f"update_{name}")
        return (lambda: create(project, body)), (lambda: update(project, body))


def _index_config(config: dict[str, Any]) -> Any:
    """The SDK's IndexConfig for an index body (create_index/update_index take no dict)."""
    from aliyun.log import IndexConfig

    index = IndexConfig()
    index.from_json(config)
    return index


def print_requests(
    resources: Sequence[Resource], project: str, endpoint: str, out: IO[str]
) -> None:
    """--dry-run: each request as it would go out, its body on one JSON line (for jq); the
    update, sent when the create finds the name taken, is the PUT named in the comment."""
    base = urlsplit(_https(endpoint))
    for resource in resources:
        print(
            f"POST {base.scheme}://{project}.{base.netloc}{resource.create_path}"
            f"   # {resource.kind} {resource.name}; if it exists: PUT {resource.update_path}",
            file=out,
        )
        print(json.dumps(_as_sent(resource), ensure_ascii=False), file=out)


def _as_sent(resource: Resource) -> dict[str, Any]:
    """The body the SDK sends: an index goes through its IndexConfig (which fills defaults)."""
    if resource.kind != "index":
        return resource.body
    sent: dict[str, Any] = _index_config(resource.body).to_json()
    return sent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    apply = actions.add_parser(
        "apply", help="create or update the index, saved searches, dashboard and alerts"
    )
    apply.add_argument("--project", required=True, help="SLS project")
    apply.add_argument("--logstore", required=True, help="the logstore the outcome records reach")
    apply.add_argument(
        "--endpoint",
        help=f"SLS endpoint (default: $SLS_ENDPOINT, else {DEFAULT_ENDPOINT})",
    )
    apply.add_argument(
        "--layout",
        choices=observability.LAYOUTS,
        default="fc",
        help="how records reach the logstore: fc = Function Compute's logConfig (JSON lines "
        "in `message`, the default), fields = the sls sink's PutLogs (one field each)",
    )
    apply.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a variable of observability/variables.yaml for this run",
    )
    apply.add_argument("--dry-run", action="store_true", help="print the requests, send nothing")


def run(
    args: argparse.Namespace, out: IO[str] | None = None, env: dict[str, str] | None = None
) -> int:
    """0: all applied; 1: some resource failed or was not tried; 2: bad definitions, usage or
    credentials (nothing sent)."""
    out = out or sys.stdout
    env = dict(os.environ) if env is None else env
    for flag, value, rule in (
        ("--project", args.project, _PROJECT),
        ("--logstore", args.logstore, _LOGSTORE),
    ):
        if not rule.match(value):
            print(f"observe: {flag} {value!r} is not an SLS name ({rule.pattern})", file=sys.stderr)
            return 2
    try:
        overrides = dict(observability.parse_override(o) for o in args.overrides)
        definitions = observability.load(overrides=overrides)
    except DefinitionError as exc:
        print(f"observe: {exc}", file=sys.stderr)
        return 2
    endpoint = _https(args.endpoint or env.get("SLS_ENDPOINT") or DEFAULT_ENDPOINT)
    resources = plan(definitions, args.project, args.logstore, args.layout, endpoint)
    if args.dry_run:
        print_requests(resources, args.project, endpoint, out)
        print(f"dry run: {len(resources)} requests printed, nothing sent", file=out)
        return 0
    if not env.get("ALIBABA_CLOUD_ACCESS_KEY_ID") or not env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        print(
            "observe: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
            "(and ALIBABA_CLOUD_SECURITY_TOKEN for an STS key)",
            file=sys.stderr,
        )
        return 2
    problem = _endpoint_problem(endpoint)
    if problem:
        print(f"observe: endpoint {endpoint}: {problem}", file=sys.stderr)
        return 2
    print(f"observe: project {args.project}, logstore {args.logstore} at {endpoint}", file=out)
    applied = Applier(_client(endpoint, env), args.project, out).apply(resources)
    skipped = f", {len(applied.skipped)} not tried" if applied.skipped else ""
    print(
        f"{len(applied.created)} created, {len(applied.updated)} updated, "
        f"{len(applied.failed)} failed{skipped}",
        file=out,
    )
    return 1 if applied.failed else 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wababind observe", description="SLS index, saved searches, dashboard and alerts"
    )
    add_arguments(parser)
    return run(parser.parse_args(list(argv) if argv is not None else None))


if __name__ == "__main__":
    sys.exit(main())
