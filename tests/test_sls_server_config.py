"""The local SLS server's configuration APIs (index, saved searches, dashboards, alert jobs), driven
by the real aliyun-log SDK: what they keep, and the errors SLS answers."""

from __future__ import annotations

from typing import Any

import pytest
from aliyun.log import IndexConfig, LogClient, LogException

from tests.fixtures.sls import SLS_KEY_ID, SLS_KEY_SECRET
from wababind_local.sls_server import SlsServer

PROJECT = "wababind-logs"


def client(server: SlsServer, secret: str = SLS_KEY_SECRET) -> Any:
    sdk: Any = LogClient(server.endpoint, SLS_KEY_ID, secret)
    sdk._isRowIp = True
    return sdk


def index(keys: dict[str, Any]) -> IndexConfig:
    config = IndexConfig()
    config.from_json({"line": {"token": [" "]}, "keys": keys})
    return config


SAVED = {"savedsearchName": "s1", "searchQuery": "Kind: X", "logstore": "ls", "displayName": "S"}
BOARD = {
    "dashboardName": "d1",
    "displayName": "D",
    "charts": [{"title": "t", "type": "line", "search": {"logstore": "ls", "query": "*"}}],
}
ALERT = {
    "name": "a1",
    "displayName": "A",
    "type": "Alert",
    "schedule": {"type": "FixedRate", "interval": "1m"},
    "configuration": {
        "queryList": [{"store": "ls", "query": "*"}],
        "severityConfigurations": [{"severity": 6, "evalCondition": {"condition": "1 > 0"}}],
    },
}
ENTITIES = [  # kind, body, name field, "already exists" code, "not found" code
    ("savedsearch", SAVED, "savedsearchName", "SavedSearchAlreadyExist", "SavedSearchNotExist"),
    ("dashboard", BOARD, "dashboardName", "ParameterInvalid", "DashboardNotExist"),
    ("alert", ALERT, "name", "JobAlreadyExist", "JobNotExist"),
]


@pytest.mark.parametrize(("kind", "body", "name_field", "exists", "missing"), ENTITIES)
def test_entities_create_get_update_and_their_errors(
    sls_server, kind, body, name_field, exists, missing
):
    sdk = client(sls_server)
    name = body[name_field]
    with pytest.raises(LogException) as not_there:
        getattr(sdk, f"update_{kind}")(PROJECT, body)
    assert not_there.value.get_error_code() == missing

    getattr(sdk, f"create_{kind}")(PROJECT, body)
    with pytest.raises(LogException) as taken:
        getattr(sdk, f"create_{kind}")(PROJECT, body)
    assert taken.value.get_error_code() == exists
    assert "already exist" in taken.value.get_error_message()

    changed = {**body, "displayName": "changed"}
    getattr(sdk, f"update_{kind}")(PROJECT, changed)
    got = getattr(sdk, f"get_{kind}")(PROJECT, name).get_body()
    assert got["displayName"] == "changed" and got[name_field] == name
    assert getattr(sdk, f"list_{kind}")(PROJECT).get_total() == 1


def test_index_create_update_get_and_its_errors(sls_server):
    sdk = client(sls_server)
    with pytest.raises(LogException) as missing:
        sdk.get_index_config(PROJECT, "ls")
    assert missing.value.get_error_code() == "IndexConfigNotExist"
    sdk.create_index(PROJECT, "ls", index({"A": {"type": "long", "doc_value": True}}))
    with pytest.raises(LogException) as taken:
        sdk.create_index(PROJECT, "ls", index({"A": {"type": "long"}}))
    assert taken.value.get_error_code() == "IndexAlreadyExist"
    sdk.update_index(PROJECT, "ls", index({"B": {"type": "double", "doc_value": True}}))
    got = sdk.get_index_config(PROJECT, "ls").get_index_config().to_json()
    assert list(got["keys"]) == ["B"] and got["keys"]["B"]["type"] == "double"
    assert sls_server.resources.index("other-project", "ls") is None  # kept per project


def test_alert_jobs_enable_and_disable(sls_server):
    sdk = client(sls_server)
    sdk.create_alert(PROJECT, ALERT)
    sdk.disable_alert(PROJECT, "a1")
    assert sls_server.resources.entities(PROJECT, "jobs")["a1"]["status"] == "Disabled"
    sdk.enable_alert(PROJECT, "a1")
    assert sls_server.resources.entities(PROJECT, "jobs")["a1"]["status"] == "Enabled"


MALFORMED = [  # each answered ParameterInvalid, nothing kept
    lambda sdk: sdk.create_alert(PROJECT, {**ALERT, "type": "Export"}),
    lambda sdk: sdk.create_dashboard(PROJECT, {**BOARD, "charts": None}),
    lambda sdk: sdk.create_savedsearch(PROJECT, {**SAVED, "logstore": ""}),
    lambda sdk: sdk.create_index(PROJECT, "ls", index({"A": {"type": "date"}})),
]


@pytest.mark.parametrize("call", MALFORMED)
def test_malformed_bodies_are_refused(sls_server, call):
    with pytest.raises(LogException) as refused:
        call(client(sls_server))
    assert refused.value.get_error_code() == "ParameterInvalid"
    assert sls_server.resources.entities(PROJECT, "jobs") == {}


def test_a_wrong_key_is_refused_on_configuration_calls_too(sls_server):
    with pytest.raises(LogException) as refused:
        client(sls_server, secret="wrong").create_savedsearch(PROJECT, SAVED)
    assert refused.value.get_error_code() == "SignatureNotMatch"
    assert sls_server.api_calls() == []
