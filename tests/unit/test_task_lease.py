"""The task lease: when a holder extends a delivery, and what a redelivery means (pure, no I/O)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from partita.actors.task_lease import (
    EARLY_REDELIVERIES,
    MIN_EXTENSION_INTERVAL,
    TASK_LEASE_SECONDS,
    consumer_ack_wait,
    extensions,
    lease,
    redelivery_verdict,
    response_timeout,
)


def test_a_consumer_waits_the_lease_unless_the_response_timeout_is_shorter() -> None:
    assert consumer_ack_wait(3600) == TASK_LEASE_SECONDS
    assert consumer_ack_wait(5) == 5
    assert lease(3600, 600) == TASK_LEASE_SECONDS  # an AckWait read before a node shortened it
    assert lease(15, 2) == 2  # an inline taskDefinition's shorter response timeout


def test_a_task_message_without_a_response_timeout_gets_conductors_default() -> None:
    assert response_timeout(0) == 3600
    assert response_timeout(42) == 42


def test_a_lease_that_reaches_the_response_deadline_is_never_extended() -> None:
    assert list(extensions(5, 5, unbounded=False)) == []
    assert list(extensions(15, 15, unbounded=False)) == []


def test_extensions_come_every_third_of_the_lease_and_the_last_makes_the_delivery_expire_at_the_deadline() -> None:
    assert list(extensions(15, 40, unbounded=False)) == [5, 10, 15, 20, 25]  # 25 + 15 = 40
    assert list(extensions(15, 37, unbounded=False)) == [5, 10, 15, 20, 22]  # 22 + 15 = 37
    assert list(extensions(15, 17, unbounded=False)) == [2]


def test_lease_extend_extends_without_end() -> None:
    assert list(itertools.islice(extensions(15, 20, unbounded=True), 5)) == [5, 10, 15, 20, 25]
    step = MIN_EXTENSION_INTERVAL  # a third of a 1 s lease would be too often
    assert list(itertools.islice(extensions(1, 20, unbounded=True), 2)) == [step, 2 * step]


@given(
    lease_seconds=st.floats(min_value=1, max_value=15),
    timeout=st.floats(min_value=1, max_value=10_000),
)
def test_a_silent_holder_loses_the_task_exactly_at_the_response_deadline(lease_seconds: float, timeout: float) -> None:
    held = lease(TASK_LEASE_SECONDS, min(lease_seconds, timeout))
    times = list(extensions(held, timeout, unbounded=False))
    assert times == sorted(times)
    gaps = [b - a for a, b in itertools.pairwise([0.0, *times])]
    assert all(gap <= max(MIN_EXTENSION_INTERVAL, held / 3) + 1e-9 for gap in gaps)  # never lapses meanwhile
    expiry = (times[-1] if times else 0.0) + held
    assert abs(expiry - max(timeout, held)) < 1e-6


def test_a_redelivery_older_than_the_response_timeout_timed_out() -> None:
    reason = redelivery_verdict(age_seconds=600, deliveries=2, response_timeout_seconds=600)
    assert reason == (
        "Task timed out after 600 seconds (responseTimeoutSeconds): no result or heartbeat from the worker that took it"
    )


def test_a_younger_redelivery_was_lost_or_dropped_and_runs_again() -> None:
    assert redelivery_verdict(age_seconds=16, deliveries=2, response_timeout_seconds=3600) is None
    assert redelivery_verdict(age_seconds=60, deliveries=1 + EARLY_REDELIVERIES, response_timeout_seconds=3600) is None


def test_a_task_whose_every_holder_dies_times_out_after_a_few_early_redeliveries() -> None:
    reason = redelivery_verdict(age_seconds=60, deliveries=2 + EARLY_REDELIVERIES, response_timeout_seconds=3600)
    assert reason is not None
    assert f"delivered {2 + EARLY_REDELIVERIES} times" in reason
