"""The dead-letter stream: poison messages are kept for inspection, not dropped (``partita dlq list``)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Final

import msgspec

from partita.schemas.errors import PayloadError

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
    size: int = 0  # of the poison message, in bytes
    truncated: bool = False  # ``data`` holds only the start of it (see ``encode_dead_letter``)


_decoder = msgspec.json.Decoder(DeadLetter)

MAX_REASON_LENGTH: Final = 4096


def _as_is(msg_id: str) -> str:
    return msg_id


async def dead_letter(
    conn: Connection, layout: Layout, delivery: Delivery, reason: str, *, seal: Callable[[str], str] = _as_is
) -> None:
    """Keep ``delivery`` in the dead-letter stream, then terminate it. If it cannot be kept, it is not
    terminated either: it comes back after its AckWait (nothing is lost). Raises only
    :class:`TransportError`."""
    await keep_dead_letter(conn, layout, delivery, reason, seal=seal)
    await delivery.term(reason)


async def keep_dead_letter(
    conn: Connection, layout: Layout, delivery: Delivery, reason: str, *, seal: Callable[[str], str] = _as_is
) -> None:
    """Keep a copy of ``delivery`` in the dead-letter stream (once: a repeat is deduplicated), leaving the
    delivery itself to the caller. Raises only :class:`TransportError`.

    Workers may publish dead letters too, with any message id: a node passes ``seal`` (its message-id MAC) so
    that nobody else can occupy the id of a letter it is about to keep and have it dropped as a duplicate."""
    msg_id = seal(f"dlq:{delivery.subject}:{delivery.stream_seq}")
    # The server counts headers against max_payload too, and this one holds a subject of up to 4 KiB.
    limit = conn.payload_limit - len(msg_id.encode())
    now = time.time_ns() // 1_000_000
    letter = encode_dead_letter(delivery.subject, delivery.stream_seq, delivery.data, reason, now, limit)
    kind = delivery.subject.split(".")[1] if "." in delivery.subject else "unknown"
    subject = f"{layout.prefix}.dlq.{kind}"
    try:
        await conn.publish_durable(subject, letter, msg_id=msg_id)
    except PayloadError as exc:  # cannot happen with the letter cut to the limit; a caller handles only this
        raise TransportError(f"dead letter for {delivery.subject}: {exc}") from exc


def encode_dead_letter(subject: str, stream_seq: int, data: bytes, reason: str, at: int, limit: int) -> bytes:
    """The dead letter's JSON, at most ``limit`` bytes.

    The poison message may have filled a message on its own, and its letter is larger still (base64 adds a
    third, JSON escapes a control character in six bytes): a letter that would not fit keeps only the start
    of the data, with ``truncated`` set and ``size`` the whole. Publishing it whole would fail, and the
    message would never be terminated.
    """
    if len(reason) > MAX_REASON_LENGTH:
        reason = reason[:MAX_REASON_LENGTH] + "..."

    def encode(kept: bytes) -> bytes:
        text, encoding = _text(kept)
        letter = DeadLetter(
            subject=subject,
            stream_seq=stream_seq,
            reason=reason,
            data=text,
            data_encoding=encoding,
            time=at,
            size=len(data),
            truncated=len(kept) < len(data),
        )
        return encode_json(letter)

    encoded = encode(data)
    kept = len(data)
    while len(encoded) > limit and kept > 0:
        kept = kept * limit // len(encoded) * 9 // 10  # shrink in proportion, with a margin
        encoded = encode(data[:kept])
    return encoded


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
            letters.append(_letter(raw.subject or "", raw.data, seq))
    return letters


def _text(data: bytes) -> tuple[str, str]:
    try:
        return data.decode(), "utf-8"
    except UnicodeDecodeError:  # binary, or text cut inside a character: keep the bytes exactly
        return base64.b64encode(data).decode(), "base64"


def _letter(subject: str, data: bytes, seq: int) -> DeadLetter:
    """The letter stored at ``seq``; one that is not a letter (a worker may publish to the stream, with anything
    in it) is shown as such rather than stopping the listing."""
    try:
        return msgspec.structs.replace(_decoder.decode(data), seq=seq)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        text, encoding = _text(data[:256])
        return DeadLetter(subject=subject, stream_seq=0, reason=f"not a dead letter: {exc}", data=text,
                          data_encoding=encoding, seq=seq, size=len(data), truncated=len(data) > 256)  # fmt: skip
