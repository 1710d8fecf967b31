"""The HTTP egress policy: which addresses an HTTP task may connect to (pure, no I/O)."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partita.actors.egress import LOOPBACK, EgressPolicy, parse_entry

DEFAULT = EgressPolicy()


def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("text", "kind", "network"),
    [
        ("127.0.0.1", "loopback", "127.0.0.0/8"),
        ("127.255.0.9", "loopback", "127.0.0.0/8"),
        ("::1", "loopback", "::1/128"),
        ("169.254.169.254", "link-local", "169.254.0.0/16"),
        ("fe80::1", "link-local", "fe80::/10"),
        ("10.1.2.3", "private", "10.0.0.0/8"),
        ("172.16.0.1", "private", "172.16.0.0/12"),
        ("172.31.255.255", "private", "172.16.0.0/12"),
        ("192.168.1.1", "private", "192.168.0.0/16"),
        ("fd12:3456::1", "private", "fc00::/7"),
        ("100.64.0.1", "shared (carrier-grade NAT)", "100.64.0.0/10"),
        ("0.0.0.0", "unspecified", "0.0.0.0/8"),
        ("::", "unspecified", "::/128"),
        ("224.0.0.1", "multicast", "224.0.0.0/4"),
        ("ff02::1", "multicast", "ff00::/8"),
        ("240.0.0.1", "reserved", "240.0.0.0/4"),
        ("255.255.255.255", "reserved", "240.0.0.0/4"),
        ("192.0.2.7", "reserved", "192.0.2.0/24"),
        ("2001:db8::1", "reserved", "2001:db8::/32"),
        ("2001::1", "reserved", "2001::/23"),  # Teredo
        ("::127.0.0.1", "reserved", "::7f00:1/128"),  # IPv4-compatible (deprecated): outside 2000::/3
        ("64:ff9b:1::1", "private", "64:ff9b:1::/48"),
    ],
)
def test_internal_addresses_are_refused_by_default_and_the_refusal_names_the_range(
    text: str, kind: str, network: str
) -> None:
    refusal = DEFAULT.check(address(text))
    assert refusal is not None
    assert (refusal.kind, str(refusal.network)) == (kind, network)


@pytest.mark.parametrize(
    ("text", "reaches", "network"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1", "127.0.0.0/8"),
        ("::ffff:169.254.169.254", "169.254.169.254", "169.254.0.0/16"),
        ("64:ff9b::10.0.0.1", "10.0.0.1", "10.0.0.0/8"),  # NAT64, well-known prefix
        ("2002:c0a8:0101::1", "192.168.1.1", "192.168.0.0/16"),  # 6to4
    ],
)
def test_ipv6_forms_that_embed_an_internal_ipv4_address_are_refused_like_it(
    text: str, reaches: str, network: str
) -> None:
    refusal = DEFAULT.check(address(text))
    assert refusal is not None
    assert (str(refusal.embedded), str(refusal.network)) == (reaches, network)


@pytest.mark.parametrize(
    "text", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"]
)
def test_public_addresses_are_allowed(text: str) -> None:
    assert DEFAULT.check(address(text)) is None


def test_the_reason_names_the_address_the_host_and_how_to_allow_it() -> None:
    refusal = DEFAULT.check(address("127.0.0.1"), "localhost")
    assert refusal is not None
    assert refusal.reason == (
        "HTTP task refused: 127.0.0.1 (localhost) is a loopback address; "
        "allow it with --http-allow 127.0.0.0/8 (PARTITA_HTTP_ALLOW)"
    )
    metadata = DEFAULT.check(address("169.254.169.254"), "169.254.169.254")
    assert metadata is not None
    assert metadata.reason == (
        "HTTP task refused: 169.254.169.254 is a link-local address (the cloud metadata service); "
        "allow it with --http-allow 169.254.0.0/16 (PARTITA_HTTP_ALLOW)"
    )
    mapped = DEFAULT.check(address("::ffff:127.0.0.1"), "::ffff:127.0.0.1")
    assert mapped is not None
    assert mapped.reason.startswith("HTTP task refused: ::ffff:127.0.0.1 is a loopback address (reaching 127.0.0.1);")
    assert "\n" not in mapped.reason


def test_an_allowed_network_is_reachable_in_every_form_and_nothing_else_is() -> None:
    policy = EgressPolicy.parse(["127.0.0.0/8", "10.1.0.0/16"])
    for text in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3", "64:ff9b::10.1.2.3"):
        assert policy.check(address(text)) is None, text
    for text in ("::1", "10.2.0.1", "169.254.169.254", "192.168.1.1"):
        assert policy.check(address(text)) is not None, text


def test_partita_devs_loopback_default_allows_loopback_only() -> None:
    policy = EgressPolicy.parse(LOOPBACK)
    assert policy.check(address("127.0.0.1")) is None
    assert policy.check(address("::1")) is None
    assert policy.check(address("169.254.169.254")) is not None
    assert policy.check(address("10.0.0.1")) is not None


def test_an_allowed_host_name_may_reach_whatever_it_resolves_to_and_other_names_may_not() -> None:
    policy = EgressPolicy.parse(["API.internal."])
    assert policy.hosts == frozenset({"api.internal"})
    assert policy.check(address("10.0.0.5"), "api.internal") is None
    assert policy.check(address("10.0.0.5"), "API.Internal.") is None
    refusal = policy.check(address("10.0.0.5"), "other.internal")
    assert refusal is not None
    assert "10.0.0.5 (other.internal) is a private address" in refusal.reason


def test_everything_can_be_allowed_explicitly() -> None:
    policy = EgressPolicy.parse(["0.0.0.0/0", "::/0"])
    for text in ("127.0.0.1", "::1", "169.254.169.254", "::ffff:10.0.0.1", "ff02::1"):
        assert policy.check(address(text)) is None


def test_allow_list_entries_are_parsed_and_listed_as_given() -> None:
    policy = EgressPolicy.parse([" 10.0.0.0/8", "10.1.2.3", "::1", "localhost", "10.0.0.0/8"])
    assert policy.entries() == ["10.0.0.0/8", "10.1.2.3/32", "::1/128", "localhost"]
    assert EgressPolicy.parse([]).entries() == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "an empty entry: give a network (10.0.0.0/8), an address or a host name"),
        ("10.0.0.1/8", "'10.0.0.1/8' has bits set past its prefix length: did you mean 10.0.0.0/8?"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a network (10.0.0.0/8), an address (10.1.2.3, ::1) or a host name"),
        ("256.1.1.1", "'256.1.1.1' is not a network"),
        ("10.0.0", "'10.0.0' is not a network"),
        ("::g", "'::g' is not a network"),
        ("two words", "'two words' is not a network"),
        ("http://example.com", "'http://example.com' is not a network"),
        ("-bad.example", "'-bad.example' is not a network"),
        ("a..b", "'a..b' is not a network"),
        ("x" * 64 + ".example", "is not a network"),
    ],
)
def test_a_bad_allow_list_entry_is_refused_with_one_line_naming_it(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        EgressPolicy.parse(["127.0.0.0/8", entry])
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("entry", ["10.0.0.0/8", "10.1.2.3", "::1", "fc00::/7", "localhost", "api.example.com"])
def test_good_entries_parse(entry: str) -> None:
    parse_entry(entry)


IPV4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@given(IPV4)
def test_an_ipv4_address_and_its_mapped_and_nat64_forms_get_the_same_verdict(v4: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(v4))
    verdicts = [DEFAULT.check(a) for a in (v4, mapped, nat64)]
    assert len({(v.kind, v.network) if v else None for v in verdicts}) == 1


@given(IPV4, st.integers(min_value=8, max_value=32))
def test_allowing_a_network_allows_its_addresses_and_changes_nothing_outside_it(
    v4: ipaddress.IPv4Address, prefix: int
) -> None:
    network = ipaddress.IPv4Network(f"{v4}/{prefix}", strict=False)
    policy = EgressPolicy(networks=(network,))
    assert policy.check(v4) is None
    outside = ipaddress.IPv4Address((int(network.broadcast_address) + 1) % 2**32)
    if outside not in network:
        assert (policy.check(outside) is None) == (DEFAULT.check(outside) is None)
