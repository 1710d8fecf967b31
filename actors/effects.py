"""Performing the decider's effects on JetStream, each with a deterministic message id (dedupe)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Final, assert_never, final

import structlog
from msgspec import structs

from partita.schemas import (
    CancelDispatch,
    DispatchTask,
    Effect,
    RecordHistory,
    ScheduleTimer,
    SendCommand,
    StartChild,
    Workflow,
    WorkflowFinished,
)
from partita.transport import (
    Connection,
    Fenced,
    Layout,
    NoStreamListening,
    TransportError,
    TransportTimeout,
    ensure_task_consumer,
    purge_task,
)
from partita.transport.codec import encode_json
from partita.transport.connection import Publication

from .definition_cache import DefinitionCache
from .fencing import Fences
from .task_lease import TASK_LEASE_SECONDS, consumer_ack_wait

log = structlog.get_logger(__name__)


# An ended workflow's entry in the running index: a marker the server deletes after this long.
RUNNING_ENDED_HEADER: Final = "Partita-Ended"
RUNNING_ENDED_TTL: Final = "5s"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@final
class EffectPerformer:
    def __init__(
        self,
        conn: Connection,
        layout: Layout,
        definitions: DefinitionCache,
        message_id_key: bytes = b"",
        timers_in_events: bool = False,
        fences: Fences | None = None,
    ) -> None:
        self._conn = conn
        self._layout = layout
        self._definitions = definitions
        self._fences = fences  # a node's: every task dispatch names its partition's fence (actors/fencing.py)
        self._message_id_key = message_id_key  # seals ids on the events stream (provision.message_id_key)
        self._timers_in_events = timers_in_events  # an events stream made before the timers stream
        # (type, domain) -> (AckWait, concurrency limit) this node last provisioned the consumer with
        self._consumers: dict[tuple[str, str | None], tuple[float, int | None]] = {}

    def encode_dispatch(self, effect: DispatchTask) -> bytes:
        """The task message exactly as a worker will receive it (its subjects filled in)."""
        task = effect.task
        workflow_id, task_type, domain = task.workflow_instance_id, task.task_type, task.domain
        subject = self._layout.result_subject(workflow_id, task_type, domain)
        started = self._layout.started_subject(workflow_id, task_type, domain) if effect.report_start else None
        return encode_json(structs.replace(task, result_subject=subject, started_subject=started))

    async def perform(self, effects: Sequence[Effect], *, index: Workflow | None = None) -> None:
        """Perform ``effects``: every JetStream publish at once, waiting for all the PubAcks together (one round
        trip per event, not one per effect); purges alongside. An outage surfaces as a :class:`TransportError`.
        With ``index``, the running-workflows index is brought up to date with it too (:meth:`index_entry`).

        The end-of-workflow notification goes last, once everything durable is done: a client that sees it can
        read the final record, the children it started and the complete history.
        """
        publications: list[Publication] = []
        audit: list[RecordHistory | None] = []  # per publication: the history entry it records, if any
        fenced: dict[int, int] = {}  # publication -> the partition whose fence it names (task dispatches)
        notices: list[WorkflowFinished] = []
        for effect in effects:
            match effect:
                case CancelDispatch(task_id=task_id, task_type=task_type, domain=domain):
                    await purge_task(self._conn, self._layout, task_type, domain, task_id)
                case WorkflowFinished():
                    notices.append(effect)
                case _:
                    if isinstance(effect, DispatchTask):
                        fenced[len(publications)] = self._layout.partition(effect.task.workflow_instance_id)
                    publications.append(await self._publication(effect))
                    audit.append(effect if isinstance(effect, RecordHistory) else None)
        if index is not None:
            publications.append(self.index_entry(index))
            audit.append(None)
        outcomes = await self._conn.publish_all(publications)
        for at, partition in fenced.items():
            if isinstance(outcomes[at], Fenced) and self._fences is not None:
                self._fences.refused(partition)
        failures = [error for error, entry in zip(outcomes, audit, strict=True) if error and entry is None]
        if failures:
            raise failures[0]
        gaps = [(error, entry) for error, entry in zip(outcomes, audit, strict=True) if error and entry]
        if gaps and await self._history_will_return(gaps[0][0]):
            raise gaps[0][0]  # the event comes back; its replay records the entry (the rest are duplicates)
        for error, entry in gaps:
            # An audit trail must not stall workflows (a deleted or full history stream): log the gap.
            workflow_id, cause = entry.entry.workflow_id, entry.entry.cause
            log.warning("history_unrecorded", workflow_id=workflow_id, cause=cause, error=str(error))
        for notice in notices:
            await self._conn.publish(self._layout.done_subject(notice.workflow_id), encode_json(notice))

    async def _history_will_return(self, error: TransportError) -> bool:
        """Whether a history entry that failed to publish will be accepted if the event is tried again: the
        history stream timed out or is electing a leader (a server died), rather than gone or full. Then the
        event is deferred instead of acked with a gap in its workflow's history."""
        if isinstance(error, TransportTimeout):
            return True
        if not isinstance(error, NoStreamListening):
            return False  # refused: full, denied, too large
        try:
            return await self._conn.stream_exists(self._layout.history_stream)
        except TransportError:
            return True  # cannot tell in an outage: try again rather than lose the entry

    async def _publication(
        self, effect: DispatchTask | ScheduleTimer | StartChild | SendCommand | RecordHistory
    ) -> Publication:
        match effect:
            case DispatchTask():
                return await self._dispatch(effect)
            case ScheduleTimer():
                target, schedule = self._timer_subjects(effect)
                data = encode_json(effect.event)
                # The deadline is part of the id: re-arming a timer (retry, resume) must not be deduplicated away.
                repair = f":r{effect.repair}" if effect.repair else ""
                msg_id = self.sealed(f"timer:{effect.timer_id}:{effect.at}{repair}")
                return Publication.scheduled(schedule, target, effect.at, data, msg_id)
            case StartChild(request=request):
                subject = self._layout.start_subject(request.workflow_id)
                data = encode_json(request)
                if len(data) > self._conn.payload_limit and "failedWorkflow" in request.input:
                    # A failure workflow's copy of the failed one does not fit: send its id instead.
                    trimmed = {**request.input, "failedWorkflow": {"workflowId": request.input.get("workflowId")}}
                    data = encode_json(structs.replace(request, input=trimmed))
                return Publication.durable(subject, data, self.sealed(f"start:{request.workflow_id}"))
            case SendCommand(send_id=send_id, command=command):
                subject = self._layout.command_subject(command.workflow_id)
                return Publication.durable(subject, encode_json(command), self.sealed(send_id))
            case RecordHistory(entry=entry):
                subject = self._layout.history_subject(entry.workflow_id)
                return Publication.durable(
                    subject, encode_json(entry), f"history:{entry.workflow_id}:{entry.event_seq}"
                )
            case _:
                assert_never(effect)

    def index_entry(self, workflow: Workflow) -> Publication:
        """The running index's entry for ``workflow`` (see :meth:`index_publication`)."""
        return self.index_publication(workflow.workflow_id, running=not workflow.status.is_terminal)

    def index_publication(self, workflow_id: str, *, running: bool) -> Publication:
        """The running index's entry for a workflow: present while it runs; once it has ended, replaced by a
        marker that expires (the stream keeps one message per workflow), so the index holds only the running
        and costs nothing per ended workflow."""
        subject = self._layout.running_subject(workflow_id)
        if not running:
            return Publication(subject, b"", {RUNNING_ENDED_HEADER: "1", "Nats-TTL": RUNNING_ENDED_TTL})
        return Publication(subject, b"")

    async def ensure_consumer(self, task_type: str, domain: str | None) -> None:
        """The consumer's AckWait is the task lease, or the *registered* TaskDef's responseTimeoutSeconds if
        shorter (:mod:`.task_lease`): one consumer serves every workflow, so an inline ``taskDefinition`` of one
        workflow must not change it for the others."""
        registered = await self._definitions.task_def(task_type)
        ack_wait = consumer_ack_wait(registered.response_timeout_seconds if registered else TASK_LEASE_SECONDS)
        limit = (registered.concurrent_exec_limit or None) if registered else None
        key = (task_type, domain)
        if self._consumers.get(key) != (ack_wait, limit):
            await ensure_task_consumer(
                self._conn, self._layout, task_type, domain, ack_wait_seconds=ack_wait, max_in_flight=limit
            )
            self._consumers[key] = (ack_wait, limit)

    @property
    def message_id_key(self) -> bytes:
        """The nodes' shared key (``provision.message_id_key``): it seals message ids, timer schedule subjects
        and the ids of the workflows decisions start."""
        return self._message_id_key

    def sealed(self, msg_id: str) -> str:
        """``msg_id`` sealed with the nodes' key (:func:`seal`)."""
        return seal(self._message_id_key, msg_id)

    def _timer_subjects(self, effect: ScheduleTimer) -> tuple[str, str]:
        """Where a timer fires and where its schedule lives: in the timers stream, which the events stream
        sources as ``.timer`` events; or, for an events stream an older version made (it has schedules of its
        own, and a stream with schedules cannot source), in the events stream as before."""
        workflow_id, layout = effect.event.workflow_id, self._layout
        if self._timers_in_events:
            return layout.timer_subject(workflow_id), layout.legacy_timer_schedule_subject(self.sealed(effect.timer_id))
        return layout.fired_subject(workflow_id), self.timer_schedule_subject(effect.timer_id)

    def timer_schedule_subject(self, timer_id: str) -> str:
        """Where the schedule of a timer lives (the timers stream), sealed like the message ids: a publisher to
        a stream with schedules may ask the server to purge one by naming its subject (``Nats-Schedule-Next:
        purge``). Only nodes publish to the timers stream; the seal also keeps the schedules that older versions
        left in the events stream, under the same names, out of reach."""
        return self._layout.timer_schedule_subject(self.sealed(timer_id))

    async def _dispatch(self, effect: DispatchTask) -> Publication:
        task = effect.task
        await self.ensure_consumer(task.task_type, task.domain)
        data = self.encode_dispatch(effect)
        target = self._layout.task_message_subject(task.task_type, task.domain, task.task_id)
        # One message id on both paths: a replay after the schedule was published is then a duplicate.
        if effect.not_before > now_ms():
            # One schedule subject per task: a newer delayed dispatch of the same task replaces a pending one.
            schedule = self._layout.task_schedule_subject(task.task_id)
            publication = Publication.scheduled(schedule, target, effect.not_before, data, effect.dispatch_id)
        else:
            publication = Publication.durable(target, data, effect.dispatch_id)
        if self._fences is None:
            return publication
        return self._fences.fence(publication, self._layout.partition(task.workflow_instance_id))


def seal(key: bytes, msg_id: str) -> str:
    """``msg_id`` with a MAC only nodes can compute: still the same for every node replaying the effect, but
    not predictable by a worker that may publish on the events stream (its result subjects). No key: as is."""
    if not key:
        return msg_id
    return f"{msg_id}:{hmac.new(key, msg_id.encode(), hashlib.sha256).hexdigest()[:24]}"
