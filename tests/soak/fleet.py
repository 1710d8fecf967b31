"""The soak run's processes, and the faults it inflicts on them.

A :class:`Fleet` is the shipped 3-server JetStream cluster (``deploy/nats/cluster-*.conf`` on loopback ports,
stores under the run's directory), three ``partita node`` processes and two ``partita worker`` processes, every
one stopped by PID when the fleet closes. :class:`Faults` hits it at seeded random moments, one fault at a time
(so never two servers down at once), each fault healed before the next begins.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import anyio

from partita.transport import connect
from partita.transport.server import ClusterMember

from ..integration.harness import Process
from ..integration.test_cluster import nats_cluster

NODES: Final = ("node-1", "node-2", "node-3")
WORKERS: Final = ("worker-1", "worker-2")
NODE_ARGS: Final = ("node", "--replicas", "3")
WORKER_ARGS: Final = ("worker", "tests.chaos.workers", "tests.soak.workers")
FAULT_KINDS: Final = ("kill_node", "kill_worker", "kill_server", "pause_node", "restart_server")
SERVER_DOWN_SECONDS: Final = (3.0, 10.0)  # a killed server stays down this long before it is started again
PAUSE_SECONDS: Final = (8.0, 12.0)  # a frozen node: longer than its 5 s membership lease


def say(line: str) -> None:
    """Progress, on stderr (stdout carries only the summary line), stamped in UTC like the processes' logs."""
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    print(f"{stamp}Z {line}", file=sys.stderr, flush=True)


class Fleet:
    """The servers and the Partita processes of one run."""

    def __init__(self, members: list[ClusterMember], logs: Path) -> None:
        self.members = members
        self.logs = logs
        self.urls = ",".join(member.url for member in members)
        self.processes: dict[str, Process] = {}
        self._incarnations: Counter[str] = Counter()
        self.crashes: list[str] = []  # processes that exited without being told to

    def spawn(self, role: str) -> None:
        """Start (or start again) ``role``; each incarnation logs to its own file under ``logs``."""
        self._incarnations[role] += 1
        args = NODE_ARGS if role.startswith("node") else WORKER_ARGS
        log_path = self.logs / f"{role}-{self._incarnations[role]}.log"
        self.processes[role] = Process("--nats", self.urls, *args, log_path=log_path)

    def node_logs(self) -> list[Path]:
        return sorted(self.logs.glob("node-*.log"))

    def respawn_exited(self) -> None:
        """A process that died on its own is an engine problem: noted, and replaced so the run goes on."""
        for role, process in list(self.processes.items()):
            code = process.popen.poll()
            if code is not None:
                self.crashes.append(f"{role} (pid {process.pid}) exited by itself with code {code}")
                say(f"soak: {self.crashes[-1]}; restarting it")
                process.stop()  # closes its log
                self.spawn(role)

    async def restart_server(self, member: ClusterMember, *, kill: bool, down: float = 0.0) -> None:
        """SIGKILL (or SIGTERM, gracefully) one server, keep it down ``down`` seconds, start it again over the
        same store and port, and return once it answers JetStream requests."""
        if kill:
            await member.kill()
        else:
            await member.stop()
        await anyio.sleep(down)  # the fault itself: how long the server stays away
        # EmbeddedServer.start truncates its log; keep each incarnation's for the post-mortem.
        if member.log_path.exists():
            member.log_path.rename(member.log_path.with_name(f"nats-server.{time.time_ns()}.log"))
        await member.start()
        conn = await connect(member.url, name="soak-probe")
        try:
            await conn.wait_for_jetstream(within=120)
        finally:
            await conn.aclose()

    async def heal(self) -> None:
        """Everything up: each fault is undone before the next, so only what died by itself can be down."""
        for member in self.members:
            if member.pid is None:
                say(f"soak: {member.name} is down; starting it")
                await member.start()
        self.respawn_exited()

    def stop_processes(self) -> None:
        """SIGCONT and SIGTERM by PID (SIGKILL after a grace period), each process of the run."""
        for process in self.processes.values():
            process.stop()


@asynccontextmanager
async def open_fleet(store: Path) -> AsyncIterator[Fleet]:
    """The cluster, started; the nodes and workers are started by the caller (after provisioning), and
    everything is stopped by PID on exit, whatever happened."""
    logs = store / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    async with nats_cluster(store) as members:
        fleet = Fleet(members, logs)
        try:
            yield fleet
        finally:
            fleet.stop_processes()


class Faults:
    """Seeded faults, one at a time, until ``until`` (a ``time.monotonic()`` deadline). Each round of faults is
    a seeded shuffle of every kind, so even a short run sees each of them."""

    def __init__(self, fleet: Fleet, rng: random.Random, every: float) -> None:
        self.fleet = fleet
        self.rng = rng
        self.every = every
        self.count = 0
        self._round: list[str] = []

    async def run(self, until: float) -> None:
        while True:
            gap = self.rng.uniform(0.5, 1.5) * self.every
            if time.monotonic() + gap >= until:
                return
            await anyio.sleep(gap)  # the schedule: time between faults
            self.fleet.respawn_exited()
            if not self._round:
                self._round = self.rng.sample(FAULT_KINDS, len(FAULT_KINDS))
            await self.inject(self._round.pop())

    async def inject(self, kind: str) -> None:
        self.count += 1
        fleet, rng = self.fleet, self.rng
        match kind:
            case "kill_node" | "kill_worker":
                role = rng.choice(NODES if kind == "kill_node" else WORKERS)
                say(f"soak: fault {self.count}: kill -9 {role} (pid {fleet.processes[role].pid}), restarted")
                fleet.processes[role].kill()
                fleet.spawn(role)
            case "pause_node":
                role, seconds = rng.choice(NODES), rng.uniform(*PAUSE_SECONDS)
                say(f"soak: fault {self.count}: SIGSTOP {role} (pid {fleet.processes[role].pid}) for {seconds:.1f} s")
                fleet.processes[role].pause()
                try:
                    await anyio.sleep(seconds)  # the fault itself: how long the node stays frozen
                finally:
                    fleet.processes[role].resume()
            case "kill_server":
                member, down = rng.choice(fleet.members), rng.uniform(*SERVER_DOWN_SECONDS)
                say(f"soak: fault {self.count}: kill -9 {member.name} (pid {member.pid}), down {down:.1f} s")
                await fleet.restart_server(member, kill=True, down=down)
            case "restart_server":
                member = rng.choice(fleet.members)
                say(f"soak: fault {self.count}: graceful restart of {member.name} (pid {member.pid})")
                await fleet.restart_server(member, kill=False)
            case _:
                raise ValueError(f"unknown fault {kind!r}")
