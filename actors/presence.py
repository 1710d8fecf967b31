"""Which workers are alive: workers announce (task type, domain) every few seconds on core NATS; nodes keep
the last time each pair was heard, for taskToDomain fallback lists ("the first domain with a worker active in
the last 10 s", reference §6). No consumer-info polling per task."""

from __future__ import annotations

import time
from typing import Final, final

import anyio
from anyio.abc import TaskStatus

from partita.transport import Connection, Layout

ANNOUNCE_INTERVAL_SECONDS: Final = 5.0
ACTIVE_WITHIN_SECONDS: Final = 10.0  # Conductor's activeWorkerLastPollTimeout


@final
class WorkerPresence:
    def __init__(self, conn: Connection, layout: Layout) -> None:
        self._conn = conn
        self._layout = layout
        self._last_seen: dict[tuple[str, str | None], float] = {}

    def is_active(self, task_type: str, domain: str) -> bool:
        seen = self._last_seen.get((task_type, domain))
        return seen is not None and time.monotonic() - seen <= ACTIVE_WITHIN_SECONDS

    def heard(self, task_type: str, domain: str | None) -> None:
        self._last_seen[(task_type, domain)] = time.monotonic()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        subscription = await self._conn.subscribe(self._layout.workers_filter)
        task_status.started()
        try:
            async for subject, _ in subscription.messages():
                parsed = self._layout.parse_worker_subject(subject)
                if parsed is not None:
                    self.heard(*parsed)
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.aclose()
