"""Moving a deployment's events stream off message schedules (``partita migrate events``).

An events stream made before the timers stream allows message schedules, and nats-server allows roll-ups on
every stream that allows schedules and never lets either be turned off: anyone who may publish to the stream
(a worker's results, a client's starts) could purge it whole with one ``Nats-Rollup`` header. The only way out
is a new stream. With every node stopped, nothing consumes or adds events, so:

1. a mirror (``<PREFIX>_EVENTS_MIGRATION``, no subjects of its own) copies every pending event, the timers'
   schedules included, and is waited for until it holds all of them;
2. the old stream is deleted (its consumers with it; nodes make new ones) and made again as this version does
   (:func:`ensure_layout`: named partitions, no schedules, the timers sourced from ``<PREFIX>_TIMERS``);
3. every event is published again on its subject, and every timer's schedule in the timers stream, under the
   same sealed name, firing into ``<prefix>.fired.<p>``;
4. the mirror is deleted.

Run again after a crash, it goes on from the mirror (events republished twice are ignored by the nodes: a
decision never applies an event twice; a schedule published again replaces itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import anyio
import nats.errors
import nats.js.errors
import structlog
from nats.js.api import StreamConfig, StreamSource

from .connection import Connection, rfc3339, translate_errors
from .deadletter import encode_dead_letter
from .errors import TransportError
from .layout import Layout
from .provision import ensure_layout, timers_in_events_stream

log = structlog.get_logger(__name__)

# Headers that meant something only in the old stream: dedupe ids, expectations, what a schedule fired.
_STRIPPED: Final = ("Nats-Msg-Id", "Nats-Expected-", "Nats-Schedule-Next", "Nats-Scheduler")
SCHEDULER: Final = "Nats-Scheduler"
MIRROR_PATIENCE_SECONDS: Final = 120.0


def mirror_name(layout: Layout) -> str:
    return f"{layout.events_stream}_MIGRATION"


async def migration_needed(conn: Connection, layout: Layout) -> bool:
    """Whether the events stream still has message schedules, or a migration was interrupted."""
    return await _exists(conn, mirror_name(layout)) or await timers_in_events_stream(conn, layout)


async def migrate_events(conn: Connection, layout: Layout, *, report: Callable[[str], None] = print) -> int:
    """Migrate the events stream (see the module); the number of messages carried over. Raises
    :class:`TransportError` when the server refuses a step; nothing is deleted before the mirror holds every
    message. The new stream gets the old one's replicas (so do the others, as ``partita node --replicas``)."""
    mirror = mirror_name(layout)
    if not await _exists(conn, mirror):
        if not await timers_in_events_stream(conn, layout):
            report(f"{layout.events_stream} has no message schedules: nothing to migrate")
            return 0
        await _mirror(conn, layout, mirror)
        report(f"copied the pending events of {layout.events_stream} into {mirror}")
    if await timers_in_events_stream(conn, layout):
        with translate_errors(f"delete {layout.events_stream}"):
            await conn.js.delete_stream(layout.events_stream)
        report(f"deleted {layout.events_stream}; making it again without schedules")
    with translate_errors(f"stream {mirror}"):
        replicas = (await conn.js.stream_info(mirror)).config.num_replicas or 1
    await ensure_layout(conn, layout, replicas=replicas, upgrade=True)
    moved = await _replay(conn, layout, mirror)
    with translate_errors(f"delete {mirror}"):
        await conn.js.delete_stream(mirror)
    report(f"{moved} messages carried over; {layout.events_stream} takes no schedules or roll-ups now")
    return moved


async def _exists(conn: Connection, stream: str) -> bool:
    try:
        await conn.js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return False
    except nats.errors.Error as exc:
        raise TransportError(f"stream {stream}: {exc}") from exc
    return True


async def _mirror(conn: Connection, layout: Layout, mirror: str) -> None:
    with translate_errors(f"stream {layout.events_stream}"):
        info = await conn.js.stream_info(layout.events_stream)
        state, replicas = info.state, info.config.num_replicas
        config = StreamConfig(name=mirror, mirror=StreamSource(name=layout.events_stream), num_replicas=replicas)
        await conn.js.add_stream(config)
    with anyio.fail_after(MIRROR_PATIENCE_SECONDS):
        # The server reports a mirror's progress only when asked: ask until it holds every message.
        while True:
            if (await conn.js.stream_info(mirror)).state.messages >= state.messages:
                return
            await anyio.sleep(0.1)


async def _replay(conn: Connection, layout: Layout, mirror: str) -> int:
    """Every message of the mirror published again: events on their subjects, schedules in the timers stream."""
    with translate_errors(f"stream {mirror}"):
        state = (await conn.js.stream_info(mirror)).state
    moved = 0
    for seq in range(state.first_seq, state.last_seq + 1):
        try:
            message = await conn.js.get_msg(mirror, seq)
        except nats.js.errors.NotFoundError:
            continue  # a gap (a message the old stream had deleted)
        carried = carried_over(layout, message.subject or "", dict(message.headers or {}), seq)
        if carried is None:  # no node would ever read it (a partition outside the layout): keep it, with why
            await _dead_letter(conn, layout, message.subject or "", seq, message.data or b"")
            continue
        subject, headers = carried
        with translate_errors(f"republish {subject}"):
            await conn.js.publish(subject, message.data or b"", headers=headers or None)
        moved += 1
    return moved


async def _dead_letter(conn: Connection, layout: Layout, subject: str, seq: int, data: bytes) -> None:
    reason = (
        "not carried over by migrate: on a partition outside the layout, or a schedule no node made (or what it fired)"
    )
    log.warning("migrate_dead_lettered", subject=subject, seq=seq)
    letter = encode_dead_letter(subject, seq, data, reason, time.time_ns() // 1_000_000, conn.payload_limit - 64)
    with translate_errors(f"dead letter {subject}"):
        await conn.js.publish(f"{layout.prefix}.dlq.migrate", letter, headers={"Nats-Msg-Id": f"migrate:{seq}"})


def carried_over(layout: Layout, subject: str, headers: dict[str, str], seq: int) -> tuple[str, dict[str, str]] | None:
    """Where a message of the old events stream goes, with which headers; None for one that cannot be carried.

    - A timer's schedule (``<prefix>.esched.<id>``) becomes the same schedule in the timers stream
      (``<prefix>.timers.<id>``, firing into ``<prefix>.fired.<p>``).
    - A timer that had fired but was not yet taken (``.timer``, with ``Nats-Scheduler``) becomes a schedule due
      now, so it arrives as timers now do (no publisher may set ``Nats-Scheduler`` on the new stream).
    - Any other event goes back on its subject, without the headers only a schedule or a dedupe window meant;
      one on a partition outside the layout (no node reads it, and the new stream refuses it), a schedule
      someone put on an event subject, or what such a schedule fired, is dead-lettered.
    """
    prefix = layout.prefix
    kept = {name: value for name, value in headers.items() if not name.startswith(_STRIPPED)}
    if subject.startswith(f"{prefix}.esched."):
        target = headers.get("Nats-Schedule-Target", "").split(".")
        if len(target) != 4 or target[2] not in _partitions(layout):
            return None
        kept["Nats-Schedule-Target"] = f"{prefix}.fired.{target[2]}"
        return f"{prefix}.timers.{subject.removeprefix(f'{prefix}.esched.')}", kept
    if SCHEDULER in headers:
        tokens = subject.split(".")
        if len(tokens) != 4 or tokens[3] != "timer" or tokens[2] not in _partitions(layout):
            return None
        if not headers[SCHEDULER].startswith(layout.scheduler_prefixes):
            return None  # fired by a schedule a worker made: the node would have dead-lettered it (check_provenance)
        due = {"Nats-Schedule": f"@at {rfc3339(time.time_ns() // 1_000_000)}", "Nats-Schedule-Target":
               f"{prefix}.fired.{tokens[2]}"}  # fmt: skip
        return f"{prefix}.timers.migrated-{seq}", due
    tokens = subject.split(".")
    if len(tokens) < 4 or tokens[:2] != [prefix, "wf"] or tokens[2] not in _partitions(layout):
        return None
    if any(name.startswith("Nats-Schedule") for name in headers):
        return None  # a schedule someone put on an event subject: the node would have dead-lettered it too
    return subject, kept


def _partitions(layout: Layout) -> frozenset[str]:
    return frozenset(str(p) for p in range(layout.partitions))


__all__ = ["carried_over", "migrate_events", "migration_needed", "mirror_name"]
