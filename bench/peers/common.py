"""What every peer provides, and the process handling they share: servers and workers are started by PID on
127.0.0.1, awaited until ready with a deadline, and stopped by PID (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from ..measure import RunOne

HOST = "127.0.0.1"
READY_SECONDS = 60.0
STOP_SECONDS = 15.0


@dataclass
class PeerSystem:
    """A running peer, ready for ``steps``-task chains.

    ``run_one(i)`` starts workflow ``i``, waits until its result is seen by the caller and checks it (raising
    if it is wrong). ``pids`` are the processes under test besides this one (servers, workers); their CPU time
    and their descendants' is counted. ``durability`` says in one line what is fsynced when.
    """

    run_one: RunOne
    pids: list[int]
    durability: str
    versions: dict[str, str] = field(default_factory=dict)
    notes: str = ""


# A peer: given a scratch directory (removed afterwards) and the chain length, a running system.
Peer = Callable[[Path, int], AbstractAsyncContextManager[PeerSystem]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def port_open(port: int) -> bool:
    try:
        stream = await anyio.connect_tcp(HOST, port)
    except OSError:
        return False
    await stream.aclose()
    return True


@asynccontextmanager
async def spawned(
    argv: Sequence[str],
    log: Path,
    ready: Callable[[], Awaitable[bool]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_seconds: float = READY_SECONDS,
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Start ``argv`` in its own session (output to ``log``), wait until ``ready()`` holds, stop it on exit."""
    process = _start(argv, log, env, cwd)
    try:
        deadline = time.monotonic() + ready_seconds
        while not await ready():
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {process.returncode} before it was ready; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv[0]} not ready after {ready_seconds:.0f} s; see {log}")
            await anyio.sleep(0.05)
        yield process
    finally:
        await anyio.to_thread.run_sync(stop, process)


def _start(argv: Sequence[str], log: Path, env: Mapping[str, str] | None, cwd: Path | None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as sink:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group (its workers too), SIGKILL after a deadline; by PID, always reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group (forked pool workers)
    if process.poll() is None:
        process.wait(timeout=STOP_SECONDS)
