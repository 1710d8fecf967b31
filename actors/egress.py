"""Where HTTP tasks may connect: public addresses, and what the operator allows (``--http-allow``).

Pure: no I/O. :mod:`.http_egress` resolves host names and asks :meth:`EgressPolicy.check` about every
address a request could connect to. Refused unless allowed: loopback, link-local (cloud metadata services
live there), private, shared (carrier-grade NAT), unspecified, multicast and reserved ranges, also when
written as an IPv6 form that embeds an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64
``64:ff9b::a.b.c.d``, 6to4 ``2002:aabb:ccdd::``), which reach the IPv4 address they embed.

The ranges are listed here rather than taken from :attr:`ipaddress.IPv4Address.is_private` and friends: those
changed between Python patch releases, and what a node refuses should not depend on which one it runs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: Final = ("127.0.0.0/8", "::1")  # `partita dev`'s default allow-list
ALLOW_ENV: Final = "PARTITA_HTTP_ALLOW"

_V4: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/8", "unspecified"),  # "this network": connecting to 0.0.0.0 reaches the local host
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # documentation
    ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),  # documentation
    ("203.0.113.0/24", "reserved"),  # documentation
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # the limited broadcast address included
)
# IPv6 outside 2000::/3 (global unicast) is refused as reserved unless it is one of these or embeds IPv4.
_V6: Final[tuple[tuple[str, str], ...]] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64: the operator chooses where IPv4 is embedded
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo included
    ("2001:db8::/32", "reserved"),  # documentation
    ("3fff::/20", "reserved"),  # documentation
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # site-local (deprecated)
    ("ff00::/8", "multicast"),
)
_REFUSED: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (ipaddress.ip_network(network), kind) for network, kind in (*_V4, *_V6)
)
_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA: Final = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not connect to ``address`` (which ``host`` resolved to, or is)."""

    address: IPAddress
    kind: str  # "loopback", "private", ...
    network: IPNetwork  # the refused range it is in: what --http-allow has to name
    host: str | None = None
    embedded: ipaddress.IPv4Address | None = None  # the IPv4 address an IPv6 form reaches

    @property
    def reason(self) -> str:
        shown = _shown(self.address)
        named = f" ({self.host})" if self.host and self.host not in (shown, str(self.address)) else ""
        article = "an" if self.kind[0] in "aeiou" else "a"
        notes = [f"reaching {self.embedded}"] if self.embedded else []
        if self.address in _METADATA or self.embedded in _METADATA:
            notes.append("the cloud metadata service")
        note = f" ({', '.join(notes)})" if notes else ""
        return (
            f"HTTP task refused: {shown}{named} is {article} {self.kind} address{note}; "
            f"allow it with --http-allow {self.network} ({ALLOW_ENV})"
        )


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Public addresses are allowed; internal ones only if ``networks`` holds them or the request's host name
    is one of ``hosts`` (allowing a name trusts whatever its DNS answers)."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """From ``--http-allow`` values: networks (``10.0.0.0/8``), addresses (``10.1.2.3``) or host names
        (:func:`parse_entry`, whose :class:`ValueError` it raises)."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            parsed = parse_entry(entry)
            if isinstance(parsed, str):
                hosts.add(parsed)
            elif parsed not in networks:
                networks.append(parsed)
        return cls(tuple(networks), frozenset(hosts))

    def entries(self) -> list[str]:
        """The allow-list as it would be given again (for logs)."""
        return [str(network) for network in self.networks] + sorted(self.hosts)

    def check(self, address: IPAddress, host: str | None = None) -> Refusal | None:
        """None if a request for ``host`` may connect to ``address``; else why not."""
        if host is not None and _host_key(host) in self.hosts:
            return None
        embedded = _embedded_ipv4(address)
        if any(a in network for network in self.networks for a in (address, embedded) if a is not None):
            return None
        refusal = _classify(embedded or address)
        if refusal is None:
            return None
        kind, network = refusal
        return Refusal(address=address, kind=kind, network=network, host=host, embedded=embedded)


def parse_entry(text: str) -> IPNetwork | str:
    """One allow-list entry: a network, an address (a network of one) or a host name (lower-cased).
    Raises :class:`ValueError`, one line naming the entry."""
    entry = text.strip()
    if not entry:
        raise ValueError("an empty entry: give a network (10.0.0.0/8), an address or a host name")
    try:
        return ipaddress.ip_network(entry)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        pass
    else:
        raise ValueError(f"{entry!r} has bits set past its prefix length: did you mean {network}?")
    name = _host_key(entry)
    labels = name.split(".")
    looks_numeric = labels[-1].isdigit() or "/" in name or ":" in name  # a mistyped address, not a name
    if looks_numeric or len(name) > 253 or not all(map(_LABEL.fullmatch, labels)):
        raise ValueError(f"{entry!r} is not a network (10.0.0.0/8), an address (10.1.2.3, ::1) or a host name")
    return name


def _shown(address: IPAddress) -> str:
    """IPv4-mapped addresses as people write them (Python before 3.13 prints ``::ffff:7f00:1``)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _host_key(host: str) -> str:
    return host.lower().removesuffix(".")


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches by translation, if it is written in one of those forms."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _classify(address: IPAddress) -> tuple[str, IPNetwork] | None:
    """(kind, range) of a refused address; None for a public one. The narrowest listed range wins."""
    found = [(network, kind) for network, kind in _REFUSED if address in network]
    if found:
        network, kind = max(found, key=lambda pair: pair[0].prefixlen)
        return kind, network
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "reserved", ipaddress.IPv6Network(address)
    return None
