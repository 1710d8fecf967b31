"""How long a worker holds a task message, and what a redelivery of one means: pure functions, no I/O.

A task consumer's AckWait is a short *delivery lease* (:data:`TASK_LEASE_SECONDS`, or the task's
``responseTimeoutSeconds`` if that is shorter), not the response timeout itself. A delivery that reaches no live
worker (the fetch response was in flight through a server that died, the worker was SIGKILLed) therefore comes
back within the lease, instead of after Conductor's default response timeout of an hour. A live worker holding
a task extends the lease (``+WPI``) every third of it (:func:`extensions`), for as long as the task's
``responseTimeoutSeconds`` allows (forever with ``lease_extend``); the last extension is timed so that the
delivery expires exactly at the response deadline. So a worker that is alive but silent past the response
timeout (its function hung without ``lease_extend``) still loses the task at ``responseTimeoutSeconds``, as in
Conductor.

A redelivered message tells its new receiver only its age (the stream timestamp) and how often it was
delivered. :func:`redelivery_verdict` reads those: a message older than its response timeout timed out (the
holder fell silent); a younger one was lost on the way or dropped by a dead holder, and simply runs again. A
task delivered more than :data:`EARLY_REDELIVERIES` times early is a task whose every holder dies (a worker
killed by its input): from then on its redeliveries count as response timeouts, so the TaskDef's retries
bound the crash loop as Conductor's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

TASK_LEASE_SECONDS: Final = 15.0
EARLY_REDELIVERIES: Final = 3  # beyond this many early redeliveries, a redelivery is a response timeout
CLOCK_SKEW_SECONDS: Final = 1.0  # between the server's clock (message timestamps) and ours
MIN_EXTENSION_INTERVAL: Final = 1.0
DEFAULT_RESPONSE_TIMEOUT_SECONDS: Final = 3600  # Conductor's, for a task message that names none


def response_timeout(task_seconds: int) -> float:
    """The task message's ``responseTimeoutSeconds``, Conductor's default where it names none."""
    return float(task_seconds or DEFAULT_RESPONSE_TIMEOUT_SECONDS)


def lease(ack_wait: float, response_timeout_seconds: float) -> float:
    """The lease a delivery is held for: the consumer's AckWait, never longer than the task's response
    timeout nor than :data:`TASK_LEASE_SECONDS` (the AckWait a worker read may have been shortened since)."""
    return min(ack_wait, response_timeout_seconds, TASK_LEASE_SECONDS)


def consumer_ack_wait(response_timeout_seconds: float) -> float:
    """The AckWait a node gives a task consumer, from the registered TaskDef's ``responseTimeoutSeconds``."""
    return min(float(response_timeout_seconds), TASK_LEASE_SECONDS)


def extensions(lease_seconds: float, response_timeout_seconds: float, *, unbounded: bool) -> Iterator[float]:
    """Seconds after receipt at which the holder sends ``+WPI``: every third of the lease (at least
    :data:`MIN_EXTENSION_INTERVAL`); unless ``unbounded``, the last one at ``response_timeout - lease``, so the
    delivery expires exactly at the response deadline. None at all when the lease already reaches it."""
    step = max(MIN_EXTENSION_INTERVAL, lease_seconds / 3)
    last = response_timeout_seconds - lease_seconds
    at = 0.0
    while True:
        at += step
        if not unbounded and at >= last:
            if last > at - step:
                yield last
            return
        yield at


def redelivery_verdict(age_seconds: float, deliveries: int, response_timeout_seconds: float) -> str | None:
    """Why a redelivered task (``deliveries`` > 1, stored ``age_seconds`` ago) counts as timed out, or None
    when it should simply run again (see the module docstring)."""
    if age_seconds >= response_timeout_seconds - CLOCK_SKEW_SECONDS:
        seconds = round(response_timeout_seconds)
        return (
            f"Task timed out after {seconds} seconds (responseTimeoutSeconds): "
            "no result or heartbeat from the worker that took it"
        )
    if deliveries > EARLY_REDELIVERIES + 1:
        return (
            f"Task timed out: delivered {deliveries} times, and every worker that took it stopped "
            "without a result or heartbeat"
        )
    return None
