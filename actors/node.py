"""The node: consumes workflow events and runs one :class:`WorkflowActor` per active workflow.

Nodes are stateless; every workflow's state is in KV and every event in the events stream. Any number of
nodes may run against one deployment: they share the durable events consumer, and compare-and-set writes,
not ownership, keep each workflow single-writer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, final

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from partita.schemas import PayloadError
from partita.transport import (
    Connection,
    DefinitionStore,
    Delivery,
    Layout,
    PullConsumer,
    TransportError,
    dead_letter,
    ensure_layout,
)
from partita.transport.payloads import PayloadStore
from partita.transport.provision import (
    EVENTS_ACK_WAIT_SECONDS,
    EVENTS_PROGRESS_SECONDS,
    message_id_key,
    timers_in_events_stream,
)

from .definition_cache import DefinitionCache
from .effects import EffectPerformer
from .egress import EgressPolicy
from .events import Envelope, decode_event
from .fencing import Fences
from .membership import Membership
from .presence import WorkerPresence
from .reconciler import RECONCILE_AFTER_SECONDS, RECONCILE_RATE, Reconciler, ReconcilerCounters
from .system_tasks import system_task_workers
from .worker import run_workers
from .workflow_actor import ActorContext, ActorCounters, WorkflowActor

log = structlog.get_logger(__name__)

MAILBOX_SIZE: Final = 16
FETCH_MAX_WAIT: Final = 1.0
LAYOUT_PATIENCE_SECONDS: Final = 120.0  # a cluster electing leaders, a server restarting: wait, don't crash
SCRIPT_THREADS: Final = 4  # decisions that may run scripts, at once, in worker threads
DECISION_ATTEMPTS: Final = 5  # an event whose decision raises is tried this often (backing off), then dead-lettered


class NodeStatistics(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    events_received: int
    events_rejected: int  # poison events, dead-lettered
    actors_active: int
    events_in_flight: int
    results_rejected: int = 0  # worker reports for another task type or an older delivery (acked, logged)
    events_dead_lettered: int = 0  # poison events: deciding them failed `decision_attempts` times
    workflows_stranded: int = 0  # found by the reconciler with nothing durable to move them
    workflows_repaired: int = 0  # re-driven by a ReconcileWorkflow on this node
    workflows_audited: int = 0  # running workflows whose movers the reconciler checked
    events_taken_over: int = 0  # held past their AckWait (this node was frozen) and handled by another node


@dataclass(slots=True)
class _ActorSlot:
    send: MemoryObjectSendStream[Envelope]
    actor: WorkflowActor
    done: anyio.Event = field(default_factory=anyio.Event)


def default_node_name() -> str:
    return f"node-{socket.gethostname()}-{os.getpid()}"


@final
class Node:
    """``await tg.start(node.run)``; :meth:`request_stop` (or cancellation) shuts it down gracefully."""

    def __init__(
        self,
        conn: Connection,
        layout: Layout | None = None,
        *,
        name: str | None = None,
        max_in_flight: int = 512,
        idle_seconds: float = 30.0,
        stop_grace: float = 10.0,
        replicas: int | None = None,
        system_tasks: bool = True,
        expression_env: Sequence[str] = (),
        history: bool = True,
        decision_attempts: int = DECISION_ATTEMPTS,
        reconcile_after: float = RECONCILE_AFTER_SECONDS,
        reconcile_rate: float = RECONCILE_RATE,
        http_allow: Sequence[str] = (),
    ) -> None:
        """``http_allow``: networks (``10.0.0.0/8``), addresses or host names HTTP tasks may reach although they
        are internal (loopback, private, link-local, ...; see :mod:`.egress`). By default only public addresses
        are reachable. A bad entry raises :class:`ValueError`."""
        if decision_attempts < 1:
            raise ValueError(f"decision_attempts must be >= 1, got {decision_attempts}")
        if reconcile_after <= 0 or reconcile_rate <= 0:
            raise ValueError(f"reconcile_after and reconcile_rate must be > 0, got {reconcile_after}, {reconcile_rate}")
        self._reconcile = (reconcile_after, reconcile_rate)
        self.reconciler: Reconciler | None = None
        self.conn = conn
        self.layout = layout or Layout()
        self.name = name or default_node_name()
        self._max_in_flight = max_in_flight
        self._idle_seconds = idle_seconds
        self._stop_grace = stop_grace
        self._replicas = replicas
        self._system_tasks = system_tasks
        # A lone string is one entry (iterating it would parse each character as one).
        self._egress = EgressPolicy.parse([http_allow] if isinstance(http_allow, str) else http_allow)
        self._history = history
        self._decision_attempts = decision_attempts
        self._presence: WorkerPresence | None = None
        self.membership: Membership | None = None
        # Environment variables expressions may read: an explicit allow-list, read once.
        self._environment = {name: os.environ[name] for name in expression_env if name in os.environ}
        self._actors: dict[str, _ActorSlot] = {}
        self._in_flight: dict[Delivery, float] = {}  # -> when it was fetched (monotonic)
        self._capacity = anyio.CapacityLimiter(max_in_flight)
        self._stopping = anyio.Event()
        self._consuming = False  # events are being fetched (for readiness)
        self._received = 0
        self._rejected = 0
        self._counters = ActorCounters()  # shared with every actor through the ActorContext

    def statistics(self) -> NodeStatistics:
        reconciled = self.reconciler.counters if self.reconciler else ReconcilerCounters()
        return NodeStatistics(
            name=self.name,
            events_received=self._received,
            events_rejected=self._rejected,
            actors_active=len(self._actors),
            events_in_flight=len(self._in_flight),
            results_rejected=self._counters.results_rejected,
            events_dead_lettered=self._counters.events_dead_lettered,
            workflows_stranded=reconciled.stranded,
            workflows_repaired=self._counters.workflows_repaired,
            workflows_audited=reconciled.audited,
            events_taken_over=self._counters.events_taken_over,
        )

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready = consuming events, connected to NATS and not shutting down (the health endpoint's /readyz)."""
        details: dict[str, object] = {
            "node": self.name,
            "consuming": self._consuming,
            "connected": self.conn.is_connected,
            "stopping": self._stopping.is_set(),
            "partitions": len(self.membership.owned) if self.membership else 0,
            "events_in_flight": len(self._in_flight),
            "actors_active": len(self._actors),
        }
        return self._consuming and self.conn.is_connected and not self._stopping.is_set(), details

    def request_stop(self) -> None:
        """Stop fetching, let actors finish what they hold (within ``stop_grace``), then return from run."""
        self._stopping.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        structlog.contextvars.bind_contextvars(node=self.name)
        await ensure_layout(
            self.conn, self.layout, replicas=self._replicas, patience=LAYOUT_PATIENCE_SECONDS, upgrade=True
        )
        definitions = DefinitionCache(DefinitionStore(await self.conn.kv(self.layout.definitions_bucket), self.layout))
        key = await message_id_key(self.conn, self.layout)
        timers_in_events = await timers_in_events_stream(self.conn, self.layout)
        if timers_in_events:
            log.warning("events_stream_allows_schedules", stream=self.layout.events_stream,
                        risk="any identity that may publish to it can purge it with a roll-up header",
                        fix="stop the nodes, then: partita migrate events (docs/security.md, Upgrading)")  # fmt: skip
        fences = Fences(self.conn, self.layout, self.name)  # shared: membership fences, effects name the fences
        effects = EffectPerformer(self.conn, self.layout, definitions, message_id_key=key,
                                  timers_in_events=timers_in_events, fences=fences)  # fmt: skip
        # Authenticated deployments (``partita auth``): workers may not create their consumers, and may announce
        # only the pairs they are granted, so the node creates what it hears. On an open server workers create
        # their own, and anyone could announce anything: the node does not act on announcements there.
        provision = effects.ensure_consumer if self.conn.identity is not None else None
        presence = self._presence = WorkerPresence(self.conn, self.layout, provision=provision)
        context = ActorContext(
            conn=self.conn,
            layout=self.layout,
            workflows=await self.conn.kv(self.layout.workflows_bucket),
            definitions=definitions,
            effects=effects,
            idle_seconds=self._idle_seconds,
            script_threads=anyio.CapacityLimiter(SCRIPT_THREADS),
            presence=presence,
            environment=self._environment,
            history=self._history,
            payloads=PayloadStore(self.conn, self.layout),
            counters=self._counters,
            decision_attempts=self._decision_attempts,
        )
        membership = self.membership = Membership(self.conn, self.layout, self.name, fences=fences)
        consumer = await self.conn.pull_consumer(self.layout.events_stream, membership.consumer)
        try:
            async with anyio.create_task_group() as services:
                await services.start(definitions.run)
                await services.start(presence.run)
                await services.start(membership.run)
                quiet, rate = self._reconcile
                reconciler = self.reconciler = Reconciler(
                    self.conn,
                    self.layout,
                    context.workflows,
                    effects,
                    lambda: membership.owned,
                    quiet_seconds=quiet,
                    rate=rate,
                )
                await services.start(reconciler.run)
                services.start_soon(self._progress_loop)
                if self._system_tasks:
                    specs = system_task_workers(self.conn, self.layout, self._egress)
                    await services.start(partial(run_workers, self.conn, specs, self.layout, stop=self._stopping))
                async with anyio.create_task_group() as actors:
                    log.info(
                        "node_started",
                        prefix=self.layout.prefix,
                        max_in_flight=self._max_in_flight,
                        http_allow=self._egress.entries(),
                    )
                    task_status.started()
                    self._consuming = True
                    try:
                        await self._fetch_loop(consumer, membership, actors, context)
                    finally:
                        self._consuming = False
                    await self._drain(actors)
                services.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._nak_in_flight()
                await consumer.aclose()
                await membership.leave()  # hand our partitions over now, not after the lease
            log.info("node_stopped", events_received=self._received)

    async def _fetch_loop(
        self, consumer: PullConsumer, membership: Membership, actors: TaskGroup, context: ActorContext
    ) -> None:
        while not self._stopping.is_set():
            if not membership.owned:  # more nodes than partitions, or waiting for another node to let go
                with anyio.move_on_after(FETCH_MAX_WAIT):
                    await membership.wait_changed()
                continue
            free = int(self._capacity.available_tokens)
            if free == 0:
                async with self._capacity:  # wait for a slot to free up
                    pass
                continue
            try:
                deliveries = await consumer.fetch(free, FETCH_MAX_WAIT)
            except TransportError as exc:
                log.warning("fetch_failed", error=str(exc))
                membership.suspect()  # our consumer may be gone (a node that thought us dead deleted it)
                with anyio.move_on_after(1.0):
                    await self._stopping.wait()
                continue
            for delivery in deliveries:
                await self._route(delivery, actors, context)

    async def _route(self, delivery: Delivery, actors: TaskGroup, context: ActorContext) -> None:
        self._received += 1
        try:
            envelope = decode_event(self.layout, delivery)
        except PayloadError as exc:
            # A poison message: no amount of redelivery makes it decodable. Terminate it, loudly.
            self._rejected += 1
            log.error("event_rejected", subject=delivery.subject, stream_seq=delivery.stream_seq, error=str(exc))
            try:
                await dead_letter(self.conn, self.layout, delivery, str(exc), seal=context.effects.sealed)
            except TransportError:  # not kept, so not terminated: it comes back after AckWait
                log.warning("dead_letter_failed", subject=delivery.subject, stream_seq=delivery.stream_seq)
            return
        await self._capacity.acquire_on_behalf_of(delivery)
        self._in_flight[delivery] = time.monotonic()

        def release() -> None:
            self._in_flight.pop(delivery, None)
            self._capacity.release_on_behalf_of(delivery)

        envelope.release = release
        workflow_id = envelope.workflow_id
        while True:
            slot = self._actors.get(workflow_id)
            if slot is None:
                slot = self._spawn(workflow_id, actors, context)
            try:
                await slot.send.send(envelope)
                return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                # The actor retired between lookup and send; a fresh one picks the event up.
                if self._actors.get(workflow_id) is slot:
                    del self._actors[workflow_id]

    def _spawn(self, workflow_id: str, actors: TaskGroup, context: ActorContext) -> _ActorSlot:
        send, receive = anyio.create_memory_object_stream[Envelope](max_buffer_size=MAILBOX_SIZE)
        slot = _ActorSlot(send=send, actor=WorkflowActor(workflow_id, context, receive))
        self._actors[workflow_id] = slot

        async def run_actor() -> None:
            try:
                await slot.actor.run()
            finally:
                if self._actors.get(workflow_id) is slot:
                    del self._actors[workflow_id]
                send.close()
                slot.done.set()

        actors.start_soon(run_actor, name=f"workflow-{workflow_id}")
        return slot

    async def _drain(self, actors: TaskGroup) -> None:
        """Close every mailbox so actors finish the events they hold and exit; cancel the stragglers."""
        for slot in list(self._actors.values()):
            slot.send.close()
        with anyio.move_on_after(self._stop_grace) as scope:
            for slot in list(self._actors.values()):
                await slot.done.wait()
        if scope.cancelled_caught:
            log.warning("node_drain_timeout", actors=len(self._actors))
            actors.cancel_scope.cancel()

    async def _progress_loop(self) -> None:
        """Keep the events this node holds from being redelivered while it is alive.

        The events consumer's AckWait is short so that a dead node's events return quickly; an event that
        waits in a busy workflow's mailbox, or takes long to apply, gets a ``+WPI`` (work in progress) every
        EVENTS_PROGRESS_SECONDS instead.
        """
        while True:
            await anyio.sleep(EVENTS_PROGRESS_SECONDS)
            held_since = time.monotonic() - EVENTS_PROGRESS_SECONDS
            for delivery, fetched in list(self._in_flight.items()):
                if fetched <= held_since:
                    with contextlib.suppress(TransportError):
                        await delivery.in_progress(EVENTS_ACK_WAIT_SECONDS)

    async def _nak_in_flight(self) -> None:
        """Hand back what we fetched but did not finish, so another node need not wait out the AckWait."""
        for delivery in list(self._in_flight):
            with contextlib.suppress(TransportError), anyio.move_on_after(1):
                await delivery.nak()
        self._in_flight.clear()
