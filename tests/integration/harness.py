"""Helpers for integration tests: run a node and workers in-process, or Partita processes by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

from partita.actors import Node, TaskWorker, WorkerSpec, run_workers
from partita.transport import Connection, Layout, TransportError

REPO = Path(__file__).resolve().parents[2]
PARTITA = str(Path(sys.executable).with_name("partita"))


@dataclass
class Running:
    node: Node | None
    workers: list[TaskWorker]


@asynccontextmanager
async def running(
    conn: Connection,
    specs: Sequence[WorkerSpec] = (),
    *,
    node: bool = True,
    stop_grace: float = 5.0,
    **node_options: Any,
) -> AsyncIterator[Running]:
    """A node (with ``node_options``) and workers in this process for the duration of the block, stopped
    gracefully after it."""
    async with anyio.create_task_group() as tg:
        the_node = Node(conn, stop_grace=stop_grace, **node_options) if node else None
        if the_node is not None:
            await tg.start(the_node.run)
        stop = anyio.Event()
        workers: list[TaskWorker] = []
        if specs:
            workers = await tg.start(partial(run_workers, conn, specs, stop=stop, stop_grace=stop_grace))
        try:
            yield Running(the_node, workers)
        finally:
            stop.set()
            if the_node is not None:
                the_node.request_stop()


async def unprocessed_events(conn: Connection, layout: Layout) -> int:
    """Workflow events still in the events stream (a work queue: an acknowledged event is removed)."""
    info = await conn.js.stream_info(layout.events_stream, subjects_filter=layout.events_filter)
    return sum((info.state.subjects or {}).values())


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``condition`` (sync or async) until true, failing after ``within`` seconds (a deadline, not a sleep)."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await anyio.sleep(0.02)


T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], within: float = 120.0) -> T:
    """A client call retried across a server's failover (the connection reconnects by itself), until
    ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.2)


class Process:
    """A ``partita`` child process, stopped by PID when the test ends."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.args = [PARTITA, *args]
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 -- closed in stop()
        self.popen = subprocess.Popen(
            self.args,
            cwd=REPO,
            env={**os.environ, "PARTITA_LOG_FORMAT": "json", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._close_log()

    def pause(self) -> None:
        """SIGSTOP: frozen, as in a long GC pause or a network partition; its sockets stay open."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        os.kill(self.pid, signal.SIGCONT)

    def _close_log(self) -> None:
        if hasattr(self._log, "close"):
            self._log.close()

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``grace``; returns the exit code."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGCONT)  # a paused process could not act on the SIGTERM
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._close_log()
        return self.popen.returncode


def run_cli(
    *args: str, input_text: str | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``partita ARGS`` to completion (``env``: extra environment variables)."""
    return subprocess.run(
        [PARTITA, *args],
        cwd=REPO,
        env={**os.environ, "PARTITA_LOG_FORMAT": "json", **(env or {})},
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
