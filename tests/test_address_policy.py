"""The outbound address guard: the policy table, then real requests through a real aiohttp session
against a real local server (loopback is exactly what the guard refuses by default)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pytest_aiohttp.plugin import AiohttpServer

from streams.address_policy import (
    AddressCategory,
    AddressPolicy,
    AddressRefused,
    GuardedResolver,
    allow_local_partners,
    categorize,
    check_url_host,
    make_connector,
    parse_networks,
)

C = AddressCategory

ADDRESSES = [
    # public
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("100.63.255.255", None),  # just below CGNAT
    ("100.128.0.0", None),  # just above CGNAT
    ("172.15.255.255", None),
    ("172.32.0.0", None),
    ("2001:4860:4860::8888", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8
    ("2002:808:808::1", None),  # 6to4 of 8.8.8.8
    # metadata
    ("169.254.169.254", C.METADATA),
    ("169.254.170.2", C.METADATA),
    ("100.100.100.200", C.METADATA),
    ("fd00:ec2::254", C.METADATA),
    ("::ffff:169.254.169.254", C.METADATA),
    ("64:ff9b::a9fe:a9fe", C.METADATA),
    # unspecified / "this network"
    ("0.0.0.0", C.UNSPECIFIED),
    ("0.1.2.3", C.UNSPECIFIED),
    ("::", C.UNSPECIFIED),
    # loopback
    ("127.0.0.1", C.LOOPBACK),
    ("127.255.255.254", C.LOOPBACK),
    ("::1", C.LOOPBACK),
    ("::ffff:127.0.0.1", C.LOOPBACK),
    # private
    ("10.0.0.5", C.PRIVATE),
    ("172.16.0.1", C.PRIVATE),
    ("172.31.255.255", C.PRIVATE),
    ("192.168.1.1", C.PRIVATE),
    ("100.64.0.1", C.PRIVATE),
    ("100.127.255.255", C.PRIVATE),
    ("fd12:3456::1", C.PRIVATE),
    ("fc00::1", C.PRIVATE),
    ("fec0::1", C.PRIVATE),
    ("::ffff:10.0.0.5", C.PRIVATE),
    ("::ffff:192.168.0.1", C.PRIVATE),
    ("64:ff9b::a00:5", C.PRIVATE),  # NAT64 of 10.0.0.5
    ("64:ff9b:1::1", C.PRIVATE),
    ("2002:a00:5::1", C.PRIVATE),  # 6to4 of 10.0.0.5
    # link-local
    ("169.254.1.1", C.LINK_LOCAL),
    ("fe80::1", C.LINK_LOCAL),
    ("fe80::1%eth0", C.LINK_LOCAL),
    # multicast
    ("224.0.0.1", C.MULTICAST),
    ("239.255.255.250", C.MULTICAST),
    ("ff02::1", C.MULTICAST),
    ("::ffff:224.0.0.1", C.MULTICAST),
    # reserved, documentation, benchmarking, broadcast
    ("255.255.255.255", C.RESERVED),
    ("240.0.0.1", C.RESERVED),
    ("192.0.0.8", C.RESERVED),
    ("192.0.2.1", C.RESERVED),
    ("198.51.100.1", C.RESERVED),
    ("203.0.113.1", C.RESERVED),
    ("198.18.0.1", C.RESERVED),
    ("2001:db8::1", C.RESERVED),
    ("2001::1", C.RESERVED),  # Teredo
    ("100::1", C.RESERVED),
    ("::1.2.3.4", C.RESERVED),  # deprecated IPv4-compatible
    ("4000::1", C.RESERVED),  # outside 2000::/3 global unicast
]


@pytest.mark.parametrize(("address", "category"), ADDRESSES)
def test_default_policy_refuses_every_non_public_address(
    address: str, category: AddressCategory | None
) -> None:
    assert categorize(ipaddress.ip_address(address)) is category
    assert AddressPolicy().permits(address) is (category is None)


@pytest.mark.parametrize(
    ("policy", "address", "permitted"),
    [
        (AddressPolicy(allow_private=True), "10.0.0.5", True),
        (AddressPolicy(allow_private=True), "100.64.0.1", True),
        (AddressPolicy(allow_private=True), "fd12::1", True),
        (AddressPolicy(allow_private=True), "::ffff:192.168.0.1", True),
        (AddressPolicy(allow_private=True), "127.0.0.1", False),
        (AddressPolicy(allow_private=True), "169.254.1.1", False),
        (AddressPolicy(allow_loopback=True), "127.0.0.1", True),
        (AddressPolicy(allow_loopback=True), "::1", True),
        (AddressPolicy(allow_loopback=True), "::ffff:127.0.0.1", True),
        (AddressPolicy(allow_loopback=True), "10.0.0.5", False),
        (AddressPolicy(allow_loopback=True), "0.0.0.0", False),
        (AddressPolicy(allowed_networks=parse_networks(["10.1.0.0/16"])), "10.1.2.3", True),
        (AddressPolicy(allowed_networks=parse_networks(["10.1.0.0/16"])), "::ffff:10.1.2.3", True),
        (AddressPolicy(allowed_networks=parse_networks(["10.1.0.0/16"])), "10.2.0.1", False),
        (AddressPolicy(allowed_networks=parse_networks(["169.254.0.0/16"])), "169.254.1.1", True),
    ],
)
def test_policy_switches_admit_only_their_own_category(
    policy: AddressPolicy, address: str, permitted: bool
) -> None:
    assert policy.permits(address) is permitted


@pytest.mark.parametrize("address", ["169.254.169.254", "100.100.100.200", "fd00:ec2::254"])
def test_metadata_needs_its_exact_address_listed(address: str) -> None:
    """Not allow_private (two metadata addresses sit in private space), not a wide allowed range."""
    ip = ipaddress.ip_address(address)
    wide = ipaddress.ip_network(f"{address}/{ip.max_prefixlen - 16}", strict=False)
    everything = ipaddress.ip_network("0.0.0.0/0" if ip.version == 4 else "::/0")
    assert not AddressPolicy(allow_private=True, allow_loopback=True).permits(ip)
    assert not AddressPolicy(allowed_networks=(wide, everything)).permits(ip)
    assert AddressPolicy(allowed_networks=(ipaddress.ip_network(address),)).permits(ip)


def test_refusal_names_the_address_the_category_and_the_setting() -> None:
    policy = AddressPolicy()
    assert policy.refusal("10.0.0.5") == (
        "10.0.0.5 is a private address (set allow_private_networks on the integration to allow, "
        "or run with --allow-loopback while developing)"
    )
    assert "set allow_loopback" in (policy.refusal("::ffff:127.0.0.1") or "")
    assert "(IPv4 127.0.0.1)" in (policy.refusal("::ffff:127.0.0.1") or "")
    assert "list exactly 169.254.169.254/32 in allowed_networks" in (policy.refusal("169.254.169.254") or "")
    assert policy.refusal("not-an-ip") == "'not-an-ip' is not an IP address"
    assert policy.refusal("93.184.215.14") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "https://10.0.0.5:8443/x",
        "http://[::1]/",
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://0.0.0.0:8080/",
        "http://2130706433/",  # 127.0.0.1 in legacy decimal form
        "http://127.1/",  # 127.0.0.1 in legacy short form
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
    ],
)
def test_check_url_host_refuses_literal_non_public_hosts(url: str) -> None:
    with pytest.raises(AddressRefused):
        check_url_host(url, AddressPolicy())


@pytest.mark.parametrize(
    "url", ["https://api.example.com/v1", "http://8.8.8.8/", "http://[2606:4700::1111]/"]
)
def test_check_url_host_passes_public_literals_and_leaves_names_to_the_resolver(url: str) -> None:
    check_url_host(url, AddressPolicy())


# --- real requests -----------------------------------------------------------------------------


class StaticResolver(AbstractResolver):
    """Our own resolver interface, answering from a table instead of DNS; records what it was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.queries: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.queries.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in self.table[host]
        ]

    async def close(self) -> None:
        pass


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def server_port(aiohttp_server: AiohttpServer) -> int:
    app = web.Application()
    app.router.add_get("/", _hello)
    server = await aiohttp_server(app)
    assert server.port is not None
    return server.port


async def fetch(
    policy: AddressPolicy, url: str, resolver: AbstractResolver | None = None, use_ssl: bool = True
) -> str:
    connector = make_connector(
        policy, limit=10, keepalive_timeout=5, ttl_dns_cache=10, ssl=use_ssl, inner_resolver=resolver
    )
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as response:
        response.raise_for_status()
        return await response.text()


async def test_loopback_server_is_refused_by_default(server_port: int) -> None:
    with pytest.raises(AddressRefused) as refused:
        await fetch(AddressPolicy(), f"http://127.0.0.1:{server_port}/")
    assert isinstance(refused.value, aiohttp.ClientError)  # the engine reports it as a connection error
    assert str(refused.value) == (
        "refused: 127.0.0.1 is a loopback address (set allow_loopback on the integration to allow, "
        "or run with --allow-loopback while developing)"
    )


async def test_loopback_server_is_reachable_when_allowed(server_port: int) -> None:
    assert await fetch(AddressPolicy(allow_loopback=True), f"http://127.0.0.1:{server_port}/") == "hello"


@pytest.fixture
def local_partners() -> Iterator[None]:
    """The development switch on for one test (it is process-wide), off again after."""
    allow_local_partners(True)
    yield
    allow_local_partners(False)


async def test_the_development_switch_admits_loopback_for_every_policy(server_port: int) -> None:
    url = f"http://127.0.0.1:{server_port}/"
    with pytest.raises(AddressRefused):
        check_url_host(url, AddressPolicy())  # asked once: the answer is cached per host and policy
    allow_local_partners(True)
    try:
        assert await fetch(AddressPolicy(), url) == "hello"  # the cached refusal was dropped
    finally:
        allow_local_partners(False)
    with pytest.raises(AddressRefused):
        await fetch(AddressPolicy(), url)


@pytest.mark.usefixtures("local_partners")
@pytest.mark.parametrize(
    ("address", "permitted"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.5", True),  # a compose network, a partner stand-in in the cluster
        ("192.168.1.20", True),
        ("169.254.169.254", False),  # a metadata endpoint hands out credentials: never by a switch
        ("fd00:ec2::254", False),
        ("169.254.1.1", False),  # link-local
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_the_development_switch_admits_loopback_and_private_only(address: str, permitted: bool) -> None:
    assert AddressPolicy().permits(address) is permitted


async def test_hostname_resolving_to_a_private_address_is_refused(server_port: int) -> None:
    resolver = StaticResolver({"partner.test": ["10.0.0.5"]})
    with pytest.raises(
        AddressRefused, match=r"partner\.test resolves only to refused addresses: 10\.0\.0\.5 is"
    ):
        await fetch(AddressPolicy(), f"http://partner.test:{server_port}/", resolver)
    assert resolver.queries == ["partner.test"]


async def test_hostname_is_judged_on_its_answers_not_its_name(server_port: int) -> None:
    resolver = StaticResolver({"partner.test": ["127.0.0.1"]})
    url = f"http://partner.test:{server_port}/"
    with pytest.raises(AddressRefused, match="loopback"):
        await fetch(AddressPolicy(), url, resolver)
    assert await fetch(AddressPolicy(allow_loopback=True), url, resolver) == "hello"


async def test_refused_answers_are_dropped_and_permitted_ones_kept() -> None:
    """A rebinding attacker answering with a public and a private address gets only the public one."""
    inner = StaticResolver({"partner.test": ["10.0.0.5", "8.8.8.8", "::ffff:192.168.0.1", "2606:4700::1111"]})
    answers = await GuardedResolver(inner, AddressPolicy()).resolve("partner.test", 443)
    assert [answer["host"] for answer in answers] == ["8.8.8.8", "2606:4700::1111"]


async def test_only_permitted_answers_are_connected_to(aiohttp_server: AiohttpServer) -> None:
    """Two servers on one port, 127.0.0.1 (allowed) and 127.0.0.2 (refused), and a name answering with
    the refused one first: had it been kept, the connector would have reached the 127.0.0.2 server."""

    def answering(text: str) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=text)

        app = web.Application()
        app.router.add_get("/", handler)
        return app

    allowed = await aiohttp_server(answering("allowed"), host="127.0.0.1")
    await aiohttp_server(answering("refused"), host="127.0.0.2", port=allowed.port)
    resolver = StaticResolver({"partner.test": ["127.0.0.2", "127.0.0.1"]})
    policy = AddressPolicy(allowed_networks=parse_networks(["127.0.0.1/32"]))
    assert await fetch(policy, f"http://partner.test:{allowed.port}/", resolver) == "allowed"


async def test_metadata_hostname_is_refused_without_a_dns_query() -> None:
    resolver = StaticResolver({"metadata.google.internal": ["169.254.169.254"]})
    everything = AddressPolicy(allow_private=True, allow_loopback=True)
    with pytest.raises(AddressRefused, match="cloud metadata hostname"):
        await fetch(everything, "http://metadata.google.internal/computeMetadata/v1/", resolver)
    assert resolver.queries == []


async def test_the_system_resolver_is_guarded_too() -> None:
    """No inner resolver given: getaddrinfo answers 'localhost' from /etc/hosts, and it is refused."""
    with pytest.raises(AddressRefused, match="localhost resolves only to refused addresses"):
        await fetch(AddressPolicy(), "http://localhost:9/")


async def test_redirect_to_a_refused_literal_is_refused(aiohttp_server: AiohttpServer) -> None:
    """Redirect targets never reach the resolver when they are IP literals; the connector checks them."""

    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.2:{request.url.port}/")

    app = web.Application()
    app.router.add_get("/", bounce)
    server = await aiohttp_server(app)
    policy = AddressPolicy(allowed_networks=parse_networks(["127.0.0.1/32"]))
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.2 is a loopback address"):
        await fetch(policy, f"http://127.0.0.1:{server.port}/")


async def test_tls_certificates_are_verified_by_default(
    aiohttp_server: AiohttpServer, self_signed: ssl.SSLContext
) -> None:
    app = web.Application()
    app.router.add_get("/", _hello)
    server = await aiohttp_server(app, ssl=self_signed)
    url = f"https://127.0.0.1:{server.port}/"
    policy = AddressPolicy(allow_loopback=True)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await fetch(policy, url)
    # The same server is fine once verification is switched off: the failure above was verification.
    assert await fetch(policy, url, use_ssl=False) == "hello"
