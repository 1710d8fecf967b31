"""Partition assignment: every partition owned once, fair shares, little movement when members change."""

from __future__ import annotations

import math

import pytest

from partita.actors.partitions import assign


@pytest.mark.parametrize("members", [1, 2, 3, 5, 7, 64, 65])
def test_every_partition_has_exactly_one_owner_and_shares_are_fair(members: int) -> None:
    names = [f"node-{i}" for i in range(members)]
    owned = assign(names, 64)
    assert sorted(p for parts in owned.values() for p in parts) == list(range(64))
    cap = math.ceil(64 / members)
    assert max(len(parts) for parts in owned.values()) <= cap
    assert sum(len(parts) for parts in owned.values()) == 64


def test_every_node_computes_the_same_assignment_whatever_the_order() -> None:
    assert assign(["b", "a", "c"], 64) == assign(["c", "b", "a", "a"], 64)


def test_a_joining_member_takes_about_its_share_and_others_keep_the_rest() -> None:
    before = assign(["a", "b"], 64)
    after = assign(["a", "b", "c"], 64)
    moved = sum(len(before[m] - after[m]) for m in ("a", "b"))
    assert len(after["c"]) == moved  # what c got is exactly what a and b lost
    assert moved <= 64 // 3 + 4  # about a third, not a reshuffle
    assert after["a"] <= before["a"]
    assert after["b"] <= before["b"]


def test_a_leaving_member_s_partitions_are_spread_over_the_others() -> None:
    before = assign(["a", "b", "c"], 64)
    after = assign(["a", "b"], 64)
    assert before["a"] <= after["a"]
    assert before["b"] <= after["b"]
    assert after["a"] | after["b"] == frozenset(range(64))


def test_no_members_own_nothing() -> None:
    assert assign([], 64) == {}
