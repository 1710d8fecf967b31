"""Which node owns which event partition: a pure function of the live members, the same on every node.

Rendezvous hashing with a cap: each partition goes to the member that ranks it highest (``crc32`` of member and
partition), unless that member already holds its fair share, ``ceil(partitions / members)``; then to the next
in its ranking. Every member ends with a fair share (at most the cap, and all partitions assigned), and a
member joining or leaving moves roughly only its own share, so the other nodes keep their caches warm.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable


def _weight(member: str, partition: int) -> int:
    return zlib.crc32(f"{member}\x00{partition}".encode())


def assign(members: Iterable[str], partitions: int) -> dict[str, frozenset[int]]:
    """Every member's partitions (each partition to exactly one member); no members, no owners."""
    ranked = sorted(set(members))
    if not ranked:
        return {}
    cap = math.ceil(partitions / len(ranked))
    owned: dict[str, set[int]] = {member: set() for member in ranked}
    for partition in range(partitions):
        preference = sorted(ranked, key=lambda member: (-_weight(member, partition), member))
        owner = next(member for member in preference if len(owned[member]) < cap)
        owned[owner].add(partition)
    return {member: frozenset(parts) for member, parts in owned.items()}
