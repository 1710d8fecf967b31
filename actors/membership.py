"""Partition ownership (design §5): which event partitions this node consumes, agreed through NATS alone.

Every node puts a key in the ``<prefix>_members`` bucket every second and watches the bucket. The live members
are those heard from within the lease (5 s); every node computes the same assignment from them
(:func:`partitions.assign`) and makes its own durable consumer (``node_<name>``) filter exactly its partitions.
The events stream is a work queue, so the server itself refuses a partition to a second consumer: a partition
moves only once its old owner dropped it (a live node, on seeing the new member list), left (SIGTERM: it
deletes its consumer and key), or was declared dead (its key silent for a lease: any node then deletes its
consumer, which hands its unacknowledged events over at once). Ownership buys cache affinity and spreads the
load; correctness never depends on it (compare-and-set writes do that).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import UTC, datetime
from typing import Final, final

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from partita.transport import Connection, KvBucket, Layout, TransportError, escape_token
from partita.transport.errors import PartitionTaken
from partita.transport.provision import delete_consumer, set_node_consumer

from .fencing import Fences
from .partitions import assign

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS: Final = 1.0
LEASE_SECONDS: Final = 5.0  # a member silent this long is gone; its partitions move


class MemberInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A member's key: who it is, when it last beat, and the partitions it consumes (for `partita cluster`)."""

    name: str
    host: str
    pid: int
    started_at: int
    heartbeat_at: int
    partitions: list[int]


def partitions_of(filters: list[str]) -> list[int]:
    """The partitions a node consumer's filter subjects (``<prefix>.wf.<p>.>``) name."""
    tokens = [subject.split(".") for subject in filters]
    return sorted(int(t[2]) for t in tokens if len(t) == 4 and t[1] == "wf" and t[2].isdigit() and t[3] == ">")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@final
class Membership:
    """``await tg.start(membership.run)`` (started after the first heartbeat and reconciliation, which may
    leave this node owning nothing yet); :meth:`leave` on a graceful stop. :attr:`owned` is what this node's
    consumer filters now; :meth:`wait_changed` wakes on a change."""

    def __init__(
        self,
        conn: Connection,
        layout: Layout,
        name: str,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        lease: float = LEASE_SECONDS,
        fences: Fences | None = None,
    ) -> None:
        self._conn = conn
        # Every partition we consume is fenced before its events are (actors/fencing.py).
        self.fences = fences or Fences(conn, layout, name)
        self.fences.on_refused = self.suspect
        self._layout = layout
        self.name = name
        self.consumer = layout.node_consumer(name)
        self._key = escape_token(name)
        self._heartbeat = heartbeat
        self._lease = lease
        self._started_at = _now_ms()
        self._last_seen: dict[str, float] = {}  # member key -> monotonic time last heard
        self._names: dict[str, str] = {}  # member key -> name
        self.owned: frozenset[int] = frozenset()
        self._changed = anyio.Event()
        self._dirty = anyio.Event()
        self._left = False
        self._members: KvBucket | None = None
        self._swept = 0.0  # when dead members' consumers were last looked for (monotonic)
        self._healthy_since: float | None = None  # since when our heartbeats go through (monotonic)
        self._shared_consumer_gone = False
        self._caught_up = anyio.Event()  # the first watch delivered every stored key
        self._own_seen = time.monotonic()  # when the watch last brought our own heartbeat back
        self._watch_scope: anyio.CancelScope | None = None
        self._trusted_live: set[str] = set()  # the live members as last seen with a trusted view
        self._verified = False  # whether `owned` is what the server said our consumer filters, since we last asked

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def suspect(self) -> None:
        """Something says our consumer may not be what we think (a fetch from it failed): check it now."""
        self._verified = False
        self._dirty.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        members = self._members = await self._conn.kv(self._layout.members_bucket)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_forever, members)
            with anyio.move_on_after(10):  # the other members as stored, before our first decision
                await self._caught_up.wait()
            await self._beat_once(members)
            # Heartbeats never wait for reconciliation: a consumer change can take seconds on a cluster (an
            # election), and a node whose heartbeats stalled that long would be declared gone while alive.
            tg.start_soon(self._beat_forever, members)
            await self._reconcile_once()
            task_status.started()
            while not self._left:
                with anyio.move_on_after(self._heartbeat):
                    await self._dirty.wait()
                self._dirty = anyio.Event()
                await self._reconcile_once()
            tg.cancel_scope.cancel()

    async def _beat_forever(self, members: KvBucket) -> None:
        while not self._left:
            await anyio.sleep(self._heartbeat)
            await self._beat_once(members)

    async def _beat_once(self, members: KvBucket) -> None:
        try:
            await self._beat(members)
        except TransportError as exc:  # the bucket does not answer (a cluster electing a leader): our view of
            self._healthy_since = None  # the others' heartbeats is unreliable too, so declare nobody gone
            log.warning("membership_heartbeat_failed", error=str(exc))
            return
        now = time.monotonic()
        if self._healthy_since is None:
            self._healthy_since = now
        if now - self._own_seen > self._lease and self._watch_scope is not None:
            # Our own heartbeats go through but the watch does not bring them back: it is stuck (its server
            # went away). Until a fresh watch delivers, nobody is declared gone (see _trusted).
            log.warning("member_watch_restarted", silent_for=round(now - self._own_seen, 1))
            self._own_seen = now
            self._watch_scope.cancel()

    async def _reconcile_once(self) -> None:
        try:
            if not self._shared_consumer_gone:
                await self._remove_shared_consumer()
                self._shared_consumer_gone = True
            await self._reconcile()
        except TransportError as exc:  # NATS busy or unavailable: read the server's view again next time
            self._verified = False
            log.warning("membership_failed", error=str(exc))

    async def leave(self) -> None:
        """Hand every partition back (delete our consumer: its unacknowledged events return at once) and say so
        (delete our key), so the others take over now rather than after the lease."""
        self._left = True
        self._dirty.set()
        try:
            await set_node_consumer(self._conn, self._layout, self.name, ())
            self._set_owned(frozenset())
            if self._members is not None:
                await self._members.delete(self._key)
            log.info("member_left", member=self.name)
        except TransportError as exc:  # the others take over after the lease
            log.warning("member_leave_failed", member=self.name, error=str(exc))

    # --- internals -------------------------------------------------------------------------------------

    async def _remove_shared_consumer(self) -> None:
        """Nodes before partition ownership shared one consumer over every partition; it would overlap ours."""
        if await delete_consumer(self._conn, self._layout.events_stream, self._layout.events_consumer):
            log.warning("shared_events_consumer_removed", consumer=self._layout.events_consumer)

    async def _beat(self, members: KvBucket) -> None:
        if self._left:
            return
        info = MemberInfo(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            heartbeat_at=_now_ms(),
            partitions=sorted(self.owned),
        )
        await members.put(self._key, msgspec.json.encode(info))

    async def _watch_forever(self, members: KvBucket) -> None:
        while not self._left:
            with anyio.CancelScope() as scope:
                self._watch_scope = scope
                try:
                    await self._watch(members)
                except TransportError as exc:
                    log.warning("member_watch_failed", error=str(exc))
            self._watch_scope = None
            await anyio.sleep(0.5)

    async def _watch(self, members: KvBucket) -> None:
        replaying = True  # the stored keys first: date each by its own heartbeat, not by when we read it
        async for entry in members.watch(deletes=True):
            if entry is None:
                replaying = False
                self._caught_up.set()
                continue
            if entry.deleted:
                self._last_seen.pop(entry.key, None)
                self._dirty.set()
                continue
            try:
                info = msgspec.json.decode(entry.value, type=MemberInfo)
            except msgspec.DecodeError:
                log.warning("member_key_malformed", key=entry.key)
                continue
            now = time.monotonic()
            heard = now - max(0.0, (_now_ms() - info.heartbeat_at) / 1000) if replaying else now
            if entry.key == self._key:
                self._own_seen = max(self._own_seen, heard)
            is_new = entry.key not in self._last_seen or self._last_seen[entry.key] < now - self._lease
            self._last_seen[entry.key] = max(heard, self._last_seen.get(entry.key, heard))
            self._names[entry.key] = info.name
            if is_new:
                self._dirty.set()

    def live_members(self) -> list[str]:
        now = time.monotonic()
        live = {self._names.get(key, key) for key, seen in self._last_seen.items() if now - seen <= self._lease}
        if not self._left:
            live.add(self.name)
        return sorted(live)

    def _trusted(self) -> bool:
        """Whether our own heartbeats have gone through for a whole lease and come back through the watch: only
        then does another member's silence mean it is gone, rather than the bucket or our watch failing."""
        now = time.monotonic()
        healthy = self._healthy_since is not None and now - self._healthy_since >= self._lease
        return healthy and now - self._own_seen <= 2 * self._heartbeat + 1.0

    async def _reconcile(self) -> None:
        """Make our consumer filter our share of the partitions.

        What we own is what the server says our consumer filters, never what we last asked for: a change whose
        answer timed out may still happen (a consumer created after we gave up), and another node may have
        deleted our consumer (it thought us dead). So before changing anything, and at least every half lease,
        the consumers are read and :attr:`owned` is corrected to the server's view.
        """
        if self._left:
            return
        live = self.live_members()
        if self._trusted():
            self._trusted_live = set(live)
        else:  # members may join now, but none is declared gone until the bucket has answered us for a lease
            live = sorted(set(live) | self._trusted_live)
        target = assign(live, self._layout.partitions).get(self.name, frozenset())
        settled = target == self.owned and self._verified and not self.fences.missing(self.owned)
        if settled and time.monotonic() - self._swept < self._lease / 2:
            return
        # Someone may hold what we should own (a dead member?), our consumer may not be what we think, or it is
        # time for the periodic sweep.
        self._swept = time.monotonic()
        consumers = await self._node_consumers()
        if self._trusted() and await self._remove_dead_consumers(consumers, set(live)):
            consumers = await self._node_consumers()
        self._adopt(consumers)
        if target != self.owned:
            held = {p for member, (parts, _) in consumers.items() if member != self.name for p in parts}
            await self._take(target, held)
        if unfenced := self.fences.missing(self.owned):  # adopted as they were, refused, or a fence that failed
            log.info("partitions_fenced", member=self.name, count=len(unfenced))
            await self.fences.take(unfenced)

    def _adopt(self, consumers: dict[str, tuple[list[int], datetime]]) -> None:
        """Take the server's word for what our consumer filters. Our consumer's filter only ever grows by being
        created anew (see _take), so whatever it filters, it delivers every stored event of."""
        mine = consumers.get(self.name)
        actual = frozenset(mine[0]) if mine else frozenset()
        if actual != self.owned:
            log.warning(
                "partitions_corrected",
                member=self.name,
                believed=len(self.owned),
                actual=len(actual),
                consumer="missing" if mine is None else "present",
            )
            self._set_owned(actual)
        self._verified = True

    async def _take(self, target: frozenset[int], held: set[int]) -> None:
        keep = self.owned & target
        if keep != self.owned:  # release first: another node may be waiting for exactly these
            self._verified = False  # until the server has answered
            await set_node_consumer(self._conn, self._layout, self.name, keep)
            self._set_owned(keep)
            self._verified = True
        free = (target - keep) - held
        if not free:
            if target != keep:
                log.info("partitions_awaited", member=self.name, owned=len(keep), waiting_for=len(target - keep))
            return
        # A consumer whose filter grows does not go back for the events already stored on the new subjects (it
        # only delivers past its position): make it anew, which delivers every stored event of its partitions.
        # Events we still hold come again (harmless: they replay). If the server does not answer, the next
        # round reads what it did (see _adopt) rather than deleting a consumer it may have just created.
        self._verified = False
        self._set_owned(frozenset(), quiet=True)
        await delete_consumer(self._conn, self._layout.events_stream, self.consumer)
        try:
            await set_node_consumer(self._conn, self._layout, self.name, keep | free)
        except PartitionTaken:  # taken meanwhile by a node that saw the members sooner: next beat
            self._verified = True
            return
        try:  # before any of their events is fetched: the fence must come before our replays of them
            await self.fences.take(free)
        except TransportError as exc:  # fenced again by the next rounds; until then their dispatches wait
            log.warning("partitions_unfenced", member=self.name, error=str(exc))
        self._set_owned(keep | free)
        self._verified = True
        if target - self.owned:
            log.info(
                "partitions_awaited", member=self.name, owned=len(self.owned), waiting_for=len(target - self.owned)
            )

    def _set_owned(self, owned: frozenset[int], *, quiet: bool = False) -> None:
        """``quiet``: a moment's reset while our consumer is made anew (see _take); the fences we hold stay."""
        if not quiet:
            self.fences.keep(owned)
        if owned != self.owned:
            if not quiet:
                log.info("partitions_owned", member=self.name, count=len(owned), gained=len(owned - self.owned))
            self.owned = owned
            self._changed.set()
            self._changed = anyio.Event()

    async def _remove_dead_consumers(self, consumers: dict[str, tuple[list[int], datetime]], live: set[str]) -> bool:
        """Delete the consumers of members silent for a lease (their events then move to the new owners)."""
        now = datetime.now(UTC)
        removed = False
        for member, (_, created) in consumers.items():
            if member in live or (now - created).total_seconds() < self._lease or await self._still_beating(member):
                continue
            consumer = self._layout.node_consumer(member)
            if await delete_consumer(self._conn, self._layout.events_stream, consumer):
                log.warning("dead_member_consumer_removed", member=member, consumer=consumer)
                removed = True
        return removed

    async def _still_beating(self, member: str) -> bool:
        """Ask the bucket itself before declaring ``member`` gone (a watch may lag); remember what it says."""
        if self._members is None:
            return False
        entry = await self._members.get(escape_token(member))
        if entry is None:
            return False
        try:
            info = msgspec.json.decode(entry.value, type=MemberInfo)
        except msgspec.DecodeError:
            return False
        age = max(0.0, (_now_ms() - info.heartbeat_at) / 1000)
        if age > self._lease:
            return False
        self._last_seen[entry.key] = time.monotonic() - age
        self._names[entry.key] = info.name
        return True

    async def _node_consumers(self) -> dict[str, tuple[list[int], datetime]]:
        """Every node consumer: its member -> (the partitions it filters, when it was created)."""
        try:
            infos = await self._conn.js.consumers_info(self._layout.events_stream)
        except Exception as exc:
            raise TransportError(f"list consumers of {self._layout.events_stream}: {exc}") from exc
        found: dict[str, tuple[list[int], datetime]] = {}
        for info in infos:
            member = self._layout.consumer_member(info.name)
            if member is not None:
                subjects = info.config.filter_subjects or [info.config.filter_subject or ""]
                found[member] = (partitions_of(subjects), info.created)
        return found


class MemberStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: str
    host: str
    pid: int
    started_at: int
    heartbeat_age_seconds: float
    live: bool
    partitions: list[int]  # what its consumer filters (the server's view)
    in_flight: int  # events delivered to it and not yet acknowledged


class PartitionStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    partition: int
    owner: str | None
    waiting: int  # events stored for the partition and not yet acknowledged (the lag)


class ClusterStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    members: list[MemberStatus]
    partitions: list[PartitionStatus]


async def read_cluster(conn: Connection, layout: Layout, lease: float = LEASE_SECONDS) -> ClusterStatus:
    """Members (their keys), who owns which partition (their consumers) and the lag of every partition."""
    members_kv = await conn.kv(layout.members_bucket)
    infos: dict[str, MemberInfo] = {}
    for key in await members_kv.keys():
        entry = await members_kv.get(key)
        if entry is not None:
            with contextlib.suppress(msgspec.DecodeError):
                infos[key] = msgspec.json.decode(entry.value, type=MemberInfo)
    try:
        consumers = await conn.js.consumers_info(layout.events_stream)
        stream = await conn.js.stream_info(layout.events_stream, subjects_filter=layout.events_filter)
    except Exception as exc:
        raise TransportError(f"read {layout.events_stream}: {exc}") from exc
    owners: dict[int, str] = {}
    filtered: dict[str, tuple[list[int], int]] = {}
    for consumer in consumers:
        member = layout.consumer_member(consumer.name)
        if member is None:
            continue
        parts = partitions_of(consumer.config.filter_subjects or [consumer.config.filter_subject or ""])
        filtered[member] = (parts, consumer.num_ack_pending or 0)
        owners.update(dict.fromkeys(parts, member))
    waiting: dict[int, int] = {}
    for subject, count in (stream.state.subjects or {}).items():
        token = subject.split(".")[2]
        if token.isdigit():
            waiting[int(token)] = waiting.get(int(token), 0) + count
    now = _now_ms()
    members = []
    for info in sorted(infos.values(), key=lambda i: i.name):
        age = max(0.0, (now - info.heartbeat_at) / 1000)
        parts, in_flight = filtered.get(info.name, ([], 0))
        members.append(MemberStatus(name=info.name, host=info.host, pid=info.pid, started_at=info.started_at,
                                    heartbeat_age_seconds=round(age, 1), live=age <= lease, partitions=parts,
                                    in_flight=in_flight))  # fmt: skip
    partitions = [
        PartitionStatus(partition=p, owner=owners.get(p), waiting=waiting.get(p, 0)) for p in range(layout.partitions)
    ]
    return ClusterStatus(members=members, partitions=partitions)
