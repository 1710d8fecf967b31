"""Performing the decider's effects on JetStream, each with a deterministic message id (dedupe)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final, assert_never, final

import anyio
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
    WorkflowFinished,
)
from partita.transport import Connection, Layout, TransportError, ensure_task_consumer, purge_task
from partita.transport.codec import encode_json

from .definition_cache import DefinitionCache

log = structlog.get_logger(__name__)

# AckWait of a task consumer whose type has no registered TaskDef: Conductor's default responseTimeoutSeconds.
DEFAULT_ACK_WAIT_SECONDS: Final = 3600


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@final
class EffectPerformer:
    def __init__(self, conn: Connection, layout: Layout, definitions: DefinitionCache) -> None:
        self._conn = conn
        self._layout = layout
        self._definitions = definitions
        # (type, domain) -> (AckWait, concurrency limit) this node last provisioned the consumer with
        self._consumers: dict[tuple[str, str | None], tuple[int, int | None]] = {}

    def encode_dispatch(self, effect: DispatchTask) -> bytes:
        """The task message exactly as a worker will receive it (its subjects filled in)."""
        task = effect.task
        subject = self._layout.result_subject(task.workflow_instance_id, task.task_type)
        started = (
            self._layout.started_subject(task.workflow_instance_id, task.task_type) if effect.report_start else None
        )
        return encode_json(structs.replace(task, result_subject=subject, started_subject=started))

    async def perform(self, effects: Sequence[Effect]) -> None:
        """Perform ``effects`` concurrently; an outage surfaces as one :class:`TransportError`.

        The end-of-workflow notification goes last, once everything durable is done: a client that sees it can
        read the final record, the children it started and the complete history.
        """
        notices = [effect for effect in effects if isinstance(effect, WorkflowFinished)]
        if notices:
            await self._perform_all([effect for effect in effects if not isinstance(effect, WorkflowFinished)])
            await self._perform_all(notices)
        else:
            await self._perform_all(effects)

    async def _perform_all(self, effects: Sequence[Effect]) -> None:
        if not effects:
            return
        if len(effects) == 1:
            await self._perform_one(effects[0])
            return
        try:
            async with anyio.create_task_group() as tg:
                for effect in effects:
                    tg.start_soon(self._perform_one, effect)
        except ExceptionGroup as group:
            transport, other = group.split(TransportError)
            if transport is not None and other is None:
                raise transport.exceptions[0] from group
            raise

    async def _perform_one(self, effect: Effect) -> None:
        match effect:
            case DispatchTask():
                await self._dispatch(effect)
            case CancelDispatch(task_id=task_id, task_type=task_type, domain=domain):
                await purge_task(self._conn, self._layout, task_type, domain, task_id)
            case ScheduleTimer():
                target = self._layout.timer_subject(effect.event.workflow_id)
                schedule = self._layout.timer_schedule_subject(effect.timer_id)
                data = encode_json(effect.event)
                # The deadline is part of the id: re-arming a timer (retry, resume) must not be deduplicated away.
                msg_id = f"timer:{effect.timer_id}:{effect.at}"
                await self._conn.publish_at(schedule, target, effect.at, data, msg_id=msg_id)
            case StartChild(request=request):
                subject = self._layout.start_subject(request.workflow_id)
                data = encode_json(request)
                if len(data) > self._conn.payload_limit and "failedWorkflow" in request.input:
                    # A failure workflow's copy of the failed one does not fit: send its id instead.
                    trimmed = {**request.input, "failedWorkflow": {"workflowId": request.input.get("workflowId")}}
                    data = encode_json(structs.replace(request, input=trimmed))
                await self._conn.publish_durable(subject, data, msg_id=f"start:{request.workflow_id}")
            case SendCommand(send_id=send_id, command=command):
                subject = self._layout.command_subject(command.workflow_id)
                await self._conn.publish_durable(subject, encode_json(command), msg_id=send_id)
            case RecordHistory(entry=entry):
                subject = self._layout.history_subject(entry.workflow_id)
                msg_id = f"history:{entry.workflow_id}:{entry.event_seq}"
                try:
                    await self._conn.publish_durable(subject, encode_json(entry), msg_id=msg_id)
                except TransportError as exc:
                    # An audit trail must not stall workflows (a deleted or full history stream): log the gap.
                    # In an outage the event's other effects fail too, and the replay records it after all.
                    log.warning("history_unrecorded", workflow_id=entry.workflow_id, cause=entry.cause, error=str(exc))
            case WorkflowFinished(workflow_id=workflow_id):
                await self._conn.publish(self._layout.done_subject(workflow_id), encode_json(effect))
            case _:
                assert_never(effect)

    async def _ensure_consumer(self, task_type: str, domain: str | None) -> None:
        """The consumer's AckWait is the *registered* TaskDef's responseTimeoutSeconds: one consumer serves
        every workflow, so an inline ``taskDefinition`` of one workflow must not change it for the others."""
        registered = await self._definitions.task_def(task_type)
        ack_wait = registered.response_timeout_seconds if registered else DEFAULT_ACK_WAIT_SECONDS
        limit = (registered.concurrent_exec_limit or None) if registered else None
        key = (task_type, domain)
        if self._consumers.get(key) != (ack_wait, limit):
            await ensure_task_consumer(
                self._conn, self._layout, task_type, domain, ack_wait_seconds=ack_wait, max_in_flight=limit
            )
            self._consumers[key] = (ack_wait, limit)

    async def _dispatch(self, effect: DispatchTask) -> None:
        task = effect.task
        await self._ensure_consumer(task.task_type, task.domain)
        data = self.encode_dispatch(effect)
        target = self._layout.task_message_subject(task.task_type, task.domain, task.task_id)
        # One message id on both paths: a replay after the schedule was published is then a duplicate.
        if effect.not_before > now_ms():
            # One schedule subject per task: a newer delayed dispatch of the same task replaces a pending one.
            schedule = self._layout.task_schedule_subject(task.task_id)
            await self._conn.publish_at(schedule, target, effect.not_before, data, msg_id=effect.dispatch_id)
        else:
            await self._conn.publish_durable(target, data, msg_id=effect.dispatch_id)
