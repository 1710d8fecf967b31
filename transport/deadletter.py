"""The dead-letter stream: poison messages are kept for inspection, not dropped (``partita dlq list``)."""

from __future__ import annotations

import base64
import time

import msgspec

from .codec import encode_json
from .connection import Connection, Delivery
from .errors import TransportError
from .layout import Layout


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A message no Partita component could process, and why."""

    subject: str
    stream_seq: int
    reason: str
    data: str  # UTF-8 text when it decodes, else base64
    data_encoding: str = "utf-8"
    time: int = 0
    seq: int = 0  # its own sequence in the dead-letter stream (filled when read back)


_decoder = msgspec.json.Decoder(DeadLetter)


async def dead_letter(conn: Connection, layout: Layout, delivery: Delivery, reason: str) -> None:
    """Keep ``delivery`` in the dead-letter stream, then terminate it. If it cannot be kept, it is not
    terminated either: it comes back after its AckWait (nothing is lost)."""
    try:
        text, encoding = delivery.data.decode(), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(delivery.data).decode(), "base64"
    letter = DeadLetter(
        subject=delivery.subject,
        stream_seq=delivery.stream_seq,
        reason=reason,
        data=text,
        data_encoding=encoding,
        time=time.time_ns() // 1_000_000,
    )
    kind = delivery.subject.split(".")[1] if "." in delivery.subject else "unknown"
    await conn.publish_durable(
        f"{layout.prefix}.dlq.{kind}", encode_json(letter), msg_id=f"dlq:{delivery.subject}:{delivery.stream_seq}"
    )
    await delivery.term(reason)


async def read_dead_letters(conn: Connection, layout: Layout, limit: int = 100) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, oldest first."""
    try:
        info = await conn.js.stream_info(layout.dead_letter_stream)
    except Exception as exc:
        raise TransportError(f"dead-letter stream {layout.dead_letter_stream}: {exc}") from exc
    first, last = info.state.first_seq, info.state.last_seq
    letters: list[DeadLetter] = []
    for seq in range(max(first, last - limit + 1), last + 1):
        try:
            raw = await conn.js.get_msg(layout.dead_letter_stream, seq)
        except Exception:
            continue
        if raw.data:
            letters.append(msgspec.structs.replace(_decoder.decode(raw.data), seq=seq))
    return letters
