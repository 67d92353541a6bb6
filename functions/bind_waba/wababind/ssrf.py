"""Callback URL rules: a static check when a request is validated, a DNS check before connecting.

Decisions where SPEC.md is silent: any valid port is accepted (the allow list already names
hosts the operator trusts); a fragment is refused (it is never sent, so it signals a mistake);
a host ending in a dot is refused rather than normalised (it defeats suffix matching).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
UNSAFE_TEST_ENV = "WABABIND_UNSAFE_TEST_CALLBACKS"
UNSAFE_TEST_VALUE = "allow-http-and-loopback"
FC_MARKERS = ("FC_FUNCTION_NAME", "FC_INSTANCE_ID")

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "169.254.169.254", "fd00:ec2::254")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LDH_HOST = re.compile(
    r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$"
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SsrfError(Exception):
    """A callback target refused for safety; `rule` is machine-readable, `message` safe to log."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


def insecure_callbacks_allowed(environ: Mapping[str, str]) -> bool:
    """The test-only escape hatch; never honoured inside Function Compute."""
    if any(environ.get(marker) for marker in FC_MARKERS):
        return False
    return environ.get(UNSAFE_TEST_ENV, "").strip() == UNSAFE_TEST_VALUE


def normalize_host(host: str) -> str | None:
    """Lower-case ASCII (punycode) form of a host name, or None when it cannot be encoded."""
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    return ascii_host.lower()


def _is_ip_literal(host: str) -> bool:
    if ":" in host:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)  # legacy forms: 2130706433, 0177.0.0.1, 0x7f.1, 127.1
        return True
    except OSError:
        return False


def _loopback_literal(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_localhost(host: str) -> bool:
    return host in ("localhost", "localhost.localdomain") or host.endswith(".localhost")


def callback_url_problem(
    url: str, allowed_hosts: Collection[str], *, allow_insecure: bool = False
) -> tuple[str, str] | None:
    """(rule, message) for the first rule `url` breaks, else None. No DNS, no I/O."""
    if len(url) > MAX_URL_LENGTH:
        return "length", f"must have at most {MAX_URL_LENGTH} characters"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "syntax", "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "syntax", "is not a valid URL"
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_insecure and scheme == "http"):
        return "scheme", "must use https"
    if "@" in parts.netloc:
        return "userinfo", "must not carry a user name or password"
    if parts.fragment or url.endswith("#"):
        return "fragment", "must not carry a #fragment"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        return "port", "port must be a number between 1 and 65535"
    raw_host = parts.hostname or ""
    if not raw_host:
        return "host", "must name a host"
    host = normalize_host(raw_host)
    if host is None:
        return "host", "host name is not a valid internationalised name"
    if _is_ip_literal(host):
        if allow_insecure and _loopback_literal(host):
            return None
        return "ip-literal", "must name a host, never a literal IP address"
    if host.endswith("."):
        return "host", "host must not end with a dot"
    if not _LDH_HOST.match(host):
        return "host", "host name has characters a DNS name cannot have"
    if _is_localhost(host):
        return None if allow_insecure else ("host", "must not be localhost")
    if host in METADATA_HOSTS:
        return "host", "must not be a cloud metadata host"
    allowed = {normalize_host(h.strip()) for h in allowed_hosts if h.strip()}
    if host not in allowed:
        return "host", "host is not in CALLBACK_ALLOWED_HOSTS"
    return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_problem(ip: IPAddress, *, allow_insecure: bool = False) -> tuple[str, str] | None:
    """(rule, message) when `ip` is no public unicast address, else None."""
    candidate = _embedded_ipv4(ip) or ip  # a tunnelled IPv4 address is judged by itself
    if ip in METADATA_ADDRESSES or candidate in METADATA_ADDRESSES:
        return "metadata", "resolves to a cloud metadata address"
    if candidate.is_loopback:
        return None if allow_insecure else ("loopback", "resolves to a loopback address")
    if candidate.is_unspecified:
        return "unspecified", "resolves to an unspecified address"
    if candidate.is_link_local:
        return "link-local", "resolves to a link-local address"
    if isinstance(candidate, ipaddress.IPv4Address) and candidate in _CGNAT:
        return "cgnat", "resolves to a carrier-grade NAT address"
    if candidate.is_multicast:
        return "multicast", "resolves to a multicast address"
    if candidate.is_reserved:
        return "reserved", "resolves to a reserved address"
    if candidate.is_private:
        return "private", "resolves to a private address"
    if not candidate.is_global:
        return "reserved", "resolves to an address that is not globally routable"
    return None


def resolve_public(host: str, port: int, *, allow_insecure: bool = False) -> list[str]:
    """Resolve `host` and vet every address; raises SsrfError if any is not public.

    DNS failures propagate as OSError (socket.gaierror): they may be transient.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise SsrfError("address", "resolves to something that is not an IP address") from None
        problem = address_problem(ip, allow_insecure=allow_insecure)
        if problem is not None:
            raise SsrfError(*problem)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise SsrfError("address", "resolves to no address")
    return addresses
