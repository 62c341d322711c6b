"""MX routing: ordering and null MX rules (pure), and lookups against a loopback DNS server."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.names import error

from gateway.settings import Endpoint
from outbound.mx import MxHosts, MxResolver, NoRoute, is_nxdomain, order_mx, route_from_mx
from tests.conftest import DnsZone
from tests.redis_server import free_port

# --- pure: ordering ---


def test_order_by_preference() -> None:
    records = [(20, "b.example.com"), (10, "a.example.com."), (30, "C.example.com")]
    assert order_mx(records, random.Random(1)) == [
        "a.example.com",
        "b.example.com",
        "c.example.com",
    ]


def test_equal_preferences_are_shuffled() -> None:
    records = [(10, "a.test"), (10, "b.test"), (10, "c.test"), (5, "first.test"), (20, "z.test")]
    seen = Counter(tuple(order_mx(records, random.Random(seed))) for seed in range(300))
    assert len(seen) == 6  # every order of the three equal hosts
    assert all(o[0] == "first.test" and o[-1] == "z.test" for o in seen)


def test_a_host_listed_twice_keeps_its_best_preference() -> None:
    records = [(30, "a.test"), (10, "b.test"), (5, "A.test.")]
    assert order_mx(records, random.Random(0)) == ["a.test", "b.test"]


@given(
    st.lists(
        st.tuples(st.integers(0, 65535), st.sampled_from(["a.t", "b.t", "c.t", "d.t", ".", ""])),
        max_size=12,
    ),
    st.integers(),
)
def test_order_properties(records: list[tuple[int, str]], seed: int) -> None:
    hosts = order_mx(records, random.Random(seed))
    named = {name for _, name in records if name not in (".", "")}
    assert sorted(hosts) == sorted(named)  # each real host once, "." never
    best = {h: min(p for p, n in records if n == h) for h in hosts}
    assert [best[h] for h in hosts] == sorted(best[h] for h in hosts)


# --- pure: routes ---


def test_route_from_mx() -> None:
    rng = random.Random(0)
    assert route_from_mx("example.com", [(10, "mx.example.com")], rng) == MxHosts(
        ("mx.example.com",)
    )
    # RFC 5321 §5.1: no MX record, the domain is its own mail host
    assert route_from_mx("example.com", [], rng) == MxHosts(("example.com",), implicit=True)


@pytest.mark.parametrize("null", ["", "."])
def test_null_mx_bounces(null: str) -> None:
    route = route_from_mx("example.com", [(0, null)], random.Random(0))
    assert isinstance(route, NoRoute) and route.status == "bounced"
    assert "null MX" in route.reason


def test_null_mx_beside_real_mx_is_ignored() -> None:
    route = route_from_mx("example.com", [(0, "."), (10, "mx.example.com")], random.Random(0))
    assert route == MxHosts(("mx.example.com",))


@pytest.mark.parametrize(
    ("exc", "nxdomain"),
    [
        (error.DNSNameError(), True),
        (error.DomainError(), True),
        (error.DNSServerError(), False),
        (error.DNSQueryRefusedError(), False),
        (error.DNSQueryTimeoutError(None), False),  # type: ignore[no-untyped-call]
        (OSError(), False),
    ],
)
def test_is_nxdomain(exc: BaseException, nxdomain: bool) -> None:
    assert is_nxdomain(exc) is nxdomain


# --- lookups on the loopback DNS server ---


@pytest.fixture
def resolver(dns_zone: DnsZone) -> MxResolver:
    return MxResolver([Endpoint("127.0.0.1", dns_zone.port)], random.Random(0))


async def test_route_orders_mx_records(dns_zone: DnsZone, resolver: MxResolver) -> None:
    dns_zone.set(
        "example.com",
        ["MX", 20, "backup.example.com"],
        ["MX", 10, "mx1.example.com"],
        ["A", "127.0.0.9"],
    )
    assert await resolver.route("example.com") == MxHosts(("mx1.example.com", "backup.example.com"))


async def test_route_of_a_missing_domain(resolver: MxResolver) -> None:
    route = await resolver.route("nowhere.example")
    assert isinstance(route, NoRoute) and route.status == "bounced"
    assert route.reason.startswith("5.1.2")


async def test_route_without_mx(dns_zone: DnsZone, resolver: MxResolver) -> None:
    dns_zone.set("example.com", ["A", "127.0.0.1"])
    assert await resolver.route("example.com") == MxHosts(("example.com",), implicit=True)


async def test_null_mx(dns_zone: DnsZone, resolver: MxResolver) -> None:
    dns_zone.set("example.com", ["MX", 0, "."])
    route = await resolver.route("example.com")
    assert isinstance(route, NoRoute) and route.status == "bounced"


async def test_addresses_ipv4_first(dns_zone: DnsZone, resolver: MxResolver) -> None:
    dns_zone.set("mx.example.com", ["AAAA", "::1"], ["A", "127.0.0.1"], ["A", "127.0.0.2"])
    assert await resolver.addresses("mx.example.com") == (["127.0.0.1", "127.0.0.2", "::1"], None)
    assert await resolver.addresses("gone.example.com") == ([], None)


async def test_unreachable_dns_server_defers() -> None:
    silent = MxResolver([Endpoint("127.0.0.1", free_port())], timeout=(0.2, 0.2))
    route = await silent.route("example.com")
    assert isinstance(route, NoRoute) and route.status == "deferred"
