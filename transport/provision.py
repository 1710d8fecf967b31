"""Idempotent provisioning of Partita's streams, consumers and KV buckets.

Every function here may run any number of times, from any node, concurrently: it creates what is missing and
brings what exists to the required configuration.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from .connection import Connection, translate_errors
from .errors import ProvisioningError
from .layout import Layout

# How long an event fetched by a node that then died waits before another node gets it. Processing an event
# takes milliseconds; redelivery of one still being processed is harmless (CAS + eventSeq).
EVENTS_ACK_WAIT_SECONDS = 10.0
_STREAM_IN_USE = 10058  # "stream name already in use with a different configuration"


async def _ensure_stream(conn: Connection, config: StreamConfig) -> None:
    try:
        await conn.js.add_stream(config)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise ProvisioningError(f"stream {config.name}: {exc.description}") from exc
        with translate_errors(f"update stream {config.name}"):
            await conn.js.update_stream(config)
    except nats.errors.Error as exc:
        raise ProvisioningError(f"stream {config.name}: {exc}") from exc


async def ensure_layout(conn: Connection, layout: Layout, *, replicas: int = 1) -> None:
    """Create or update the task and event streams, the events consumer and the KV buckets."""
    await _ensure_stream(
        conn,
        StreamConfig(
            name=layout.tasks_stream,
            description="Partita task messages: one subject per (task type, domain)",
            subjects=[f"{layout.prefix}.task.>", f"{layout.prefix}.tsched.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_msg_schedules=True,
            duplicate_window=120.0,
        ),
    )
    await _ensure_stream(
        conn,
        StreamConfig(
            name=layout.events_stream,
            description="Partita workflow events: starts, task results, timers",
            subjects=[f"{layout.prefix}.wf.>", f"{layout.prefix}.esched.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_msg_schedules=True,
            duplicate_window=120.0,
        ),
    )
    with translate_errors(f"consumer {layout.events_stream}/{layout.events_consumer}"):
        await conn.js.add_consumer(
            layout.events_stream,
            ConsumerConfig(
                durable_name=layout.events_consumer,
                filter_subject=layout.events_filter,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=EVENTS_ACK_WAIT_SECONDS,
                max_deliver=-1,
                max_ack_pending=20_000,
            ),
        )
    for bucket, history in ((layout.workflows_bucket, 1), (layout.definitions_bucket, 5)):
        with translate_errors(f"bucket {bucket}"):
            await conn.js.create_key_value(
                KeyValueConfig(bucket=bucket, history=history, storage=StorageType.FILE, replicas=replicas)
            )


async def ensure_task_consumer(
    conn: Connection, layout: Layout, task_type: str, domain: str | None, *, ack_wait_seconds: float | None
) -> str:
    """The durable pull consumer for (type, domain); returns its name.

    With ``ack_wait_seconds`` (a node, which knows the TaskDef's ``responseTimeoutSeconds``) the consumer is
    created or updated to that AckWait. Without it (a worker) an existing consumer is left as it is, and a
    missing one is created with Conductor's default response timeout of 3600 s.
    """
    name = layout.task_consumer(task_type, domain)
    if ack_wait_seconds is None:
        try:
            await conn.js.consumer_info(layout.tasks_stream, name)
        except nats.js.errors.NotFoundError:
            pass
        except nats.errors.Error as exc:
            raise ProvisioningError(f"consumer {name}: {exc}") from exc
        else:
            return name
    config = ConsumerConfig(
        durable_name=name,
        filter_subject=layout.task_subject(task_type, domain),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=float(ack_wait_seconds or 3600),
        max_deliver=-1,
        max_ack_pending=10_000,
    )
    with translate_errors(f"consumer {layout.tasks_stream}/{name}"):
        await conn.js.add_consumer(layout.tasks_stream, config)
    return name
