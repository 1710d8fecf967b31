"""Which workers are alive: workers announce (task type, domain) every few seconds on core NATS; nodes keep
the last time each pair was heard, for taskToDomain fallback lists ("the first domain with a worker active in
the last 10 s", reference §6). No consumer-info polling per task."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final, final

import anyio
import structlog
from anyio.abc import TaskStatus

from partita.transport import Connection, Layout, TransportError

log = structlog.get_logger(__name__)

ANNOUNCE_INTERVAL_SECONDS: Final = 5.0
ACTIVE_WITHIN_SECONDS: Final = 10.0  # Conductor's activeWorkerLastPollTimeout


MAX_PAIRS: Final = 4096  # (type, domain) pairs remembered; announcements beyond are only logged
Provision = Callable[[str, str | None], Awaitable[None]]


@final
class WorkerPresence:
    """``provision`` (a node) is awaited the first time a pair is heard: it creates the pair's task consumer,
    so a worker whose identity may not create consumers (``partita auth``) can bind as soon as it announces."""

    def __init__(self, conn: Connection, layout: Layout, provision: Provision | None = None) -> None:
        self._conn = conn
        self._layout = layout
        self._provision = provision
        self._last_seen: dict[tuple[str, str | None], float] = {}
        self._provisioned: set[tuple[str, str | None]] = set()

    def is_active(self, task_type: str, domain: str) -> bool:
        seen = self._last_seen.get((task_type, domain))
        return seen is not None and time.monotonic() - seen <= ACTIVE_WITHIN_SECONDS

    def _forget_silent(self) -> bool:
        """Drop pairs not heard within the activity window; whether any room was made."""
        cutoff = time.monotonic() - ACTIVE_WITHIN_SECONDS
        silent = [pair for pair, seen in self._last_seen.items() if seen < cutoff]
        for pair in silent:
            del self._last_seen[pair]
            self._provisioned.discard(pair)  # provisioning again later is harmless (idempotent)
        return bool(silent)

    def heard(self, task_type: str, domain: str | None) -> None:
        self._last_seen[(task_type, domain)] = time.monotonic()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        subscription = await self._conn.subscribe(self._layout.workers_filter)
        task_status.started()
        try:
            async with anyio.create_task_group() as provisions:
                async for subject, _ in subscription.messages():
                    parsed = self._layout.parse_worker_subject(subject)
                    if parsed is None:
                        continue
                    if (
                        parsed not in self._last_seen
                        and len(self._last_seen) >= MAX_PAIRS
                        and not self._forget_silent()
                    ):
                        log.warning("worker_pairs_full", subject=subject, limit=MAX_PAIRS)
                        continue
                    self.heard(*parsed)
                    if self._provision is not None and parsed not in self._provisioned:
                        self._provisioned.add(parsed)  # at most one attempt in flight per pair
                        provisions.start_soon(self._create_consumer, self._provision, parsed)
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.aclose()

    async def _create_consumer(self, provision: Provision, pair: tuple[str, str | None]) -> None:
        """Off the announcement loop, so a slow JetStream does not delay hearing other workers."""
        try:
            await provision(*pair)
        except TransportError as exc:  # heard again in a few seconds: try then
            self._provisioned.discard(pair)
            log.warning("worker_consumer_not_created", task_type=pair[0], domain=pair[1], error=str(exc))
