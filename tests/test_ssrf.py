"""Callback URL rules: the static check and the DNS check, table-driven."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from wababind.ssrf import (
    SsrfError,
    callback_url_problem,
    insecure_callbacks_allowed,
    resolve_public,
)

ALLOWED = ("hooks.example.com", "api.partner.test", "xn--bcher-kva.example")


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://hooks.example.com/cb", "scheme"),
        ("ftp://hooks.example.com/cb", "scheme"),
        ("//hooks.example.com/cb", "scheme"),
        ("https://user:pass@hooks.example.com/cb", "userinfo"),
        ("https://user@hooks.example.com/cb", "userinfo"),
        ("https://hooks.example.com@evil.test/cb", "userinfo"),
        ("https://127.0.0.1/cb", "ip-literal"),
        ("https://8.8.8.8/cb", "ip-literal"),
        ("https://[::1]/cb", "ip-literal"),
        ("https://[::ffff:127.0.0.1]/cb", "ip-literal"),
        ("https://[fe80::1%25eth0]/cb", "ip-literal"),
        ("https://2130706433/cb", "ip-literal"),
        ("https://0177.0.0.1/cb", "ip-literal"),
        ("https://0x7f.1/cb", "ip-literal"),
        ("https://0x7f000001/cb", "ip-literal"),
        ("https://127.1/cb", "ip-literal"),
        ("https://127\u30020\u30020\u30021/cb", "ip-literal"),  # ideographic full stops
        ("https://169.254.169.254/latest/meta-data", "ip-literal"),
        ("https://100.100.100.200/latest/meta-data", "ip-literal"),
        ("https://localhost/cb", "host"),
        ("https://LOCALHOST/cb", "host"),
        ("https://sub.localhost/cb", "host"),
        ("https://metadata.google.internal/computeMetadata/v1/", "host"),
        ("https://metadata/cb", "host"),
        ("https://instance-data.ec2.internal/cb", "host"),
        ("https://evil.test/cb", "host"),
        ("https://hooks.example.com.evil.test/cb", "host"),
        ("https://hooks.example.com./cb", "host"),
        ("https://b\u00fccher.example.test/cb", "host"),  # IDN not in the list
        ("https://xn--bcher-kva.evil.test/cb", "host"),
        ("https://hooks%2eexample.com/cb", "host"),
        ("https:///cb", "host"),
        ("https://hooks.example.com:0/cb", "port"),
        ("https://hooks.example.com:99999/cb", "port"),
        ("https://hooks.example.com:abc/cb", "port"),
        ("https://hooks.example.com:/cb", "port"),
        ("https://hooks.example.com/cb#frag", "fragment"),
        ("https://hooks.example.com/cb with space", "syntax"),
        ("https://hooks.example.com/cb\n", "syntax"),
        ("https://hooks.example.com/" + "a" * 2048, "length"),
    ],
)
def test_refused_urls_name_the_rule(url: str, rule: str) -> None:
    problem = callback_url_problem(url, ALLOWED)
    assert problem is not None, url
    assert problem[0] == rule, (url, problem)
    assert problem[1]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/cb",
        "https://HOOKS.Example.COM/cb",
        "https://hooks.example.com:8443/cb?tenant=1",
        "https://api.partner.test",
        "https://b\u00fccher.example/cb",  # IDN whose punycode form is in the list
        "https://hooks.example.com/" + "a" * 2000,
    ],
)
def test_allowed_urls(url: str) -> None:
    assert callback_url_problem(url, ALLOWED) is None


def test_allow_list_is_normalised_too() -> None:
    assert callback_url_problem("https://xn--bcher-kva.example/", ["B\u00dcCHER.example"]) is None
    assert callback_url_problem("https://hooks.example.com/", []) == (
        "host",
        "host is not in CALLBACK_ALLOWED_HOSTS",
    )


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://127.0.0.1:8080/cb", None),
        ("http://[::1]:8080/cb", None),
        ("http://localhost:8080/cb", None),
        ("http://hooks.example.com/cb", None),
        ("http://evil.test/cb", "host"),
        ("http://10.0.0.1/cb", "ip-literal"),
        ("http://169.254.169.254/cb", "ip-literal"),
        ("http://127.1/cb", "ip-literal"),
        ("http://metadata.google.internal/cb", "host"),
        ("http://u:p@127.0.0.1/cb", "userinfo"),
    ],
)
def test_insecure_mode_allows_only_http_and_loopback(url: str, rule: str | None) -> None:
    problem = callback_url_problem(url, ALLOWED, allow_insecure=True)
    assert (problem[0] if problem else None) == rule


@pytest.mark.parametrize(
    ("environ", "allowed"),
    [
        ({}, False),
        ({"WABABIND_UNSAFE_TEST_CALLBACKS": "allow-http-and-loopback"}, True),
        ({"WABABIND_UNSAFE_TEST_CALLBACKS": "1"}, False),
        ({"WABABIND_UNSAFE_TEST_CALLBACKS": "true"}, False),
        (
            {
                "WABABIND_UNSAFE_TEST_CALLBACKS": "allow-http-and-loopback",
                "FC_FUNCTION_NAME": "bind-waba",
            },
            False,
        ),
        (
            {"WABABIND_UNSAFE_TEST_CALLBACKS": "allow-http-and-loopback", "FC_INSTANCE_ID": "c-1"},
            False,
        ),
    ],
)
def test_insecure_escape_hatch_is_ignored_inside_fc(environ: dict[str, str], allowed: bool) -> None:
    assert insecure_callbacks_allowed(environ) is allowed


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize(
    ("addresses", "rule"),
    [
        (["127.0.0.1"], "loopback"),
        (["127.8.9.10"], "loopback"),
        (["::1"], "loopback"),
        (["10.1.2.3"], "private"),
        (["172.16.0.9"], "private"),
        (["192.168.1.1"], "private"),
        (["fd12:3456::1"], "private"),
        (["100.64.0.1"], "cgnat"),
        (["100.127.255.254"], "cgnat"),
        (["169.254.1.1"], "link-local"),
        (["fe80::1"], "link-local"),
        (["169.254.169.254"], "metadata"),
        (["100.100.100.200"], "metadata"),
        (["fd00:ec2::254"], "metadata"),
        (["0.0.0.0"], "unspecified"),
        (["::"], "unspecified"),
        (["224.0.0.1"], "multicast"),
        (["ff02::1"], "multicast"),
        (["240.0.0.1"], "reserved"),
        (["192.0.2.10"], "private"),  # TEST-NET-1: documentation range
        (["::ffff:127.0.0.1"], "loopback"),
        (["::ffff:10.0.0.1"], "private"),
        (["64:ff9b::a9fe:a9fe"], "metadata"),  # NAT64 of 169.254.169.254
        (["2002:7f00:1::"], "loopback"),  # 6to4 of 127.0.0.1
        (["93.184.216.34", "10.0.0.1"], "private"),  # any bad address refuses all
        (["2606:4700::1111", "::1"], "loopback"),
    ],
)
def test_resolve_public_refuses_non_public_addresses(
    monkeypatch: pytest.MonkeyPatch, addresses: list[str], rule: str
) -> None:
    _resolving_to(monkeypatch, *addresses)
    with pytest.raises(SsrfError) as caught:
        resolve_public("hooks.example.com", 443)
    assert caught.value.rule == rule


def test_resolve_public_returns_vetted_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolving_to(monkeypatch, "93.184.216.34", "2606:4700::1111", "93.184.216.34")
    assert resolve_public("hooks.example.com", 443) == ["93.184.216.34", "2606:4700::1111"]


def test_resolve_public_real_localhost_is_loopback() -> None:
    with pytest.raises(SsrfError) as caught:
        resolve_public("localhost", 443)
    assert caught.value.rule == "loopback"
    assert "127.0.0.1" in resolve_public("localhost", 443, allow_insecure=True)


def test_insecure_mode_still_refuses_private_and_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    for address, rule in (("10.0.0.1", "private"), ("169.254.169.254", "metadata")):
        _resolving_to(monkeypatch, address)
        with pytest.raises(SsrfError) as caught:
            resolve_public("hooks.example.com", 80, allow_insecure=True)
        assert caught.value.rule == rule


def test_dns_failure_is_an_os_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(OSError):
        resolve_public("hooks.example.com", 443)
