"""The CAMS client gets ready before a quota slot: SDK imported and quieted once, AcsClient built,
keep-alive connection open, so the first call sends at once (over the real simulator)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from wababind import cams
from wababind.cams import Bound, CamsClient
from wababind.config import parse_cams_endpoint
from wababind.credentials import Credentials
from wababind.errors import CAMS_UNREACHABLE, BindError
from wababind_local.cams_simulator import DEFAULT_KEY

CREDS = Credentials(DEFAULT_KEY.access_key_id, DEFAULT_KEY.access_key_secret, "")


def pool_of(client: CamsClient, endpoint: str) -> Any:
    """The urllib3 pool the AcsClient's requests for `endpoint` go through."""
    url = endpoint.rstrip("/") + "/"
    return client._client(CREDS).session.get_adapter(url).get_connection(url)


def test_prepare_opens_the_connection_the_first_call_then_uses(cams_sim):
    client = CamsClient(parse_cams_endpoint(cams_sim.endpoint), "ap-southeast-1", 5)
    client.prepare(CREDS)
    pool = pool_of(client, cams_sim.endpoint)
    assert pool.num_connections == 1 and cams_sim.count() == 0  # connected, nothing sent
    client.prepare(CREDS)  # again: nothing new
    assert isinstance(client.bind_waba("6200000000000001", CREDS), Bound)
    assert isinstance(client.bind_waba("6200000000000002", CREDS), Bound)
    assert pool.num_connections == 1 and cams_sim.count() == 2


def test_prepare_without_credentials_only_imports_the_sdk(cams_sim, monkeypatch):
    monkeypatch.setattr(cams, "_sdk_module", None)
    CamsClient(parse_cams_endpoint(cams_sim.endpoint), "ap-southeast-1", 5).prepare(None)
    assert cams._sdk_module is not None and cams_sim.count() == 0


def test_the_sdk_logging_is_set_up_once_not_per_call(cams_sim, monkeypatch):
    monkeypatch.setattr(cams, "_sdk_module", None)
    setups: list[None] = []
    quiet = cams._quiet_sdk_logging
    monkeypatch.setattr(cams, "_quiet_sdk_logging", lambda: setups.append(quiet()))
    client = CamsClient(parse_cams_endpoint(cams_sim.endpoint), "ap-southeast-1", 5)
    client.prepare(CREDS)
    for n in range(3):
        assert isinstance(client.bind_waba(f"620000000000001{n}", CREDS), Bound)
    assert len(setups) == 1


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prepare_never_raises_and_the_call_reports_an_unreachable_cams(closed_port):
    client = CamsClient(parse_cams_endpoint(f"http://127.0.0.1:{closed_port}"), "cn-hangzhou", 1)
    client.prepare(CREDS)
    result = client.bind_waba("6200000000000020", CREDS)
    assert isinstance(result, BindError) and result.code == CAMS_UNREACHABLE
    assert result.retryable and not result.ambiguous  # refused: the request never went out
