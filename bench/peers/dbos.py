"""DBOS Transact (Python) on its own PostgreSQL 15: a ``steps``-step chain as one DBOS workflow.

What it measures: ``run_one(i)`` starts workflow ``bench-{i}`` (``SetWorkflowID`` + ``DBOS.start_workflow_async``)
in this process, which runs ``steps`` sequential ``@DBOS.step()``s (each returns its input + 1) and awaits the
result. DBOS is a library, not a server: workflows and steps run in this process (its CPU is counted by the
driver), and every state change is a PostgreSQL transaction: the workflow's status row when it starts, one
checkpoint row per step, the status row again when it ends. Steps, not queues, are DBOS's natural form of a chain;
there is no worker pool to hand tasks to.

Durability: the server is a fresh ``initdb`` cluster with PostgreSQL's defaults (fsync=on, synchronous_commit=on,
WAL fsynced on commit), so each of those commits is on disk before DBOS goes on. It listens on 127.0.0.1 only,
on a free port, with its socket in the scratch directory; it runs as the ``postgres`` OS user (it refuses root).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path

import anyio
import psycopg
from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench.peers.common import HOST, PeerSystem, free_port, spawned

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
DATABASE = "dbos_bench"
# Drop root for the postgres OS user; exec, so the PID we hold is the postmaster's own.
AS_POSTGRES = ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", "--"]


@DBOS.step()
async def add_one(x: int) -> int:
    return x + 1


@DBOS.workflow()
async def chain(x: int, steps: int) -> int:
    for _ in range(steps):
        x = await add_one(x)
    return x


def init_cluster(scratch: Path) -> tuple[Path, Path]:
    """A fresh cluster in ``scratch``, owned by the postgres user, trusting local connections: (data, sockets)."""
    scratch.chmod(0o755)  # the postgres user must reach its data and socket directories
    data, sockets = scratch / "pgdata", scratch / "sockets"
    for directory in (data, sockets):
        directory.mkdir(mode=0o700)
        shutil.chown(directory, PG_USER, PG_USER)
    # --no-sync only skips fsyncing initdb's own files; the running server keeps its defaults.
    argv = [*AS_POSTGRES, str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "--no-sync"]
    subprocess.run(argv, check=True, capture_output=True)
    return data, sockets


async def settings(port: int, names: tuple[str, ...]) -> dict[str, str] | None:
    """The server's ``SHOW`` values once it accepts connections, else None."""
    try:
        async with await psycopg.AsyncConnection.connect(host=HOST, port=port, user=PG_USER, dbname="postgres") as db:
            shown = {}
            for name in names:
                row = await (await db.execute(f"SHOW {name}")).fetchone()
                shown[name] = str(row[0]) if row else "?"
            return shown
    except psycopg.OperationalError:
        return None


@asynccontextmanager
async def peer(scratch: Path, steps: int) -> AsyncIterator[PeerSystem]:
    data, sockets = await anyio.to_thread.run_sync(init_cluster, scratch)
    port = free_port()
    server = [
        *AS_POSTGRES,
        str(PG_BIN / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        f"listen_addresses={HOST}",
        "-c",
        f"unix_socket_directories={sockets}",
    ]

    async def ready() -> bool:
        return await settings(port, ()) is not None

    async with spawned(server, scratch / "postgres.log", ready) as postgres:
        shown = await settings(port, ("fsync", "synchronous_commit", "wal_sync_method", "server_version"))
        assert shown is not None
        config: DBOSConfig = {
            "name": "partita-bench",
            "system_database_url": f"postgresql://{PG_USER}@{HOST}:{port}/{DATABASE}",
            "log_level": "WARNING",
        }
        DBOS(config=config)
        try:
            await anyio.to_thread.run_sync(DBOS.launch)

            async def run_one(i: int) -> None:
                with SetWorkflowID(f"bench-{i}"):
                    handle = await DBOS.start_workflow_async(chain, i, steps)
                result = await handle.get_result()
                if result != i + steps:
                    raise RuntimeError(f"workflow bench-{i} returned {result!r}, expected {i + steps}")

            yield PeerSystem(
                run_one=run_one,
                pids=[postgres.pid],
                durability=(
                    f"PostgreSQL defaults: fsync={shown['fsync']}, synchronous_commit={shown['synchronous_commit']}, "
                    f"wal_sync_method={shown['wal_sync_method']}; DBOS commits the workflow status at start and end "
                    "and one checkpoint per step, each WAL-flushed before it goes on"
                ),
                versions={"dbos": version("dbos"), "postgresql": shown["server_version"]},
                notes=(
                    "DBOS runs in the driver's process (async workflow + async @DBOS.step()s, no queue); "
                    f"system database only, sys_db pool 20 (default); {os.cpu_count()} CPUs shared with postgres"
                ),
            )
        finally:
            await anyio.to_thread.run_sync(DBOS.destroy)
            # DBOS made its (now shut down) executor this loop's default; give the loop a fresh one.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())
