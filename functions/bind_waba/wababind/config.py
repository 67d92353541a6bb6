"""Settings from the environment, validated once; errors name the variable, never its value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from wababind.errors import ConfigError
from wababind.fallback import ON_OUTAGE_CHOICES, OnOutage

SINK_NAMES = ("log", "callback", "sls")


@dataclass(repr=False, eq=False)
class CamsEndpoint:
    """Where CAMS answers (CAMS_ENDPOINT, checked)."""

    host: str
    scheme: str  # "https", or "http" for a loopback simulator
    port: int


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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def parse_cams_endpoint(value: str) -> CamsEndpoint:
    """A bare host means https; `http://host:port` is accepted only for a loopback host."""
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or port == -1:
        raise ConfigError("CAMS_ENDPOINT must be a host name or http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ConfigError("CAMS_ENDPOINT must not carry a path, query or user info")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError("CAMS_ENDPOINT may use plain http only for a loopback host")
    return CamsEndpoint(host, parts.scheme, port or (443 if parts.scheme == "https" else 80))


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

    sls = {n: _optional(env, n) for n in ("SLS_ENDPOINT", "SLS_PROJECT", "SLS_LOGSTORE")}
    if "sls" in sinks:
        for name, value in sls.items():
            if value is None:
                raise ConfigError(f"{name} is required when OUTCOME_SINKS has sls")

    redis_url = _optional(env, "REDIS_URL")
    if redis_url is not None and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL must be a redis://, rediss:// or unix:// URL")
    on_redis_outage = _on_redis_outage(env)

    return Settings(
        cams_endpoint=parse_cams_endpoint(
            env.get("CAMS_ENDPOINT", "").strip() or "cams.ap-southeast-1.aliyuncs.com"
        ),
        cams_region=env.get("CAMS_REGION", "").strip() or "ap-southeast-1",
        cams_qps=_number(env, "CAMS_QPS", 10, 0.1, 10_000),
        interactive_max_share=_number(env, "INTERACTIVE_MAX_SHARE", 0.5, 0.05, 1),
        cams_timeout_s=_number(env, "CAMS_TIMEOUT_S", 5, 0.1, 300),
        webhook_secret=webhook_secret,
        webhook_auth_none=webhook_auth == "none",
        outcome_sinks=sinks,
        callback_url=callback_url,
        callback_secret=callback_secret,
        callback_allowed_hosts=_list(env, "CALLBACK_ALLOWED_HOSTS"),
        insecure_callbacks=insecure,
        sls_endpoint=sls["SLS_ENDPOINT"],
        sls_project=sls["SLS_PROJECT"],
        sls_logstore=sls["SLS_LOGSTORE"],
        redis_url=redis_url,
        idempotency_ttl_s=_number(env, "IDEMPOTENCY_TTL_S", 86400, 1, 366 * 86400),
        on_redis_outage=on_redis_outage,
    )


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
