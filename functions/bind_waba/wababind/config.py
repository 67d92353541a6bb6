"""Settings from the environment, validated once; errors name the variable, never its value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import SplitResult, parse_qs, urlsplit

from wababind.errors import ConfigError
from wababind.fallback import ON_OUTAGE_CHOICES, OnOutage

SINK_NAMES = ("log", "callback", "sls")
AFTER_BIND_STEPS = ("sync-phone-numbers", "account-webhook")  # wababind.after_bind


class CamsEndpoint:
    """Where CAMS answers (CAMS_ENDPOINT, checked). A plain class: a @dataclass execs its
    generated __init__ at import (~0.3 ms of every cold start)."""

    def __init__(self, host: str, scheme: str, port: int) -> None:
        self.host = host
        self.scheme = scheme  # "https", or "http" for a loopback simulator
        self.port = port


@dataclass(repr=False, eq=False)  # no repr: it holds the secrets
class Settings:
    """Every setting of the function, read from the environment and checked once."""

    cams_endpoint: CamsEndpoint
    cams_region: str
    cams_qps: float
    interactive_max_share: float  # of the quota's slots while bulk waits (wababind.ratelimit)
    cams_timeout_s: float
    webhook_secret: str | None
    webhook_auth_none: bool
    outcome_sinks: tuple[str, ...]
    callback_url: str | None
    callback_secret: str | None
    callback_allowed_hosts: tuple[str, ...]
    insecure_callbacks: bool
    sls_endpoint: str | None
    sls_project: str | None
    sls_logstore: str | None
    redis_url: str | None
    idempotency_ttl_s: float
    on_redis_outage: OnOutage = "wait"  # what binds do while REDIS_URL is set but unreachable
    after_bind: tuple[str, ...] = ()  # AFTER_BIND: the steps after a bind, in order
    account_webhook_url: str | None = None  # ACCOUNT_WEBHOOK_URL: https status callbacks
    account_webhook_queue: bool = False  # ACCOUNT_WEBHOOK_QUEUE=Y: status callbacks by queue


# Host names: dot-separated labels of 1-63 letters, digits, hyphens (RFC 1123) and the
# underscores some DNS names carry (the callback rule accepts them too).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
# Alibaba Cloud region ids: ap-southeast-1, cn-hangzhou, cn-shanghai-finance-1 ...
_REGION = re.compile(r"^[a-z]+(?:-[a-z0-9]+)+$")
# SLS names (https://www.alibabacloud.com/help/en/sls/developer-reference/logstores): 3 to 63
# lowercase letters, digits, hyphens (and underscores in a logstore), alphanumeric at both ends.
# Compiled (and cached by `re`) only when the SLS settings are given, not at every cold start.
_SLS_NAMES = {
    "SLS_PROJECT": r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
    "SLS_LOGSTORE": r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$",
}
# What REDIS_URL may carry in its query: redis-py hands every query parameter to the
# connection, where an unknown one fails at the first command and a timeout overrides ours.
REDIS_QUERY = ("db", "client_name", "ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _is_host(host: str) -> bool:
    """A DNS host name or an IP address literal."""
    try:
        ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.match(host))


def _port(parts: SplitResult, name: str) -> int | None:
    """The URL's port, None when it names none; a port that is no number in 1-65535 (`63a79`,
    `0`, `99999`, a bare `:`) is a ConfigError: urllib raises ValueError only when asked."""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ConfigError(f"{name} has a port that is not a number between 1 and 65535")
    return port


def parse_endpoint(value: str, name: str = "CAMS_ENDPOINT") -> CamsEndpoint:
    """A bare host means https; `http://host:port` is accepted only for a loopback host."""
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    port = _port(parts, name)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _is_host(host):
        raise ConfigError(f"{name} must be a host name or http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(f"{name} must not carry a path, query or user info")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(f"{name} may use plain http only for a loopback host")
    return CamsEndpoint(host, parts.scheme, port or (443 if parts.scheme == "https" else 80))


def parse_cams_endpoint(value: str) -> CamsEndpoint:
    """CAMS_ENDPOINT, checked (`parse_endpoint`)."""
    return parse_endpoint(value, "CAMS_ENDPOINT")


def check_redis_url(url: str) -> None:
    """Everything redis-py would take silently or fail on only at the first command: a port that
    is no number, a db that is not one (redis-py then uses db 0, another application's
    keyspace), no host, a query parameter the connection does not know. Never echoes the URL:
    it may hold a password."""
    name = "REDIS_URL"
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL")
    query = parse_qs(parts.query, keep_blank_values=True)
    if any(key not in REDIS_QUERY for key in query) or any(len(v) > 1 for v in query.values()):
        raise ConfigError(f"{name} may carry only the query parameters {', '.join(REDIS_QUERY)}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{name} with the unix scheme must name the socket's path")
    else:
        _port(parts, name)
        if not _is_host(parts.hostname or ""):
            raise ConfigError(f"{name} must name a host (redis://host:port/db)")
    db = query.get("db", [parts.path.strip("/") if parts.scheme != "unix" else ""])[0]
    if db and not (db.isascii() and db.isdigit()):
        raise ConfigError(f"{name} has a database that is not a number (redis://host:port/0)")
    if parts.scheme != "rediss" and any(key.startswith("ssl_") for key in query):
        raise ConfigError(f"{name}: ssl_ parameters need a rediss:// URL")
    cert_reqs = query.get("ssl_cert_reqs", ["required"])[0].lower()
    if cert_reqs not in ("none", "optional", "required"):
        raise ConfigError(f"{name}: ssl_cert_reqs must be none, optional or required")


def _sls_name(env: Mapping[str, str], name: str) -> str | None:
    value = _optional(env, name)
    if value is not None and not re.match(_SLS_NAMES[name], value):
        raise ConfigError(
            f"{name} must be 3 to 63 lowercase letters, digits or hyphens"
            + (" or underscores" if name == "SLS_LOGSTORE" else "")
            + ", a letter or digit at both ends"
        )
    return value


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma list of host names (no scheme, port, path or wildcard)."""
    from wababind.ssrf import normalize_host

    hosts = []
    for raw in _list(env, name):
        host = normalize_host(raw)
        if host is None or not _HOST_NAME.match(host):
            raise ConfigError(f"{name} must be a comma list of host names (hooks.example.com)")
        hosts.append(raw)
    return tuple(hosts)


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in env.get(name, "").split(",") if p.strip())


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raises ConfigError naming the first bad one."""
    from wababind.ssrf import callback_url_problem, insecure_callbacks_allowed

    env = os.environ if environ is None else environ
    sinks = _list(env, "OUTCOME_SINKS") or ("log",)
    unknown = [s for s in sinks if s not in SINK_NAMES]
    if unknown:
        raise ConfigError(f"OUTCOME_SINKS: unknown sink {unknown[0]!r} (use log, callback, sls)")

    webhook_auth = env.get("WEBHOOK_AUTH", "").strip().lower()
    if webhook_auth not in ("", "none"):
        raise ConfigError("WEBHOOK_AUTH must be unset or 'none'")
    webhook_secret = _optional(env, "WEBHOOK_SECRET")
    if webhook_secret is not None:
        _check_whsec("WEBHOOK_SECRET", webhook_secret)

    callback_secret = _optional(env, "CALLBACK_SECRET")
    if "callback" in sinks and callback_secret is None:
        raise ConfigError("CALLBACK_SECRET is required when OUTCOME_SINKS has callback")
    if callback_secret is not None:
        _check_whsec("CALLBACK_SECRET", callback_secret)

    insecure = insecure_callbacks_allowed(env)
    callback_url = _optional(env, "CALLBACK_URL")
    if callback_url is not None:
        host = (urlsplit(callback_url).hostname or "").lower()
        problem = callback_url_problem(callback_url, (host,), allow_insecure=insecure)
        if problem is not None:
            raise ConfigError(f"CALLBACK_URL breaks the callback rule {problem[0]!r}")

    sls = {
        "SLS_ENDPOINT": _optional(env, "SLS_ENDPOINT"),
        "SLS_PROJECT": _sls_name(env, "SLS_PROJECT"),
        "SLS_LOGSTORE": _sls_name(env, "SLS_LOGSTORE"),
    }
    if sls["SLS_ENDPOINT"] is not None:
        parse_endpoint(sls["SLS_ENDPOINT"], "SLS_ENDPOINT")
    if "sls" in sinks:
        for name, value in sls.items():
            if value is None:
                raise ConfigError(f"{name} is required when OUTCOME_SINKS has sls")

    redis_url = _optional(env, "REDIS_URL")
    if redis_url is not None:
        check_redis_url(redis_url)
    on_redis_outage = _on_redis_outage(env)

    after_bind, webhook_url, webhook_queue = _after_bind(env)

    return Settings(
        cams_endpoint=parse_endpoint(
            env.get("CAMS_ENDPOINT", "").strip() or "cams.ap-southeast-1.aliyuncs.com"
        ),
        cams_region=_region(env),
        cams_qps=_number(env, "CAMS_QPS", 10, 0.1, 10_000),
        interactive_max_share=_number(env, "INTERACTIVE_MAX_SHARE", 0.5, 0.05, 1),
        cams_timeout_s=_number(env, "CAMS_TIMEOUT_S", 5, 0.1, 300),
        webhook_secret=webhook_secret,
        webhook_auth_none=webhook_auth == "none",
        outcome_sinks=sinks,
        callback_url=callback_url,
        callback_secret=callback_secret,
        callback_allowed_hosts=_hosts(env, "CALLBACK_ALLOWED_HOSTS"),
        insecure_callbacks=insecure,
        sls_endpoint=sls["SLS_ENDPOINT"],
        sls_project=sls["SLS_PROJECT"],
        sls_logstore=sls["SLS_LOGSTORE"],
        redis_url=redis_url,
        idempotency_ttl_s=_number(env, "IDEMPOTENCY_TTL_S", 86400, 1, 366 * 86400),
        on_redis_outage=on_redis_outage,
        after_bind=after_bind,
        account_webhook_url=webhook_url,
        account_webhook_queue=webhook_queue,
    )


def _after_bind(env: Mapping[str, str]) -> tuple[tuple[str, ...], str | None, bool]:
    """AFTER_BIND's steps; with account-webhook, ACCOUNT_WEBHOOK_URL (https) and/or
    ACCOUNT_WEBHOOK_QUEUE=Y, which mean nothing without it."""
    steps = _list(env, "AFTER_BIND")
    for step in steps:
        if step not in AFTER_BIND_STEPS:
            raise ConfigError(f"AFTER_BIND: unknown step (use {', '.join(AFTER_BIND_STEPS)})")
    if len(set(steps)) != len(steps):
        raise ConfigError("AFTER_BIND names a step twice")
    url = _optional(env, "ACCOUNT_WEBHOOK_URL")
    queue = env.get("ACCOUNT_WEBHOOK_QUEUE", "").strip().upper()
    if queue not in ("", "Y", "N"):
        raise ConfigError("ACCOUNT_WEBHOOK_QUEUE must be Y or N")
    if url is not None:
        parts = urlsplit(url)
        _port(parts, "ACCOUNT_WEBHOOK_URL")
        if (
            parts.scheme != "https"
            or not _is_host(parts.hostname or "")
            or "@" in parts.netloc
            or parts.fragment
        ):
            raise ConfigError("ACCOUNT_WEBHOOK_URL must be an https://host/path URL")
    webhook = "account-webhook" in steps
    if webhook and url is None and queue != "Y":
        raise ConfigError(
            "ACCOUNT_WEBHOOK_URL (https) or ACCOUNT_WEBHOOK_QUEUE=Y is required when AFTER_BIND "
            "has account-webhook"
        )
    if not webhook and url is not None:
        raise ConfigError("ACCOUNT_WEBHOOK_URL is set but AFTER_BIND does not name account-webhook")
    if not webhook and queue == "Y":
        raise ConfigError(
            "ACCOUNT_WEBHOOK_QUEUE=Y is set but AFTER_BIND does not name account-webhook"
        )
    return steps, url, queue == "Y"


def _region(env: Mapping[str, str]) -> str:
    region = env.get("CAMS_REGION", "").strip() or "ap-southeast-1"
    if not _REGION.match(region):
        raise ConfigError("CAMS_REGION must be a region id such as ap-southeast-1")
    return region


def _on_redis_outage(env: Mapping[str, str]) -> OnOutage:
    """`wait` (nothing binds on one instance's memory alone) unless `local` is chosen."""
    raw = env.get("ON_REDIS_OUTAGE", "").strip().lower() or "wait"
    for choice in ON_OUTAGE_CHOICES:
        if raw == choice:
            return choice
    raise ConfigError("ON_REDIS_OUTAGE must be 'wait' or 'local'")


def _check_whsec(name: str, value: str) -> None:
    """A Standard Webhooks symmetric secret: `whsec_` + base64 of 16 to 64 random bytes."""
    import base64
    import binascii

    body = value.removeprefix("whsec_")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not value.startswith("whsec_") or not 16 <= len(key) <= 64:
        raise ConfigError(f"{name} must be a Standard Webhooks secret (whsec_ + base64 key)")
