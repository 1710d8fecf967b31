"""Idempotent provisioning of Partita's streams, consumers and KV buckets.

Every function here may run any number of times, from any node, concurrently: it creates what is missing and
brings what exists to the required configuration.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import replace

import anyio
import nats.errors
import nats.js.errors
import structlog
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)

from .connection import Connection, translate_errors
from .errors import CasConflict, PartitionTaken, PermissionDenied, ProvisioningError, TransportError
from .layout import Layout

log = structlog.get_logger(__name__)

# How long an event fetched by a node that then died waits before another node gets it. A live node tells the
# server it is still working (``+WPI``) on every event it has held for EVENTS_PROGRESS_SECONDS, so a slow event
# (a queue behind one busy workflow, a large payload) is not redelivered; if it were, CAS + eventSeq make the
# duplicate harmless.
EVENTS_ACK_WAIT_SECONDS = 4.0
EVENTS_PROGRESS_SECONDS = 1.0
_STREAM_IN_USE = 10058  # "stream name already in use with a different configuration"
# Effects replayed within this window are dropped as duplicates (message ids); keep it above the longest
# delay before an unacknowledged event is retried (the actor's backoff caps at 60 s).
DUPLICATE_WINDOW_SECONDS = 120.0
HISTORY_DAYS = 30  # how long the history stream keeps a transition (an operator may change the stream's max_age)


async def _stream_config(conn: Connection, name: str) -> StreamConfig | None:
    try:
        info = await conn.js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return None
    except nats.errors.Error as exc:
        raise ProvisioningError(f"stream {name}: {exc}") from exc
    return info.config


async def _ensure_stream(
    conn: Connection,
    config: StreamConfig,
    replicas: int | None,
    *,
    upgrade: bool,
    retired: frozenset[str] = frozenset(),
) -> None:
    """Create the stream if missing. An existing one is updated when ``replicas`` is given (a node provisioning
    on purpose), or, with ``upgrade`` (any node), when it lacks a subject or a feature this version needs (one
    made by an older Partita), keeping its replicas; otherwise it is adopted as it is, so a client can never
    shrink an R3 stream."""
    assert config.name is not None
    existing = await _stream_config(conn, config.name)
    if existing is not None and existing.allow_msg_schedules and not config.allow_msg_schedules:
        # Made by an older version: schedules cannot be turned off (and bring roll-ups with them), and a stream
        # with schedules cannot source another; it stays as it is until migrated.
        config = replace(config, allow_msg_schedules=True, sources=None)
    if existing is not None and replicas is None:
        if not upgrade or (upgraded := _upgraded(existing, config, retired)) is None:
            return
        log.warning("stream_upgraded", stream=config.name, subjects=upgraded.subjects)
        config, replicas = upgraded, existing.num_replicas
    elif existing is not None:  # provisioning on purpose: this version's settings, but what cannot change stays
        kept = [subject for subject in existing.subjects or () if subject not in retired]
        config = replace(config, subjects=[*kept, *(s for s in config.subjects or () if s not in kept)],
                         allow_msg_schedules=config.allow_msg_schedules or existing.allow_msg_schedules)  # fmt: skip
    config.num_replicas = replicas or 1
    try:
        if existing is None:
            await conn.js.add_stream(config)
        else:
            await conn.js.update_stream(config)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise ProvisioningError(f"stream {config.name}: {exc.description}") from exc
        # Created concurrently by another process a moment ago: adopt it.
    except nats.errors.Error as exc:
        raise ProvisioningError(f"stream {config.name}: {exc}") from exc


def _upgraded(existing: StreamConfig, wanted: StreamConfig, retired: frozenset[str]) -> StreamConfig | None:
    """``existing`` with the subjects and the rollup permission ``wanted`` adds, without the ``retired`` subjects
    an older version used (replaced by narrower ones), the rest (an operator's tuning) untouched; None when
    nothing is missing or retired."""
    kept = [subject for subject in existing.subjects or () if subject not in retired]
    missing = [subject for subject in wanted.subjects or () if subject not in kept]
    rollup = bool(wanted.allow_rollup_hdrs) and not existing.allow_rollup_hdrs
    sourced = {source.name for source in existing.sources or ()}
    sources = [source for source in wanted.sources or () if source.name not in sourced]
    if not missing and not rollup and not sources and len(kept) == len(existing.subjects or ()):
        return None
    return replace(existing, subjects=[*kept, *missing], sources=[*(existing.sources or ()), *sources] or None,
                   allow_rollup_hdrs=existing.allow_rollup_hdrs or wanted.allow_rollup_hdrs)  # fmt: skip


async def _adopt(conn: Connection, stream: str, replicas: int | None) -> bool:
    """Whether the stream behind a bucket exists; if so, bring it to ``replicas`` when given."""
    existing = await _stream_config(conn, stream)
    if existing is None:
        return False
    if replicas is not None and existing.num_replicas != replicas:
        existing.num_replicas = replicas
        with translate_errors(f"stream {stream}"):
            await conn.js.update_stream(existing)
    return True


async def _ensure_bucket(
    conn: Connection, bucket: str, history: int, replicas: int | None, ttl: float | None = None
) -> None:
    if await _adopt(conn, f"KV_{bucket}", replicas):
        return
    with translate_errors(f"bucket {bucket}"):
        await conn.js.create_key_value(
            KeyValueConfig(bucket=bucket, history=history, storage=StorageType.FILE, replicas=replicas or 1, ttl=ttl)
        )


async def _forbid_rollups(conn: Connection, stream: str) -> None:
    """Refuse ``Nats-Rollup`` headers on a bucket that never needs them. Workers write the rate-limit counters of
    their own task types, and a roll-up on any key of the bucket would purge every type's counters (the whole
    stream, with ``all``): the counters only need create and compare-and-set. KV buckets are made with roll-ups
    allowed, so this turns them off, on a new bucket and on one an older version made."""
    config = await _stream_config(conn, stream)
    if config is not None and config.allow_rollup_hdrs:
        with translate_errors(f"stream {stream}"):
            await conn.js.update_stream(replace(config, allow_rollup_hdrs=False))


async def _ensure_object_store(conn: Connection, bucket: str, replicas: int | None) -> None:
    if await _adopt(conn, f"OBJ_{bucket}", replicas):
        return
    config = ObjectStoreConfig(
        bucket=bucket,
        description="Payloads over the size threshold (Conductor's external payload storage)",
        storage=StorageType.FILE,
        replicas=replicas or 1,
    )
    try:
        await conn.js.create_object_store(bucket, config=config)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:  # created concurrently a moment ago: adopt it
            raise ProvisioningError(f"object store {bucket}: {exc.description}") from exc
    except nats.errors.Error as exc:
        raise ProvisioningError(f"object store {bucket}: {exc}") from exc


async def ensure_layout(
    conn: Connection, layout: Layout, *, replicas: int | None = None, patience: float = 0.0, upgrade: bool = False
) -> None:
    """Create what is missing: the streams and the KV buckets (nodes make their own events consumers).

    With ``patience`` (long-running nodes and workers), a JetStream that does not answer yet (a cluster electing
    leaders after a server died, a server still starting) is asked again, backing off, for that many seconds
    before the error is raised; a command-line client fails at once instead.

    ``replicas=None`` (clients, workers, nodes not told otherwise) creates missing pieces with one replica
    and leaves existing ones alone. A number (``partita node --replicas 3``) also brings existing streams and
    buckets to that replica count. ``upgrade`` (nodes) adds what a stream made by an older version lacks.
    """
    started = time.monotonic()
    deadline = started + patience
    delay = 0.5
    while True:
        try:
            await _ensure_layout(conn, layout, replicas, upgrade)
            return
        except TransportError as exc:
            explained = conn.explain(exc, started, "create the missing streams and buckets", "$JS.API.STREAM.")
            if explained is not exc:
                raise PermissionDenied(f"{explained}; a node creates them when it first starts") from exc
            if time.monotonic() + delay > deadline:
                raise
            log.warning("layout_unavailable", error=str(exc), retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _ensure_layout(conn: Connection, layout: Layout, replicas: int | None, upgrade: bool) -> None:
    day = 24 * 3600.0
    p = layout.prefix
    streams = (
        (layout.tasks_stream, "Partita task messages: one subject per task", [f"{p}.task.>", f"{p}.tsched.>",
         f"{p}.fence.>"], None),
        (layout.emitted_stream, "Events of EVENT tasks with a 'conductor' sink, kept 7 days", [f"{p}.event.>"],
         7 * day),
        (layout.dead_letter_stream, "Messages nothing could process, with the reason", [f"{p}.dlq.>"], 30 * day),
        (layout.history_stream, "Every workflow's transitions, kept 30 days", [f"{p}.history.>"], HISTORY_DAYS * day),
    )  # fmt: skip
    for name, description, subjects, max_age in streams:
        work_queue = max_age is None  # tasks are consumed once; the others are kept for reading
        config = StreamConfig(
            name=name,
            description=description,
            subjects=subjects,
            retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=max_age,
            allow_msg_schedules=True if work_queue else None,  # delayed dispatches
            allow_rollup_hdrs=name == layout.tasks_stream,  # a partition's fence keeps one message
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
        )
        await _ensure_stream(conn, config, replicas, upgrade=upgrade)
    await _ensure_stream(conn, _timers_config(layout), replicas, upgrade=upgrade)
    # Older versions let the events stream take any partition token; it now names each partition.
    retired = frozenset({layout.events_filter})
    await _ensure_stream(conn, _events_config(layout), replicas, upgrade=upgrade, retired=retired)
    running = StreamConfig(
        name=layout.running_stream,
        description="Partita workflows that have not ended, one message each (the reconciler's index)",
        subjects=[f"{layout.prefix}.running.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=1,
        allow_msg_ttl=True,  # an ended workflow's entry is replaced by a marker that expires (RUNNING_ENDED_TTL)
    )
    await _ensure_stream(conn, running, replicas, upgrade=upgrade)
    await _ensure_bucket(conn, layout.workflows_bucket, 1, replicas)
    await _ensure_bucket(conn, layout.members_bucket, 1, replicas, ttl=MEMBERS_TTL_SECONDS)
    await _ensure_bucket(conn, layout.definitions_bucket, 5, replicas)
    await _ensure_bucket(conn, layout.secrets_bucket, 1, replicas)
    # Rate-limit windows: one counter per (task type, window); a day is longer than any sensible window.
    await _ensure_bucket(conn, layout.limits_bucket, 1, replicas, ttl=24 * 3600.0)
    await _forbid_rollups(conn, f"KV_{layout.limits_bucket}")
    await _ensure_object_store(conn, layout.payloads_bucket, replicas)


async def timers_in_events_stream(conn: Connection, layout: Layout) -> bool:
    """Whether the events stream is one an older version made, with message schedules of its own: then timers
    are scheduled in it, as before (a stream with schedules cannot source the timers stream)."""
    config = await _stream_config(conn, layout.events_stream)
    return bool(config and config.allow_msg_schedules)


def _timers_config(layout: Layout) -> StreamConfig:
    """Nodes' timers: a schedule per timer, and what it fires when due, kept a day (long enough for the events
    stream to source it; the reconciler re-arms a lost WAIT or retry timer)."""
    return StreamConfig(
        name=layout.timers_stream,
        description="Partita timers: nodes' schedules and what they fire (sourced by the events stream)",
        subjects=layout.timers_subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=TIMERS_MAX_AGE_SECONDS,
        allow_msg_schedules=True,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


def _events_config(layout: Layout) -> StreamConfig:
    """Starts, results, commands (published by clients and workers, through their accounts' imports) and the
    fired timers it sources from the timers stream as ``<prefix>.wf.<p>.timer``. No schedules, so no roll-ups:
    nats-server allows roll-ups on any stream that allows schedules, and a roll-up purges the stream."""
    fired = SubjectTransform(src=f"{layout.prefix}.fired.*", dest=f"{layout.prefix}.wf.{{{{wildcard(1)}}}}.timer")
    return StreamConfig(
        name=layout.events_stream,
        description="Partita workflow events: starts, results, commands, timers",
        subjects=layout.events_subjects,
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        sources=[StreamSource(name=layout.timers_stream, subject_transforms=[fired])],
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


TIMERS_MAX_AGE_SECONDS = 24 * 3600.0
MEMBERS_TTL_SECONDS = 3600.0  # a member's key outlives its node by this much, for `partita cluster` to show it
# How long creating or changing a node consumer may take. On a cluster a new consumer is a Raft group that must
# elect a leader; when the peer chosen to lead it is down, the others wait out an election timeout (4-9 s in
# nats-server) first. A client that gives up sooner sees a timeout for a consumer the server then creates.
CONSUMER_CHANGE_TIMEOUT_SECONDS = 15.0
_CONSUMER_NOT_UNIQUE = 10100  # "filtered consumer not unique on workqueue stream": another node holds a partition


async def set_node_consumer(conn: Connection, layout: Layout, member: str, partitions: Iterable[int]) -> None:
    """Make ``member``'s durable events consumer filter exactly ``partitions`` (deleting it for none).

    The events stream is a work queue, so the server lets only one consumer filter a partition: taking one that
    another node's consumer still filters raises :class:`PartitionTaken`, and nothing changes. Dropping a
    partition from the filter releases it at once, its unacknowledged events included.
    """
    name = layout.node_consumer(member)
    subjects = [layout.partition_filter(p) for p in sorted(set(partitions))]
    if not subjects:
        await delete_consumer(conn, layout.events_stream, name)
        return
    config = ConsumerConfig(
        durable_name=name,
        filter_subjects=subjects,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=EVENTS_ACK_WAIT_SECONDS,
        max_deliver=-1,
        max_ack_pending=20_000,
    )
    try:  # creates, or updates the filter
        await conn.js.add_consumer(layout.events_stream, config, timeout=CONSUMER_CHANGE_TIMEOUT_SECONDS)
    except nats.js.errors.APIError as exc:
        if exc.err_code == _CONSUMER_NOT_UNIQUE:
            raise PartitionTaken(f"{name}: a partition among {len(subjects)} is still another node's") from exc
        raise TransportError(
            f"consumer {layout.events_stream}/{name}: {exc.description} (code {exc.err_code})"
        ) from exc
    except nats.errors.Error as exc:
        raise TransportError(f"consumer {layout.events_stream}/{name}: {exc}") from exc


async def delete_consumer(conn: Connection, stream: str, name: str) -> bool:
    """Delete a consumer; False if there was none. Its unacknowledged messages go back to the stream at once."""
    try:
        await conn.js.delete_consumer(stream, name)
    except nats.js.errors.NotFoundError:
        return False
    except nats.errors.Error as exc:
        raise TransportError(f"delete consumer {stream}/{name}: {exc}") from exc
    return True


DEFAULT_MAX_IN_FLIGHT = 10_000  # a task consumer's max_ack_pending when the TaskDef sets no concurrentExecLimit


MESSAGE_ID_KEY = "message-ids"


async def message_id_key(conn: Connection, layout: Layout) -> bytes:
    """The deployment's key for sealing the message ids nodes publish on the events stream, created by the
    first node. JetStream drops a repeated ``Nats-Msg-Id`` whatever its subject, so ids others can predict
    (a timer's, a child start's) could be pre-empted by anyone who may publish on that stream; sealed with a
    key only nodes can read, they cannot. Every node uses the same key, so a replay by another node is still
    deduplicated."""
    bucket = await conn.kv(layout.secrets_bucket)
    entry = await bucket.get(MESSAGE_ID_KEY)
    if entry is None:
        with contextlib.suppress(CasConflict):  # another node created it a moment ago: use theirs
            await bucket.create(MESSAGE_ID_KEY, secrets.token_hex(32).encode())
        entry = await bucket.get(MESSAGE_ID_KEY)
        if entry is None:
            raise ProvisioningError(f"{layout.secrets_bucket}/{MESSAGE_ID_KEY} vanished as it was created")
    return entry.value


async def find_task_consumer(
    conn: Connection, layout: Layout, task_type: str, domain: str | None
) -> tuple[str, float] | None:
    """The (type, domain) consumer's ``(name, AckWait in seconds)``, or None while nobody has created it."""
    name = layout.task_consumer(task_type, domain)
    try:
        info = await conn.js.consumer_info(layout.tasks_stream, name)
    except nats.js.errors.NotFoundError:
        return None
    except nats.errors.Error as exc:
        raise ProvisioningError(f"consumer {name}: {exc}") from exc
    return name, float(info.config.ack_wait or 30)  # the server's default AckWait


async def ensure_task_consumer(
    conn: Connection,
    layout: Layout,
    task_type: str,
    domain: str | None,
    *,
    ack_wait_seconds: float,
    max_in_flight: int | None = None,
    adopt_existing: bool = False,
) -> tuple[str, float]:
    """The durable pull consumer for (type, domain): ``(name, AckWait in seconds)``.

    A node (which knows the registered TaskDef's ``responseTimeoutSeconds`` and ``concurrentExecLimit``) creates
    or updates the consumer to that AckWait and ``max_ack_pending`` = ``max_in_flight``: JetStream then hands out
    at most that many unfinished tasks across *all* workers, which is Conductor's concurrentExecLimit enforced by
    the server. With ``adopt_existing`` (a worker) an existing consumer is left as it is, and only a missing one
    is created with ``ack_wait_seconds``.
    """
    name = layout.task_consumer(task_type, domain)
    if adopt_existing:
        found = await find_task_consumer(conn, layout, task_type, domain)
        if found is not None:
            return found
    ack_wait = float(ack_wait_seconds)
    config = ConsumerConfig(
        durable_name=name,
        filter_subject=f"{layout.task_subject(task_type, domain)}.*",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=max_in_flight or DEFAULT_MAX_IN_FLIGHT,
    )
    with translate_errors(f"consumer {layout.tasks_stream}/{name}"):
        await conn.js.add_consumer(layout.tasks_stream, config)
    return name, ack_wait


async def purge_task(conn: Connection, layout: Layout, task_type: str, domain: str | None, task_id: str) -> None:
    """Remove a canceled task's queued message and any pending delayed dispatch of it."""
    for subject in (layout.task_message_subject(task_type, domain, task_id), layout.task_schedule_subject(task_id)):
        with translate_errors(f"purge {subject}"):
            await conn.js.purge_stream(layout.tasks_stream, subject=subject)
