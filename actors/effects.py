"""Performing the decider's effects on JetStream, each with a deterministic message id (dedupe)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import assert_never, final

import anyio
from msgspec import structs

from partita.schemas import DispatchTask, Effect, WorkflowFinished
from partita.transport import Connection, Layout, ensure_task_consumer
from partita.transport.codec import encode_json


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@final
class EffectPerformer:
    def __init__(self, conn: Connection, layout: Layout) -> None:
        self._conn = conn
        self._layout = layout
        # (type, domain) -> AckWait the consumer was provisioned with by this node
        self._consumers: dict[tuple[str, str | None], int] = {}

    def encode_dispatch(self, effect: DispatchTask) -> bytes:
        """The task message exactly as a worker will receive it (the result subject filled in)."""
        task = effect.task
        subject = self._layout.result_subject(task.workflow_instance_id, task.task_type)
        return encode_json(structs.replace(task, result_subject=subject))

    async def perform(self, effects: Sequence[Effect]) -> None:
        if len(effects) == 1:
            await self._perform_one(effects[0])
            return
        async with anyio.create_task_group() as tg:
            for effect in effects:
                tg.start_soon(self._perform_one, effect)

    async def _perform_one(self, effect: Effect) -> None:
        match effect:
            case DispatchTask():
                await self._dispatch(effect)
            case WorkflowFinished(workflow_id=workflow_id):
                await self._conn.publish(self._layout.done_subject(workflow_id), encode_json(effect))
            case _:
                assert_never(effect)

    async def _dispatch(self, effect: DispatchTask) -> None:
        task = effect.task
        key = (task.task_type, task.domain)
        if self._consumers.get(key) != effect.ack_wait_seconds:
            await ensure_task_consumer(
                self._conn, self._layout, task.task_type, task.domain, ack_wait_seconds=effect.ack_wait_seconds
            )
            self._consumers[key] = effect.ack_wait_seconds
        data = self.encode_dispatch(effect)
        target = self._layout.task_subject(task.task_type, task.domain)
        if effect.not_before > now_ms():
            await self._conn.publish_at(
                self._layout.task_schedule_subject(effect.dispatch_id),
                target,
                effect.not_before,
                data,
                msg_id=f"at:{effect.dispatch_id}",
            )
        else:
            await self._conn.publish_durable(target, data, msg_id=effect.dispatch_id)
