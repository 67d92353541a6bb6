"""Settings: defaults from SPEC.md, and each bad value reported by name, never by value."""

from __future__ import annotations

import pytest

from wababind.config import load_settings
from wababind.errors import ConfigError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_defaults_match_the_spec():
    s = load_settings({})
    assert (s.cams_endpoint.host, s.cams_endpoint.scheme, s.cams_endpoint.port) == (
        "cams.ap-southeast-1.aliyuncs.com",
        "https",
        443,
    )
    assert (s.cams_region, s.cams_qps, s.cams_timeout_s) == ("ap-southeast-1", 10, 5)
    assert s.interactive_max_share == 0.5
    assert s.outcome_sinks == ("log",) and s.redis_url is None and s.idempotency_ttl_s == 86400
    assert s.webhook_secret is None and not s.webhook_auth_none and not s.insecure_callbacks
    assert s.on_redis_outage == "wait"  # nothing binds on one instance's memory alone


@pytest.mark.parametrize(("value", "mode"), [("wait", "wait"), ("LOCAL", "local"), (" ", "wait")])
def test_on_redis_outage_choices(value, mode):
    assert load_settings({"ON_REDIS_OUTAGE": value}).on_redis_outage == mode


@pytest.mark.parametrize(
    ("value", "scheme", "port"),
    [
        ("http://127.0.0.1:8080", "http", 8080),
        ("https://cams.example.com", "https", 443),
        ("cams.example.com:8443", "https", 8443),
        ("http://localhost:9", "http", 9),
    ],
)
def test_cams_endpoint_forms(value, scheme, port):
    endpoint = load_settings({"CAMS_ENDPOINT": value}).cams_endpoint
    assert (endpoint.scheme, endpoint.port) == (scheme, port)


BAD = [
    ({"CAMS_ENDPOINT": "http://cams.example.com"}, "CAMS_ENDPOINT"),
    ({"CAMS_ENDPOINT": "ftp://x"}, "CAMS_ENDPOINT"),
    ({"CAMS_ENDPOINT": "https://x/path"}, "CAMS_ENDPOINT"),
    ({"CAMS_QPS": "ten"}, "CAMS_QPS"),
    ({"CAMS_QPS": "0"}, "CAMS_QPS"),
    ({"INTERACTIVE_MAX_SHARE": "0"}, "INTERACTIVE_MAX_SHARE"),
    ({"INTERACTIVE_MAX_SHARE": "1.5"}, "INTERACTIVE_MAX_SHARE"),
    ({"INTERACTIVE_MAX_SHARE": "half"}, "INTERACTIVE_MAX_SHARE"),
    ({"CAMS_TIMEOUT_S": "-1"}, "CAMS_TIMEOUT_S"),
    ({"OUTCOME_SINKS": "log,kafka"}, "OUTCOME_SINKS"),
    ({"OUTCOME_SINKS": "callback"}, "CALLBACK_SECRET is required"),
    ({"OUTCOME_SINKS": "sls"}, "SLS_ENDPOINT"),
    ({"WEBHOOK_SECRET": "plain-text-secret"}, "WEBHOOK_SECRET"),
    ({"WEBHOOK_AUTH": "maybe"}, "WEBHOOK_AUTH"),
    ({"REDIS_URL": "http://redis"}, "REDIS_URL"),
    ({"IDEMPOTENCY_TTL_S": "forever"}, "IDEMPOTENCY_TTL_S"),
    ({"ON_REDIS_OUTAGE": "fallback"}, "ON_REDIS_OUTAGE"),
]


@pytest.mark.parametrize(("env", "name"), BAD, ids=[str(e) for e, _ in BAD])
def test_a_bad_setting_is_named(env, name):
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert name in str(err.value)
    if name in env and "SECRET" in name:
        assert env[name] not in str(err.value)


def test_a_bad_secret_is_named_but_not_echoed():
    with pytest.raises(ConfigError) as err:
        load_settings({"CALLBACK_SECRET": "not-base64-!!!", "OUTCOME_SINKS": "callback"})
    assert "CALLBACK_SECRET" in str(err.value) and "not-base64" not in str(err.value)


def test_the_test_only_callback_escape_hatch_is_off_inside_function_compute():
    hatch = {"WABABIND_UNSAFE_TEST_CALLBACKS": "allow-http-and-loopback"}
    assert load_settings(hatch).insecure_callbacks
    assert not load_settings({**hatch, "FC_FUNCTION_NAME": "bind-waba-mq"}).insecure_callbacks


def test_sinks_and_secrets_parse():
    s = load_settings(
        {
            "OUTCOME_SINKS": "log, callback",
            "CALLBACK_SECRET": SECRET,
            "CALLBACK_ALLOWED_HOSTS": "Hooks.Example.com, b.example.com",
            "WEBHOOK_SECRET": SECRET,
        }
    )
    assert s.outcome_sinks == ("log", "callback")
    assert s.callback_allowed_hosts == ("hooks.example.com", "b.example.com")


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://10.0.0.1/x",
        "https://user:pw@hooks.example.com/x",
        "https://localhost/x",
    ],
)
def test_a_callback_url_that_breaks_the_rules_is_a_config_error(url):
    with pytest.raises(ConfigError) as err:
        load_settings({"CALLBACK_URL": url})
    assert "CALLBACK_URL" in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://r-t4nexample.redis.singapore.rds.aliyuncs.com:6379",
        "redis://default:p%40ss@r-t4nexample.redis.rds.aliyuncs.com:6379/255",
        "rediss://:pw@r-t4nexample.redis.rds.aliyuncs.com:6380/2?ssl_cert_reqs=none",
        "redis://localhost/3?client_name=wababind",
        "redis://[::1]:6379/0",
        "unix:///var/run/redis.sock?db=1",
    ],
)
def test_the_redis_urls_a_deployer_writes_are_accepted(url):
    """The neighbours of the refused REDIS_URLs (test_broken_settings.py)."""
    assert load_settings({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    "env",
    [
        {"CAMS_REGION": "cn-shanghai-finance-1"},
        {"CAMS_ENDPOINT": "cams.ap-southeast-1.aliyuncs.com:443"},
        {"CALLBACK_ALLOWED_HOSTS": "hooks_1.example.com, Bücher.example"},
        {"SLS_ENDPOINT": "ap-southeast-1-intranet.log.aliyuncs.com"},
        {"SLS_ENDPOINT": "http://127.0.0.1:8080", "SLS_PROJECT": "abc", "SLS_LOGSTORE": "a_b-c"},
    ],
    ids=str,
)
def test_the_neighbours_of_refused_values_are_accepted(env):
    settings = load_settings(env)
    if "SLS_LOGSTORE" in env:
        assert (settings.sls_project, settings.sls_logstore) == ("abc", "a_b-c")
