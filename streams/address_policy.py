"""Outbound address guard: flows are written by integrators and fed by leads, so a URL template must not
become a way to reach the cluster's private network, loopback services or a cloud metadata endpoint (SSRF).

Two checks, both inside the connector so they hold for every hop of every request, redirects included:

* ``GuardedResolver`` wraps an aiohttp resolver and drops answers the policy refuses. The connector only
  ever connects to addresses the resolver returned (and its DNS cache only holds filtered answers), so
  a hostname that re-resolves to ``10.x`` between "check" and "connect" (DNS rebinding) cannot slip past.
* ``GuardedConnector.connect`` checks literal IP hosts, because aiohttp's ``TCPConnector`` never calls the
  resolver for them (``_resolve_host`` returns an IP host as-is). ``check_url_host`` is that same check,
  public so the loader can reject a literal private ``base_url`` before any lead arrives.

Development: ``allow_local_partners()`` (the CLI's ``--allow-loopback`` on ``try``/``test``/``worker``,
or ``LEADSTREAMS_ALLOW_LOOPBACK=1``) admits loopback and private addresses for every integration of the
process, so a flow reaches a local partner stand-in unchanged; the engine never reads the variable itself.

Not covered: requests sent through an HTTP proxy (the proxy resolves the target). ``HttpClient`` does not
use proxies (``trust_env`` is off); keep it that way or the guard only sees the proxy's address.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

if TYPE_CHECKING:
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Integration settings named in refusal messages, so an operator knows what to change.
ALLOW_PRIVATE_SETTING = "allow_private_networks"
ALLOW_LOOPBACK_SETTING = "allow_loopback"
ALLOWED_NETWORKS_SETTING = "allowed_networks"
# The development switch (``try``/``test``/``worker``), named in loopback and private refusals.
LOCAL_PARTNERS_SWITCH = "--allow-loopback"
LOCAL_PARTNERS_ENV = "LEADSTREAMS_ALLOW_LOOPBACK"


class AddressCategory(enum.Enum):
    """Why an address is not public; the value reads as "<ip> is <value>"."""

    METADATA = "a cloud metadata address"
    LOOPBACK = "a loopback address"
    PRIVATE = "a private address"
    LINK_LOCAL = "a link-local address"
    UNSPECIFIED = "an unspecified address"
    MULTICAST = "a multicast address"
    RESERVED = "a reserved (non-public) address"


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# First match wins, so the narrow metadata entries sit before the private/link-local ranges holding them.
_CATEGORY_TABLE: tuple[tuple[AddressCategory, tuple[IPNetwork, ...]], ...] = (
    (
        AddressCategory.METADATA,
        _nets(
            "169.254.169.254/32",  # AWS, GCP, Azure, OCI, DigitalOcean, ...
            "169.254.170.2/32",  # AWS ECS task metadata / credentials
            "100.100.100.200/32",  # Alibaba Cloud (inside CGNAT 100.64/10)
            "fd00:ec2::254/128",  # AWS IMDS over IPv6 (inside ULA fc00::/7)
        ),
    ),
    (AddressCategory.UNSPECIFIED, _nets("0.0.0.0/8", "::/128")),  # 0.0.0.0 reaches localhost on Linux
    (AddressCategory.LOOPBACK, _nets("127.0.0.0/8", "::1/128")),
    (
        AddressCategory.PRIVATE,
        _nets(
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",  # carrier-grade NAT / shared address space (also used by Tailscale etc.)
            "fc00::/7",  # unique local
            "fec0::/10",  # deprecated site-local
            "64:ff9b:1::/48",  # local-use NAT64
        ),
    ),
    (AddressCategory.LINK_LOCAL, _nets("169.254.0.0/16", "fe80::/10")),
    (AddressCategory.MULTICAST, _nets("224.0.0.0/4", "ff00::/8")),
    (
        AddressCategory.RESERVED,
        _nets(
            "192.0.0.0/24",  # IETF protocol assignments
            "192.0.2.0/24",  # documentation
            "198.51.100.0/24",  # documentation
            "203.0.113.0/24",  # documentation
            "198.18.0.0/15",  # benchmarking
            "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
            "240.0.0.0/4",  # reserved, includes 255.255.255.255 broadcast
            "::/96",  # deprecated IPv4-compatible IPv6
            "100::/64",  # discard-only
            "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
            "2001:db8::/32",  # documentation
            "3fff::/20",  # documentation
        ),
    ),
)

# IPv6 ranges that carry an IPv4 address the packets end up at: judge that IPv4 address instead.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")

# Well-known names of metadata services, refused before any DNS query is made.
METADATA_HOSTNAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 IPv6 address actually reaches."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def categorize(ip: IPAddress) -> AddressCategory | None:
    """The non-public category of ``ip``, or None for a public address."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return categorize(embedded)
    for category, networks in _CATEGORY_TABLE:
        if any(ip in network for network in networks):
            return category
    # Everything public in IPv6 is inside 2000::/3; anything else is unassigned or special.
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return AddressCategory.RESERVED
    return None


def _parse(address: str | IPAddress) -> IPAddress | None:
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which non-public addresses one integration may reach. The default refuses them all.

    ``allowed_networks`` is the escape hatch and wins over every category, with one deliberate
    exception: a cloud metadata address is only permitted by an entry naming exactly that address
    (``169.254.169.254/32``), never by a wider range such as ``169.254.0.0/16`` listed for some other
    purpose, and never by ``allow_private`` (Alibaba's 100.100.100.200 sits in CGNAT space and AWS's
    fd00:ec2::254 in ULA space, both of which ``allow_private`` covers). Metadata endpoints hand out
    cloud credentials, so reaching one must be an explicit, single-address decision.

    ``allow_private`` covers RFC 1918, CGNAT (100.64/10) and IPv6 unique-local/site-local space;
    ``allow_loopback`` covers 127/8 and ::1. Link-local, unspecified, multicast and reserved
    addresses are only reachable through ``allowed_networks``.
    """

    allow_private: bool = False
    allow_loopback: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, address: str | IPAddress) -> str | None:
        """None when ``address`` may be reached, otherwise why not (with the setting that would allow it)."""
        ip = _parse(address)
        if ip is None:
            return f"{address!r} is not an IP address"
        category = categorize(ip)
        if category is None or self._listed(ip, category):
            return None
        if category is AddressCategory.PRIVATE and (self.allow_private or _switch.on):
            return None
        if category is AddressCategory.LOOPBACK and (self.allow_loopback or _switch.on):
            return None
        embedded = _embedded_ipv4(ip)
        shown = str(ip) if embedded is None else f"{ip} (IPv4 {embedded})"
        return f"{shown} is {category.value} ({_hint(category, embedded or ip)})"

    def permits(self, address: str | IPAddress) -> bool:
        return self.refusal(address) is None

    def _listed(self, ip: IPAddress, category: AddressCategory) -> bool:
        # Judge the embedded IPv4 too, so listing 10.0.0.0/8 also admits ::ffff:10.0.0.5.
        candidates = [ip] if (embedded := _embedded_ipv4(ip)) is None else [ip, embedded]
        for network in self.allowed_networks:
            if category is AddressCategory.METADATA and network.prefixlen != network.max_prefixlen:
                continue
            if any(candidate in network for candidate in candidates):
                return True
        return False


class _LocalPartners:
    """The process-wide development switch: loopback and private addresses for every integration.

    Process-wide rather than per integration because it is the operator's decision for one run
    (a partner stand-in on this machine or in a compose network), not the flow author's: the flow
    stays as it ships. Metadata, link-local and reserved addresses stay refused: no local partner
    lives there, and a metadata endpoint hands out credentials."""

    on = False


_switch = _LocalPartners()


def allow_local_partners(on: bool = True) -> None:
    """Turn the development switch on or off for this process (``--allow-loopback``)."""
    _switch.on = on
    _host_refusal.cache_clear()  # its answers were computed under the other setting


def local_partners_allowed() -> bool:
    return _switch.on


def _hint(category: AddressCategory, ip: IPAddress) -> str:
    if category is AddressCategory.LOOPBACK:
        return (
            f"set {ALLOW_LOOPBACK_SETTING} on the integration to allow, "
            f"or run with {LOCAL_PARTNERS_SWITCH} while developing"
        )
    if category is AddressCategory.PRIVATE:
        return (
            f"set {ALLOW_PRIVATE_SETTING} on the integration to allow, "
            f"or run with {LOCAL_PARTNERS_SWITCH} while developing"
        )
    if category is AddressCategory.METADATA:
        exact = f"{ip}/{ip.max_prefixlen}"
        return f"list exactly {exact} in {ALLOWED_NETWORKS_SETTING} on the integration to allow"
    return f"list it in {ALLOWED_NETWORKS_SETTING} on the integration to allow"


class AddressRefused(aiohttp.ClientConnectionError):
    """The guard refused to connect. A ``ClientConnectionError`` (not an ``OSError``) so aiohttp lets it
    through unwrapped and the engine reports it as a connection error with this message."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"refused: {reason}")
        self.host = host
        self.reason = reason


def _refuse_metadata_hostname(host: str) -> None:
    if (reason := _metadata_hostname(host)) is not None:
        raise AddressRefused(host, reason)


def _metadata_hostname(host: str) -> str | None:
    name = host.rstrip(".").lower()
    if name in METADATA_HOSTNAMES:
        return f"{name} is a cloud metadata hostname (use its address in {ALLOWED_NETWORKS_SETTING})"
    return None


def check_url_host(url: URL | str, policy: AddressPolicy) -> None:
    """Raise ``AddressRefused`` if ``url``'s host is a refused IP literal or a metadata hostname.

    Other hostnames pass: they are judged on what they resolve to, at connection time, by
    ``GuardedResolver``. The connector runs this on every request; the loader may run it early.
    """
    host = URL(url).raw_host if isinstance(url, str) else url.raw_host
    if host and (reason := _host_refusal(host, policy)) is not None:
        raise AddressRefused(host, reason)


@functools.lru_cache(maxsize=4096)  # every request asks: one answer per host and policy
def _host_refusal(host: str, policy: AddressPolicy) -> str | None:
    ip = _parse(host)
    if ip is None:
        # aiohttp treats an all-digits-and-dots host as an IP literal and hands it to the socket
        # unresolved, where "2130706433" or "127.1" means 127.0.0.1: refuse non-canonical forms.
        if host.replace(".", "").isdigit():
            return f"{host} is not a canonical IPv4 address"
        return _metadata_hostname(host)
    return policy.refusal(ip)


class GuardedResolver(AbstractResolver):
    """Resolve with ``inner``, then keep only the answers ``policy`` permits.

    A name with some permitted answers resolves to those alone (a rebinding attacker mixing a public
    and a private answer gets the public one); a name with none raises ``AddressRefused``.
    """

    def __init__(self, inner: AbstractResolver, policy: AddressPolicy) -> None:
        self.inner = inner
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        _refuse_metadata_hostname(host)
        answers = await self.inner.resolve(host, port, family)
        permitted: list[ResolveResult] = []
        reasons: list[str] = []
        for answer in answers:
            reason = self.policy.refusal(answer["host"])
            if reason is None:
                permitted.append(answer)
            else:
                reasons.append(reason)
        if not permitted:
            if not reasons:  # an empty answer is the inner resolver's business, not a refusal
                return answers
            raise AddressRefused(host, f"{host} resolves only to refused addresses: {'; '.join(reasons)}")
        return permitted

    async def close(self) -> None:
        await self.inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that can only resolve through a ``GuardedResolver`` and checks IP literals.

    Builds the guarded resolver itself so a guarded connector with an unguarded resolver cannot exist.
    """

    def __init__(
        self, policy: AddressPolicy, *, inner_resolver: AbstractResolver | None = None, **kwargs: Any
    ) -> None:
        # ThreadedResolver (getaddrinfo) rather than DefaultResolver: it holds no resources, so it
        # needs no closing, and it honours /etc/hosts like the rest of the system.
        inner = inner_resolver if inner_resolver is not None else aiohttp.ThreadedResolver()
        self.policy = policy
        self.guarded_resolver = GuardedResolver(inner, policy)
        super().__init__(resolver=self.guarded_resolver, **kwargs)

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        # Every request and every redirect hop comes through here, pooled connection or not.
        check_url_host(req.url, self.policy)
        return await super().connect(req, traces, timeout)


def make_connector(
    policy: AddressPolicy,
    limit: int,
    keepalive_timeout: float,
    ttl_dns_cache: int | None,
    ssl: bool = True,
    inner_resolver: AbstractResolver | None = None,
) -> GuardedConnector:
    """The per-integration connector. ``ssl=True`` keeps aiohttp's default: certificates verified."""
    return GuardedConnector(
        policy,
        inner_resolver=inner_resolver,
        limit=limit,
        keepalive_timeout=keepalive_timeout,
        ttl_dns_cache=ttl_dns_cache,
        ssl=ssl,
    )


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``allowed_networks`` from config strings; a bare address means that single host."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=True) for cidr in cidrs)
