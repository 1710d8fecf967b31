"""Fencing: a node that lost a partition while it was frozen cannot dispatch that partition's tasks afterwards.

The zombie guard (``WorkflowActor._still_ours``) keeps a node that wakes from a freeze (SIGSTOP, a long GC
pause, a partitioned host) from *starting* effects for events another node has taken over meanwhile. It cannot
recall what it handed to the client library just before freezing: nats-py buffers publishes and writes them
when the process runs again, possibly minutes later. A task dispatch arriving that late is past the tasks
stream's duplicate window, so it is not a duplicate of the new owner's replay of the same dispatch any more:
the task would run twice. Fencing makes the server refuse it, however late it arrives:

* every partition has a fence subject in the tasks stream (``<prefix>.fence.<p>``; a rollup keeps one message);
* a node taking a partition publishes a fence message there *before* it consumes the partition's events, and
  keeps the message's stream sequence as its token;
* every task dispatch (immediate, or the schedule of a delayed one) names the fence subject of its workflow's
  partition and the token (``Nats-Expected-Last-Subject-Sequence``): the stream stores it only while that
  token is the last fence, and refuses it otherwise (:class:`~partita.transport.Fenced`).

So whatever the previous owner wrote before the new owner's fence is stored before the new owner's replays
(which it then deduplicates, as ever), and whatever reaches the server after the fence is refused. A node that
holds no token for a partition (not its owner any more, or fencing failed) does not dispatch: the event is
deferred and comes back to the partition's owner. A refusal drops the token and wakes the membership, which
fences the partition again if this node's consumer still filters it (another node's stale fence, written late
by a frozen process, refused a rightful owner) and otherwise lets it go. Fencing again after a refusal adopts
the last fence instead when a process of the same name wrote it: processes sharing a name share a consumer
(a misconfiguration that compare-and-set keeps correct), and two that fenced each other in turn would livelock.
A process never adopts a fence it was not refused by: one restarted under its old name fences anew, so its
frozen predecessor's late writes are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import anyio
import msgspec
import structlog

from partita.transport import Connection, Fenced, Layout, TransportError
from partita.transport.connection import Publication

log = structlog.get_logger(__name__)


class FenceInfo(msgspec.Struct, frozen=True, rename="camel"):
    """A fence message's body, for an operator reading the stream: who fenced the partition, and when."""

    owner: str
    at_ms: int


class Fences:
    """This node's fence tokens, one per partition it owns and has fenced."""

    def __init__(self, conn: Connection, layout: Layout, owner: str) -> None:
        self._conn = conn
        self._layout = layout
        self._owner = owner
        self._tokens: dict[int, int] = {}
        self._refused: set[int] = set()  # partitions whose token the stream refused, until fenced again
        self.on_refused: Callable[[], None] = lambda: None  # the membership's "check the server's view now"

    def missing(self, owned: Iterable[int]) -> frozenset[int]:
        """The partitions of ``owned`` this node holds no token for."""
        return frozenset(p for p in owned if p not in self._tokens)

    async def take(self, partitions: Iterable[int]) -> None:
        """Fence ``partitions`` (all at once). The ones that failed stay without a token; the first error is
        raised after the others are done."""
        errors: list[TransportError] = []

        async def fence(partition: int) -> None:
            subject = self._layout.fence_subject(partition)
            try:
                if partition in self._refused and (token := await self._ours(subject)) is not None:
                    self._tokens[partition] = token
                else:
                    body = msgspec.json.encode(FenceInfo(self._owner, time_ms()))
                    self._tokens[partition] = await self._conn.publish_rollup(subject, body)
                self._refused.discard(partition)
            except TransportError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for partition in sorted(set(partitions)):
                tg.start_soon(fence, partition)
        if errors:
            raise errors[0]

    async def _ours(self, subject: str) -> int | None:
        """The sequence of the last fence on ``subject`` if a process of our name wrote it."""
        last = await self._conn.last_message(self._layout.tasks_stream, subject)
        if last is None:
            return None
        try:
            info = msgspec.json.decode(last[1], type=FenceInfo)
        except msgspec.DecodeError:
            return None
        return last[0] if info.owner == self._owner else None

    def keep(self, owned: frozenset[int]) -> None:
        """Forget the tokens of partitions no longer owned: their dispatches are the new owner's now."""
        for partition in [p for p in self._tokens if p not in owned]:
            del self._tokens[partition]
        self._refused &= owned

    def fence(self, publication: Publication, partition: int) -> Publication:
        """``publication`` (a task dispatch), to be stored only while this node's fence of ``partition`` holds."""
        token = self._tokens.get(partition)
        if token is None:
            raise Fenced(f"partition {partition}: this node holds no fence for it (not its owner, or not yet)")
        return publication.fenced(self._layout.fence_subject(partition), token)

    def refused(self, partition: int) -> None:
        """The stream refused a dispatch fenced with our token: someone fenced ``partition`` after us."""
        if self._tokens.pop(partition, None) is not None:
            self._refused.add(partition)
            log.warning("partition_fenced_by_another", partition=partition)
            self.on_refused()


def time_ms() -> int:
    return time.time_ns() // 1_000_000
