"""Events as they arrive: every message on the events stream is decoded and checked here, once, before any actor
sees it (``decode_event``, the one gate; ``decode_event_data``, its pure core)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

import structlog

from partita.schemas import PayloadError, StartWorkflow, TaskResult, TaskStarted, WireEvent
from partita.transport import Delivery, Layout, escape_token
from partita.transport.codec import (
    command_decoder,
    decode,
    result_decoder,
    start_decoder,
    start_identity_decoder,
    started_decoder,
    timer_decoder,
)

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Envelope:
    """An event fetched from the stream and decoded, with the hook that frees its in-flight slot."""

    workflow_id: str
    delivery: Delivery
    event: WireEvent
    subject_task_type: str | None
    problem: str | None = None  # a start that cannot run, found while decoding
    subject_domain: tuple[str | None] | None = None  # (domain,) when a report's subject names one
    release: Callable[[], None] = lambda: None


MAX_WORKFLOW_ID_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 256  # of a workflow name in a start; it becomes a KV key and a watch filter
# Of each domain in a start's taskToDomain: a domain becomes a token of task subjects, and the server drops
# a connection whose protocol line (subject included) passes 4 KiB, escaping may grow a name twelvefold.
MAX_DOMAIN_LENGTH: Final = 64
INT32_MAX: Final = 2**31 - 1  # Conductor's Java int: counts, versions, priorities, seconds
# Epoch milliseconds a worker may report: beyond this (the year 6429) a timer counted from it could not be
# written as a schedule date (Python's datetime ends with the year 9999).
MAX_EPOCH_MILLIS: Final = 2**47 - 1
_SHOWN: Final = 64  # characters of a sender's value quoted in a rejection reason


class DecodedEvent(NamedTuple):
    workflow_id: str
    event: WireEvent
    subject_task_type: str | None
    problem: str | None  # a start that cannot run, found while decoding
    subject_domain: tuple[str | None] | None = None  # (domain,) when a report's subject names one


def decode_event(layout: Layout, delivery: Delivery) -> Envelope:
    """Decode a delivery into an :class:`Envelope`; raises :class:`PayloadError` for a poison message, and
    only that: anything else escaping would stop the node's fetch loop, and the event, never acknowledged,
    would come back to stop the restarted node again."""
    try:
        check_provenance(layout, delivery.subject, delivery.headers)
        decoded = decode_event_data(layout, delivery.subject, delivery.data)
    except PayloadError:
        raise
    except Exception as exc:
        # A bug in decoding, not a bad message. Crashing would take every partition of the node down, again
        # and again; the dead letter keeps the message (its data and this reason) to be replayed after a fix.
        log.exception("event_decoder_failed", subject=delivery.subject, stream_seq=delivery.stream_seq)
        raise PayloadError(f"the event decoder failed: {type(exc).__name__}: {clip(str(exc))}") from exc
    return Envelope(
        workflow_id=decoded.workflow_id,
        delivery=delivery,
        event=decoded.event,
        subject_task_type=decoded.subject_task_type,
        problem=decoded.problem,
        subject_domain=decoded.subject_domain,
    )


SCHEDULER_HEADER: Final = "Nats-Scheduler"
_SCHEDULE_NEXT: Final = "nats-schedule-next"  # on what a schedule fired: "purge" (the schedule is done)
_FIRED_HEADERS: Final = frozenset({SCHEDULER_HEADER.lower(), _SCHEDULE_NEXT})


def check_provenance(layout: Layout, subject: str, headers: Mapping[str, str]) -> None:
    """Refuse (:class:`PayloadError`) an event that a message schedule published unless a node made the schedule.

    Nodes' timers are schedules on ``<prefix>.timers.<id>`` in the timers stream, and the events stream sources
    what they fire as ``<prefix>.wf.<p>.timer``. An events stream made by an older version allows schedules
    itself (they cannot be turned off): there any publisher could add schedule headers to its own message, and
    nats-server would publish the target, on any subject of the stream, without the publisher's permissions.
    The server strips every ``Nats-Schedule*`` header from what a schedule fires and sets ``Nats-Scheduler`` to
    the schedule's subject (and refuses that header from a client), so the header says who scheduled: only a
    timer fired by a schedule under a subject only nodes may publish (:attr:`Layout.scheduler_prefixes`) is
    trusted. A message that still carries schedule headers (a schedule, or a schedule purge) is refused too.
    """
    names = {name.lower(): value for name, value in headers.items()}
    if sum(name.lower() == SCHEDULER_HEADER.lower() for name in headers) > 1:  # one the server set, one forged
        raise PayloadError(f"more than one {SCHEDULER_HEADER} header on {clip(subject)!r}")
    scheduler = names.get(SCHEDULER_HEADER.lower())
    kind = subject.split(".")[3] if subject.count(".") >= 3 else ""
    if any(name.startswith("nats-schedule") for name in names if name not in _FIRED_HEADERS):
        raise PayloadError(f"a message schedule published on {clip(subject)!r}: only nodes schedule messages")
    if scheduler is None:
        if _SCHEDULE_NEXT in names:
            raise PayloadError(f"a schedule purge published on {clip(subject)!r}: only nodes schedule messages")
        if kind == "timer":
            raise PayloadError("a timer that no schedule fired: only nodes' schedules publish timers")
        return
    if kind != "timer" or not scheduler.startswith(layout.scheduler_prefixes):
        raise PayloadError(f"published by a message schedule on {clip(scheduler)!r}, which no node made")


def decode_event_data(layout: Layout, subject: str, data: bytes) -> DecodedEvent:
    """What an event message says, checked against its subject; raises :class:`PayloadError` for a poison one.

    A start whose body is malformed but whose ``workflowId`` can be read is not poison: it becomes a start
    with a ``problem``, so the workflow is recorded FAILED with the reason instead of vanishing.

    Besides decoding, an event must be addressed to its own workflow's partition: each partition has one
    consumer (one node), so an event on another partition would let a second node act on the workflow. And a
    worker report whose body names a task type must have been published under that type's subject.
    """
    kind, task_type = layout.parse_event_subject(subject)
    if task_type is not None and (not task_type or escape_token(task_type) != subject.split(".")[4]):
        # Unescapes, but is not how Partita escapes a name (a bare "*" or ">", "=61" for "a"): no node wrote it.
        kind = "unknown"
    subject_domain: tuple[str | None] | None = None
    if kind in ("result", "started"):
        stated = layout.report_domain(subject)
        if stated is None:
            kind = "unknown"  # a domain token Partita never writes
        elif stated[0]:
            subject_domain = (stated[1],)
    problem: str | None = None
    event: WireEvent
    if kind == "start":
        try:
            start = decode(start_decoder, data, "StartWorkflow")
            problem = _start_problem(start)
        except PayloadError as exc:
            identity = decode(start_identity_decoder, data, "StartWorkflow")
            start = StartWorkflow(workflow_id=identity.workflow_id, name=identity.name)
            problem = str(exc)
        if problem is not None:  # keep nothing of a bad start but what names the FAILED workflow
            start = StartWorkflow(workflow_id=start.workflow_id, name=start.name[:MAX_NAME_LENGTH])
        event, workflow_id = start, start.workflow_id
    elif kind == "result":
        result = decode(result_decoder, data, "TaskResult")
        _check_report(result, task_type)
        _check_range("TaskResult", "callbackAfterSeconds", result.callback_after_seconds, None, INT32_MAX)
        _check_range("TaskResult", "endTime", result.end_time, 0, MAX_EPOCH_MILLIS)
        event, workflow_id = result, result.workflow_instance_id
    elif kind == "started":
        started = decode(started_decoder, data, "TaskStarted")
        _check_report(started, task_type)
        event, workflow_id = started, started.workflow_instance_id
    elif kind == "cmd":
        command = decode(command_decoder, data, "command")
        event, workflow_id = command, command.workflow_id
    elif kind == "timer":
        timer = decode(timer_decoder, data, "TimerFired")
        event, workflow_id = timer, timer.workflow_id
    else:
        raise PayloadError(f"no event kind is published on subject {clip(subject)!r}")
    if not workflow_id or len(workflow_id) > MAX_WORKFLOW_ID_LENGTH:
        raise PayloadError(f"workflow id must be 1..{MAX_WORKFLOW_ID_LENGTH} characters, got {len(workflow_id)}")
    partition = subject.split(".")[2]
    if partition != str(layout.partition(workflow_id)):
        raise PayloadError(
            f"published on partition {clip(partition)}, but workflow {clip(workflow_id)!r} is on partition "
            f"{layout.partition(workflow_id)}"
        )
    return DecodedEvent(workflow_id, event, task_type, problem, subject_domain)


def _start_problem(start: StartWorkflow) -> str | None:
    """Why a start that decoded still cannot run, or None."""
    if not start.name.strip() and start.workflow_def is None:
        return "malformed StartWorkflow: name must not be empty"
    if len(start.name) > MAX_NAME_LENGTH:
        return f"malformed StartWorkflow: name is {len(start.name)} characters; the limit is {MAX_NAME_LENGTH}"
    for task_type, domains in start.task_to_domain.items():
        if any(len(domain.strip()) > MAX_DOMAIN_LENGTH for domain in domains.split(",")):
            return (
                f"malformed StartWorkflow: taskToDomain[{clip(task_type)!r}] names a domain longer than "
                f"{MAX_DOMAIN_LENGTH} characters"
            )
    try:
        if start.version is not None:
            _check_range("StartWorkflow", "version", start.version, -INT32_MAX - 1, INT32_MAX)
        _check_range("StartWorkflow", "priority", start.priority, -INT32_MAX - 1, INT32_MAX)
    except PayloadError as exc:
        return str(exc)
    return None


def _check_report(report: TaskResult | TaskStarted, subject_type: str | None) -> None:
    """The checks a worker's report (result or start) must pass before any node acts on it."""
    what = type(report).__name__
    if report.task_type is not None and report.task_type != subject_type:
        raise PayloadError(
            f"{what} names task type {clip(report.task_type)!r} but was published on the subject of type "
            f"{clip(subject_type or '')!r}"
        )
    if report.poll_count is not None:
        _check_range(what, "pollCount", report.poll_count, 0, INT32_MAX)
    _check_range(what, "startTime", report.start_time, 0, MAX_EPOCH_MILLIS)


def _check_range(what: str, name: str, value: int, low: int | None, high: int) -> None:
    if (low is not None and value < low) or value > high:  # (the codec has bounded it to 64 bits)
        bounds = f"{low}..{high}" if low is not None else f"at most {high}"
        raise PayloadError(f"malformed {what}: {name} is {value}; it must be {bounds}")


def clip(text: str, shown: int = _SHOWN) -> str:
    return text if len(text) <= shown else text[:shown] + "..."
