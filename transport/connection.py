"""The NATS connection and the JetStream primitives the rest of Partita uses.

This module and its siblings are the only code importing ``nats``. Everything here translates nats-py's
exceptions into :mod:`partita.transport.errors` and papers over its known pitfalls (design §7): headers dicts
are copied before publishing, reconnection never gives up, ``term`` carries a reason.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime as dt
import json
import math
import os
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import anyio
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.kv import KeyValue

from partita.schemas.errors import PayloadError

from .auth import inbox_prefix_for, public_key_of
from .errors import (
    AuthError,
    CasConflict,
    ConnectionFailed,
    Fenced,
    NoStreamListening,
    PermissionDenied,
    ProvisioningError,
    ServerVersionError,
    TransportError,
    TransportTimeout,
)

log = structlog.get_logger(__name__)

MIN_SERVER_VERSION: Final = (2, 12, 0)  # message schedules (ADR-51) arrived in 2.12
DEFAULT_URL: Final = "nats://127.0.0.1:4222"
PAYLOAD_HEADROOM: Final = 1024  # bytes kept free for headers (Nats-Msg-Id, KV CAS) below max_payload
KEYS_WITHIN: Final = 10.0  # a key listing that takes longer than this is a stalled watcher


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Re-raise nats-py exceptions as Partita transport errors, saying what we were doing."""
    try:
        yield
    except (nats.errors.TimeoutError, TimeoutError) as exc:
        raise TransportTimeout(f"{what}: timed out") from exc
    except nats.errors.MaxPayloadError as exc:
        raise PayloadError(f"{what}: message exceeds the server's max_payload") from exc
    except nats.js.errors.NoStreamResponseError as exc:
        raise NoStreamListening(f"{what}: no stream is listening (is the layout provisioned?)") from exc
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
        raise TransportError(f"{what}: connection closed") from exc
    except nats.js.errors.APIError as exc:
        raise _api_error(what, exc) from exc
    except nats.errors.Error as exc:
        raise TransportError(f"{what}: {exc}") from exc


_EXPECTED_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = 10071  # an expected-last-sequence header did not hold: for a task dispatch, a fence


def _api_error(what: str, exc: nats.js.errors.APIError) -> TransportError:
    """JetStream's refusal, saying why; a bare status (503: no JetStream answered, a cluster electing its
    meta leader) has no description, so name the status instead of printing ``None``."""
    if exc.err_code == _WRONG_LAST_SEQUENCE:
        return Fenced(f"{what}: fenced by a newer owner of its partition ({exc.description})")
    if exc.description is None and exc.err_code is None:
        status = f" (status {exc.code})" if exc.code else ""
        return TransportError(f"{what}: JetStream unavailable{status}, try again")
    return TransportError(f"{what}: {exc.description} (code {exc.err_code})")


@dataclass(frozen=True, slots=True)
class KvEntry:
    key: str
    value: bytes
    revision: int
    deleted: bool = False  # a delete or purge marker (only from ``watch(deletes=True)``)


class Delivery:
    """One message fetched from a pull consumer. Ack only after its effect is durable."""

    __slots__ = ("_msg", "data", "headers", "num_delivered", "published", "refreshed", "stream_seq", "subject")

    def __init__(self, msg: Msg, delivered_after: float) -> None:
        self._msg = msg
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.headers: dict[str, str] = dict(msg.headers or {})
        meta = msg.metadata
        self.stream_seq: int = meta.sequence.stream
        self.num_delivered: int = meta.num_delivered
        self.published: float = meta.timestamp.timestamp()  # when the stream stored it (epoch seconds)
        # When the server last restarted its AckWait for us (delivery, then each +WPI), in monotonic seconds, or
        # earlier: past the AckWait from then, the message may be another consumer's. Never later, so at first
        # it is a moment the client knows came before the delivery (see PullConsumer.fetch), not when the
        # message was read: a process frozen after the server delivered reads it only on waking.
        self.refreshed: float = delivered_after

    async def ack(self) -> None:
        with translate_errors("ack"):
            await self._msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        with translate_errors("nak"):
            await self._msg.nak(delay=delay)

    async def in_progress(self, ack_wait: float) -> None:
        """Ask the server to restart the AckWait (``ack_wait`` seconds, the consumer's). Sent later than that
        since the last restart (this process was frozen), it restarts nothing we can count on: the message may
        have gone to another consumer meanwhile, so :attr:`refreshed` stays where it was."""
        sent = time.monotonic()
        with translate_errors("in_progress"):
            await self._msg.in_progress()
        if sent - self.refreshed < ack_wait:
            self.refreshed = sent

    async def term(self, reason: str) -> None:
        """Terminate redelivery, with a reason the server records in its advisory (nats-py cannot)."""
        reply = self._msg.reply
        if not reply:
            return
        with translate_errors("term"):
            await self._msg._client.publish(reply, b"+TERM " + reason.encode()[:512])


class PullConsumer:
    """A bound durable pull consumer: fetch only as many messages as you can run."""

    def __init__(self, sub: JetStreamContext.PullSubscription, name: str) -> None:
        self._sub = sub
        self.name = name
        self._last_fetch = time.monotonic()  # when the previous fetch began (or we subscribed)

    async def fetch(self, batch: int, max_wait: float) -> list[Delivery]:
        """Up to ``batch`` messages, waiting at most ``max_wait`` seconds for the first; [] when none came.

        Each is stamped with a moment that surely came before the server delivered it (its AckWait began):
        the start of this fetch for what this fetch's pull request brought; for what was already waiting in
        the client's buffer (delivered after an earlier fetch gave up, or while this process was frozen), the
        start of the previous fetch, which emptied the buffer first.
        """
        started = time.monotonic()
        buffered = self._sub.pending_msgs  # nats-py hands these out first, before it sends a pull request
        previous, self._last_fetch = self._last_fetch, started
        try:
            msgs = await self._sub.fetch(batch=batch, timeout=max_wait)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except nats.errors.Error as exc:
            raise TransportError(f"fetch from {self.name}: {exc}") from exc
        return [Delivery(msg, previous if i < buffered else started) for i, msg in enumerate(msgs)]

    async def aclose(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


class KvBucket:
    """A JetStream KV bucket with compare-and-set writes."""

    def __init__(self, kv: KeyValue, name: str, subject_count: Callable[[str], Awaitable[int]] | None = None) -> None:
        self._kv = kv
        self.name = name
        self._subject_count = subject_count  # subjects of the bucket's stream matching a filter (stream info)

    async def get(self, key: str) -> KvEntry | None:
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:  # also covers deleted/purged markers
            return None
        except nats.errors.Error as exc:
            raise TransportError(f"kv get {self.name}/{key}: {exc}") from exc
        if entry.value is None or entry.revision is None:
            return None
        return KvEntry(key, entry.value, entry.revision)

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` only if it does not exist; raises :class:`CasConflict` otherwise."""
        try:
            return await self._kv.create(key, value)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise CasConflict(key) from exc
        except nats.errors.Error as exc:
            raise _kv_error("create", self.name, key, exc) from exc

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write ``key`` only if its revision is still ``revision``; raises :class:`CasConflict` otherwise."""
        try:
            return await self._kv.update(key, value, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise CasConflict(key) from exc
        except nats.errors.Error as exc:
            raise _kv_error("update", self.name, key, exc) from exc

    async def put(self, key: str, value: bytes) -> int:
        try:
            return await self._kv.put(key, value)
        except nats.errors.Error as exc:
            raise _kv_error("put", self.name, key, exc) from exc

    async def delete(self, key: str) -> None:
        with translate_errors(f"kv delete {self.name}/{key}"):
            await self._kv.delete(key)

    async def keys(self, pattern: str = ">") -> list[str]:
        """Keys matching a subject-style ``pattern`` (``*`` one token, ``>`` the rest), filtered server-side."""
        return [entry.key for entry in await self._snapshot(pattern, meta_only=True)]

    async def values(self, pattern: str = ">") -> list[KvEntry]:
        """The current entries of the keys matching ``pattern``, read in one streamed pass."""
        return await self._snapshot(pattern, meta_only=False)

    async def _snapshot(self, pattern: str, *, meta_only: bool) -> list[KvEntry]:
        """Read until as many subjects have come as the stream said it holds, rather than until nats-py's
        "caught up" marker: the watcher sends that marker early when the server delivered a key before
        answering the watcher's consumer-info request but the client had not read it yet (a loaded machine),
        and the listing then came back short, even empty."""
        expected = await self._subject_count(f"$KV.{self.name}.{pattern}") if self._subject_count else None
        entries: list[KvEntry] = []
        seen = 0
        caught_up = False
        with translate_errors(f"kv keys {self.name}"):
            watcher = await self._kv.watch(pattern, meta_only=meta_only)
            try:
                with anyio.move_on_after(KEYS_WITHIN):
                    async for entry in watcher:
                        if entry is None:
                            caught_up = True
                        else:
                            seen += 1
                            if entry.operation is None:  # not a delete or purge marker
                                entries.append(KvEntry(entry.key, entry.value or b"", entry.revision or 0))
                        if (expected is None and caught_up) or (expected is not None and seen >= expected):
                            break
                if not caught_up and (expected is None or seen < expected):
                    raise TimeoutError  # stalled: neither every subject nor the marker came
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        return entries

    async def watch(self, keys: str = ">", *, deletes: bool = False) -> AsyncGenerator[KvEntry | None, None]:
        """Current values of matching keys, then ``None`` once, then every later update (push, not poll).
        Deleted keys are skipped, unless ``deletes`` (then they come as entries with ``deleted=True``)."""
        with translate_errors(f"kv watch {self.name}"):
            watcher = await self._kv.watch(keys)
        try:
            async for entry in watcher:
                if entry is None:
                    yield None
                elif entry.revision is None:
                    continue
                elif entry.operation is None and entry.value is not None:
                    yield KvEntry(entry.key, entry.value, entry.revision)
                elif deletes and entry.operation is not None:
                    yield KvEntry(entry.key, b"", entry.revision, deleted=True)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]


def _kv_error(op: str, bucket: str, key: str, exc: Exception) -> TransportError | PayloadError:
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PayloadError(f"kv {op} {bucket}/{key}: value exceeds the server's max_payload")
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code == 10054:
        return PayloadError(f"kv {op} {bucket}/{key}: value exceeds the bucket's max_value_size")
    return TransportError(f"kv {op} {bucket}/{key}: {exc}")


class Subscription:
    """A core NATS subscription delivering payloads."""

    def __init__(self, sub: NatsSubscription) -> None:
        self._sub = sub

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """``(subject, payload)`` of every message, until the subscription is closed."""
        while True:
            try:
                msg = await self._sub.next_msg(timeout=None)
            except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                return
            yield msg.subject, msg.data

    async def next(self, max_wait: float | None = None) -> bytes:
        """The next payload; raises :class:`TransportTimeout` after ``max_wait`` seconds (None: forever)."""
        with translate_errors("next message"):
            msg = await self._sub.next_msg(timeout=max_wait)
        data: bytes = msg.data
        return data

    async def aclose(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


def rfc3339(at_ms: int) -> str:
    """Schedules take whole seconds; round up so a timer never fires early."""
    seconds = math.ceil(at_ms / 1000)
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Publication:
    """One JetStream message to publish (see :meth:`Connection.publish_all`)."""

    subject: str
    data: bytes
    headers: dict[str, str] | None = None

    @classmethod
    def durable(cls, subject: str, data: bytes, msg_id: str | None = None) -> Publication:
        return cls(subject, data, {"Nats-Msg-Id": msg_id} if msg_id else None)

    @classmethod
    def scheduled(
        cls, schedule_subject: str, target: str, at_ms: int, data: bytes, msg_id: str | None = None
    ) -> Publication:
        """Have JetStream publish ``data`` to ``target`` at ``at_ms`` (a message schedule, ADR-51). One
        schedule subject per timer: publishing again on it replaces the pending schedule."""
        headers = {"Nats-Schedule": f"@at {rfc3339(at_ms)}", "Nats-Schedule-Target": target}
        if msg_id:
            headers["Nats-Msg-Id"] = msg_id
        return cls(schedule_subject, data, headers)

    def fenced(self, fence_subject: str, token: int) -> Publication:
        """This publication, stored only while ``token`` is still the last message on ``fence_subject`` (same
        stream): a newer fence there makes the server refuse it (:class:`Fenced`). Checked when the server
        stores it, so a schedule is checked when scheduled, not when it fires."""
        fence = {
            _EXPECTED_SUBJECT_SEQUENCE: str(token),
            "Nats-Expected-Last-Subject-Sequence-Subject": fence_subject,
        }
        return Publication(self.subject, self.data, {**(self.headers or {}), **fence})


class _JetStream(JetStreamContext):
    """nats-py's JetStream context, with ``publish_async`` failing the future on a JetStream refusal (a full
    stream, a fence): nats-py raises the refusal inside its reply handler instead, which leaves the future to
    time out, so a refused effect looked like an outage and its event was deferred for ever."""

    async def _handle_async_reply(self, msg: Msg) -> None:
        try:
            await super()._handle_async_reply(msg)
        except nats.js.errors.APIError as exc:
            token = msg.subject[len(self._nc._inbox_prefix) + 22 + 2 :]  # as nats-py's own handler reads it
            future = self._publish_async_futures.get(token)
            if future is not None and not future.done():
                future.set_exception(exc)


def _publish_error(what: str, error: BaseException) -> TransportError:
    if isinstance(error, nats.errors.TimeoutError | TimeoutError):
        return TransportTimeout(f"{what}: timed out")
    if isinstance(error, nats.js.errors.NoStreamResponseError):
        return NoStreamListening(f"{what}: no stream is listening (is the layout provisioned?)")
    if isinstance(error, nats.js.errors.APIError):
        return _api_error(what, error)
    return TransportError(f"{what}: {error}")


class Connection:
    """One NATS connection with JetStream. Open with :func:`connect`; close with :meth:`aclose`."""

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        request_timeout: float = 5.0,
        identity: str | None = None,
        denials: collections.deque[tuple[float, str]] | None = None,
    ) -> None:
        self._nc = nc
        self.js = js
        self._request_timeout = request_timeout
        self._denials = denials if denials is not None else collections.deque(maxlen=16)
        # Who we authenticated as (nkey public key or user), None for an open server. An identity may hold a
        # restricted role (``partita auth``): such connections wait for nodes to create what they may not.
        self.identity = identity

    async def publish_all(self, publications: Sequence[Publication]) -> list[TransportError | None]:
        """Publish every message to JetStream at once and wait for all the PubAcks together: one round trip
        instead of one per message. Returns, per message, None (stored) or the error."""
        if not publications:
            return []
        futures: list[asyncio.Future[PubAck]] = []
        with translate_errors("publish"):
            for publication in publications:  # refusals fail their futures (_JetStream)
                subject, data, headers = publication.subject, publication.data, publication.headers
                futures.append(await self.js.publish_async(subject, data, headers=headers))
        try:
            _, pending = await asyncio.wait(futures, timeout=self._request_timeout)
        finally:  # cancelled (a shutdown): leave no future behind unawaited
            for future in futures:
                future.cancel()
        outcomes: list[TransportError | None] = []
        for publication, future in zip(publications, futures, strict=True):
            what = f"publish {publication.subject}"
            if future in pending:
                outcomes.append(TransportTimeout(f"{what}: timed out"))
            elif isinstance(error := future.exception(), nats.errors.MaxPayloadError):
                raise PayloadError(f"{what}: message exceeds the server's max_payload") from error
            elif error is not None:
                outcomes.append(_publish_error(what, error))
            else:
                outcomes.append(None)
        return outcomes

    @property
    def server_version(self) -> tuple[int, int, int]:
        version = self._nc.connected_server_version
        return (version.major, version.minor, version.patch)

    @property
    def max_payload(self) -> int:
        return self._nc.max_payload

    @property
    def payload_limit(self) -> int:
        """The largest payload Partita publishes: the server counts headers and the subject against
        ``max_payload`` too (and drops the connection when it is exceeded), so keep a margin for them."""
        return self._nc.max_payload - PAYLOAD_HEADROOM

    @property
    def is_connected(self) -> bool:
        return self._nc.is_connected

    @property
    def client_name(self) -> str:
        return str(self._nc.options.get("name") or "")

    async def publish(self, subject: str, data: bytes) -> None:
        """Core NATS, fire-and-forget: only for notifications whose loss is covered by durable state."""
        with translate_errors(f"publish {subject}"):
            await self._nc.publish(subject, data)

    def denied_since(self, since: float, about: str = "") -> str | None:
        """The server's last "permissions violation" message after ``since`` (monotonic) naming a subject that
        contains ``about``, if any. The server reports a refused publish asynchronously (and lower-cases the
        subject), so a refused request otherwise looks like a timeout."""
        about = about.lower()
        return next((m for at, m in reversed(self._denials) if at >= since and about in m.lower()), None)

    def explain(self, exc: TransportError, since: float, what: str, about: str) -> TransportError:
        """``exc``, or a :class:`PermissionDenied` saying what was refused if, since ``since``, the server refused
        a subject containing ``about`` (the operation's own subject, so an unrelated refusal is not blamed)."""
        denial = self.denied_since(since, about)
        if denial is None or isinstance(exc, PermissionDenied):
            return exc
        return PermissionDenied(
            f"{what}: the NATS server refused it ({denial.removeprefix('nats: ')}); this identity's role does "
            "not allow it (`partita auth permissions <name>` lists what it may do)"
        )

    async def publish_durable(
        self, subject: str, data: bytes, *, msg_id: str | None = None, retry_for: float = 0.0
    ) -> int:
        """Publish to JetStream and wait for the PubAck; returns the stream sequence.

        ``msg_id`` sets ``Nats-Msg-Id``, so a repeat within the stream's duplicate window is dropped; that makes
        a retry safe, so with ``retry_for`` a failed publish (a cluster electing a leader, a reconnect) is tried
        again with the same id, backing off, for that many seconds before the error is raised.
        """
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        started = time.monotonic()
        deadline = started + (retry_for if msg_id else 0.0)
        delay = 0.25
        while True:
            try:
                with translate_errors(f"publish {subject}"):
                    ack = await self.js.publish(subject, data, headers=headers)
                return ack.seq
            except TransportError as exc:  # not PayloadError: a message too large stays too large
                explained = self.explain(exc, started, f"publish to {subject}", subject)
                if explained is not exc:
                    raise explained from exc  # refused: retrying cannot help
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("publish_retried", subject=subject, error=str(exc), retry_in=delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def publish_rollup(self, subject: str, data: bytes) -> int:
        """Publish to JetStream as the only message on ``subject`` (``Nats-Rollup: sub`` drops the earlier ones;
        the stream must allow rollups); returns the stream sequence."""
        with translate_errors(f"publish {subject}"):
            ack = await self.js.publish(subject, data, headers={"Nats-Rollup": "sub"})
        return ack.seq

    async def publish_at(
        self, schedule_subject: str, target: str, at_ms: int, data: bytes, *, msg_id: str | None = None
    ) -> int:
        """Have JetStream publish ``data`` to ``target`` at ``at_ms`` (see :meth:`Publication.scheduled`)."""
        publication = Publication.scheduled(schedule_subject, target, at_ms, data, msg_id)
        with translate_errors(f"schedule {schedule_subject}"):
            ack = await self.js.publish(schedule_subject, data, headers=publication.headers)
        return ack.seq

    async def subscribe(self, subject: str) -> Subscription:
        with translate_errors(f"subscribe {subject}"):
            sub = await self._nc.subscribe(subject)
        return Subscription(sub)

    async def flush(self) -> None:
        with translate_errors("flush"):
            await self._nc.flush()

    async def stream_has_message(self, stream: str, seq: int) -> bool:
        """Whether ``seq`` is still in ``stream`` (on a work-queue stream: not yet acknowledged)."""
        return await _found(self.js.get_msg(stream, seq), f"get message {stream}#{seq}")

    async def last_message(self, stream: str, subject: str) -> tuple[int, bytes] | None:
        """The stream sequence and data of the last message on ``subject`` in ``stream``, if there is one."""
        try:
            msg = await self.js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as exc:
            raise TransportError(f"get last message {stream}/{subject}: {exc}") from exc
        return None if msg.seq is None else (msg.seq, msg.data or b"")

    async def stream_exists(self, stream: str) -> bool:
        """Whether ``stream`` exists (it may still be without a leader)."""
        return await _found(self.js.stream_info(stream), f"stream info {stream}")

    async def subject_has_message(self, stream: str, subject: str) -> bool:
        """Whether ``stream`` holds a message on ``subject`` (one direct lookup of the last one)."""
        return await _found(self.js.get_last_msg(stream, subject), f"get last message {stream}/{subject}")

    async def subjects(self, stream: str, subject_filter: str) -> list[str]:
        """The subjects of ``stream`` that hold messages and match ``subject_filter``, from the stream's own
        index (no consumer, no message read), fetched a page at a time."""
        subjects: list[str] = []
        while True:
            request = {"subjects_filter": subject_filter, "offset": len(subjects)}
            with translate_errors(f"stream info {stream}"):
                reply = await self._nc.request(
                    f"$JS.API.STREAM.INFO.{stream}", json.dumps(request).encode(), timeout=self._request_timeout
                )
            answer = json.loads(reply.data)
            if "error" in answer:
                raise TransportError(f"stream info {stream}: {answer['error'].get('description', answer['error'])}")
            page = list((answer.get("state") or {}).get("subjects") or {})
            subjects.extend(page)
            if not page or len(subjects) >= int(answer.get("total", 0)):
                return subjects

    async def read_subject(self, stream: str, subject: str, *, limit: int = 10_000) -> list[bytes]:
        """The first ``limit`` messages on ``subject`` in ``stream``, oldest first, through an ephemeral consumer
        that acks nothing (reading changes nothing)."""
        if not await self.subject_has_message(stream, subject):
            return []  # nothing there: do not wait for a fetch to time out
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0, mem_storage=True
        )
        found: list[bytes] = []
        with translate_errors(f"read {subject}"):
            sub = await self.js.pull_subscribe(subject, stream=stream, config=config)
            try:
                while len(found) < limit:
                    try:
                        batch = await sub.fetch(min(256, limit - len(found)), timeout=5.0)
                    except TimeoutError:  # nats-py raises its own subclass or asyncio's
                        break  # aged out since the lookup above, or nothing more
                    found.extend(msg.data for msg in batch)
                    if batch[-1].metadata.num_pending == 0:
                        break
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
        return found

    async def wait_for_jetstream(self, within: float = 60.0) -> None:
        """Return once JetStream answers (a new cluster elects its meta leader a moment after its servers are
        up); :class:`TransportTimeout` after ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            try:
                await self.js.account_info()
                return
            except nats.errors.Error as exc:
                if time.monotonic() > deadline:
                    raise TransportTimeout(f"JetStream did not answer within {within:g} s: {exc}") from exc
                await anyio.sleep(0.2)

    async def pull_consumer(self, stream: str, durable: str) -> PullConsumer:
        with translate_errors(f"bind consumer {stream}/{durable}"):
            sub = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
        return PullConsumer(sub, durable)

    async def kv(self, bucket: str) -> KvBucket:
        """Open a KV bucket; :class:`ProvisioningError` if it does not exist, :class:`PermissionDenied` if this
        identity may not read it."""
        started = time.monotonic()
        try:
            with translate_errors(f"open bucket {bucket}"):
                kv = await self.js.key_value(bucket)
        except TransportError as exc:
            if isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                raise ProvisioningError(f"bucket {bucket} does not exist") from exc
            raise self.explain(exc, started, f"open bucket {bucket}", f"KV_{bucket}") from exc
        return KvBucket(kv, bucket, partial(self._subject_count, f"KV_{bucket}"))

    async def _subject_count(self, stream: str, subject_filter: str) -> int:
        return len(await self.subjects(stream, subject_filter))

    async def aclose(self) -> None:
        """Drain (finish in-flight publishes and subscriptions), then close."""
        if self._nc.is_closed:
            return
        try:
            await self._nc.drain()
        except nats.errors.Error:  # already closing or disconnected: nothing left to drain
            await self._nc.close()


async def _found(lookup: Awaitable[object], what: str) -> bool:
    """Whether a message lookup found its message (False when the server says there is none)."""
    try:
        await lookup
    except nats.js.errors.NotFoundError:
        return False
    except nats.errors.Error as exc:
        raise TransportError(f"{what}: {exc}") from exc
    return True


def check_server_version(found: tuple[int, int, int]) -> None:
    """Refuse a server that lacks what Partita uses, saying what is needed and why."""
    if found < MIN_SERVER_VERSION:
        need = ".".join(map(str, MIN_SERVER_VERSION))
        raise ServerVersionError(
            f"nats-server {'.'.join(map(str, found))} is too old: Partita needs >= {need} "
            "(JetStream message schedules, ADR-51)"
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to authenticate to NATS and whether to use TLS (all optional; none = an open local server).

    * ``nkey``: a file holding an nkey seed (what ``partita auth`` writes per identity);
    * ``creds``: a NATS ``.creds`` file (user JWT and seed, for operator-mode deployments);
    * ``user`` / ``password``: plain user and password;
    * ``tls_ca``: the CA that signed the server's certificate; ``tls_cert`` / ``tls_key``: this client's
      certificate, for servers that verify clients.

    ``inbox_prefix`` defaults to the one ``partita auth`` grants the identity: ``_INBOX_<public key>`` for an
    nkey or creds file, ``_INBOX_<user>`` for a user; a server whose permissions expect another says so.
    """

    nkey: str | None = None
    creds: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    inbox_prefix: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.nkey, self.creds, self.user)) > 1:
            raise AuthError("give one of an nkey file, a creds file or a user, not several")
        if (self.password is not None) != (self.user is not None):
            raise AuthError("a user needs a password and a password needs a user")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise AuthError("a TLS client certificate needs its key, and a key its certificate")

    @classmethod
    def from_environment(cls) -> Credentials:
        """From the environment: ``PARTITA_NATS_NKEY``, ``_CREDS``, ``_USER``, ``_PASSWORD``, ``_TLS_CA``,
        ``_TLS_CERT`` and ``_TLS_KEY``."""
        env = os.environ.get
        return cls(
            nkey=env("PARTITA_NATS_NKEY") or None,
            creds=env("PARTITA_NATS_CREDS") or None,
            user=env("PARTITA_NATS_USER") or None,
            password=env("PARTITA_NATS_PASSWORD") or None,
            tls_ca=env("PARTITA_NATS_TLS_CA") or None,
            tls_cert=env("PARTITA_NATS_TLS_CERT") or None,
            tls_key=env("PARTITA_NATS_TLS_KEY") or None,
        )

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert is not None and self.tls_key is not None:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise AuthError(f"cannot load the TLS files: {exc}") from exc
        return context

    def principal(self) -> str | None:
        """The nkey public key or user name these credentials authenticate as (None: anonymous)."""
        if self.user is not None:
            return self.user
        try:
            if self.nkey is not None:
                with open(self.nkey) as seed_file:
                    return public_key_of(seed_file.read())
            if self.creds is not None:
                return _creds_subject(self.creds)
        except OSError as exc:
            raise AuthError(f"cannot read the credentials file: {exc}") from exc
        except AuthError as exc:
            raise AuthError(f"{self.nkey}: {exc}") from exc
        return None

    def resolved_inbox_prefix(self) -> str | None:
        if self.inbox_prefix is not None:
            return self.inbox_prefix
        principal = self.principal()
        return None if principal is None else inbox_prefix_for(principal)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        options: dict[str, Any] = {}
        if self.nkey is not None:
            options["nkeys_seed"] = self.nkey
        if self.creds is not None:
            options["user_credentials"] = self.creds
        if self.user is not None:
            options["user"], options["password"] = self.user, self.password
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        inbox = self.resolved_inbox_prefix()
        if inbox is not None:
            options["inbox_prefix"] = inbox
        return options


async def _discard(nc: NatsClient) -> None:
    """Close a client whose first connection failed (its reader and pinger tasks may be running)."""
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await nc.close()


def _creds_subject(path: str) -> str:
    """The user public key (``sub``) of the JWT in a NATS ``.creds`` file."""
    with open(path) as creds_file:
        text = creds_file.read()
    try:
        jwt = text.split("-----BEGIN NATS USER JWT-----", 1)[1].split("------END NATS USER JWT------", 1)[0].strip()
        body = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return str(claims["sub"])
    except (IndexError, KeyError, ValueError) as exc:
        raise AuthError(f"{path} is not a NATS .creds file (user JWT and seed)") from exc


async def connect(
    servers: str | Sequence[str] = DEFAULT_URL,
    *,
    name: str = "partita",
    connect_timeout: float = 5.0,
    request_timeout: float = 5.0,
    connect_attempts: int = 3,
    credentials: Credentials | None = None,
) -> Connection:
    """Connect to NATS, refusing a server older than :data:`MIN_SERVER_VERSION`.

    ``servers`` is one URL, a comma-separated list, or a sequence. The first connection tries each server
    ``connect_attempts`` times, then fails with :class:`ConnectionFailed`; once connected, reconnection never
    gives up (nats-py's default stops after 60 attempts) and pending publishes are buffered meanwhile.
    ``credentials`` authenticate and set up TLS (see :class:`Credentials`).
    """
    urls = [u.strip() for u in servers.split(",")] if isinstance(servers, str) else list(servers)
    credentials = credentials or Credentials()
    options = credentials.options()
    # nats-py takes fractions of a second here, though its signature says int.
    options.update(connect_timeout=connect_timeout, reconnect_time_wait=0.5)

    denials: collections.deque[tuple[float, str]] = collections.deque(maxlen=16)

    errors: list[str] = []
    untrusted = anyio.CancelScope()  # cancelled when the server's certificate fails verification

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))
        if "permissions violation" in str(exc).lower():
            denials.append((time.monotonic(), str(exc)))
        if isinstance(exc, ssl.SSLCertVerificationError):
            untrusted.cancel()  # no retry can fix it, and nats-py would wait in vain
        log.warning("nats_error", error=str(exc), error_type=type(exc).__name__)

    opened: list[NatsClient] = []

    async def on_disconnected() -> None:
        if opened and (opened[0].is_closed or opened[0].is_draining):
            return  # our own close, not an outage
        log.warning("nats_disconnected")

    async def on_reconnected() -> None:
        log.info("nats_reconnected")

    where = ", ".join(urls)
    tls_hint = " (give the CA that signed the server's certificate: --tls-ca)"
    # nats-py can hang on a failed TLS verification (a TLS server, no --tls-ca): bound the whole attempt.
    give_up_after = (connect_timeout + 1.0) * max(1, connect_attempts) * len(urls) + 2.0
    nc = NatsClient()  # ours from the start, so a failed or cancelled attempt can be closed, not leaked
    connected = False
    try:
        with untrusted, anyio.fail_after(give_up_after):
            await nc.connect(
                servers=urls,
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=connect_attempts,
                ping_interval=10,
                max_outstanding_pings=3,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                **options,
            )
            connected = True
    except TimeoutError as exc:
        await _discard(nc)
        hint = tls_hint if credentials.tls_ca is None else ""
        raise ConnectionFailed(
            f"cannot connect to NATS at {where}: no answer within {give_up_after:g} s{hint}"
        ) from exc
    except (nats.errors.Error, OSError) as exc:
        await _discard(nc)
        hint = ""
        if any("authorization" in text.lower() for text in (str(exc), *errors)):
            hint = " (the server refused these credentials: check --nkey/--creds/--user and the server's accounts)"
        raise ConnectionFailed(f"cannot connect to NATS at {where}: {exc}{hint}") from exc
    except BaseException:
        await _discard(nc)
        raise
    if not connected:  # the verification failure cancelled the attempt
        await _discard(nc)
        raise ConnectionFailed(
            f"cannot connect to NATS at {where}: the server's TLS certificate is not trusted{tls_hint}"
        )
    opened.append(nc)
    nc.options["max_reconnect_attempts"] = -1  # connected: from now on, never give up on the cluster
    version = nc.connected_server_version
    try:
        check_server_version((version.major, version.minor, version.patch))
    except ServerVersionError:
        await nc.close()
        raise
    if not nc._server_info.get("jetstream"):
        await nc.close()
        raise ServerVersionError("the NATS server has JetStream disabled; start it with -js")
    js = _JetStream(nc, timeout=request_timeout)
    return Connection(nc, js, request_timeout, identity=credentials.principal(), denials=denials)
