"""Partita pipelines for the benchmark: a node and trivial workers in this process, workflows started with
start messages and their completions pushed to the client (``<prefix>.done.<id>``), never polled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from partita.actors import Node, WorkerSpec, run_workers
from partita.transport import Client, Connection, Layout

from .measure import Completions, RunOne

IN_FLIGHT_TASKS = 256  # per worker: never the bottleneck


async def noop() -> dict[str, object]:
    return {}


def chain_definition(steps: int) -> dict[str, Any]:
    return {
        "name": f"bench_chain{steps}",
        "tasks": [{"name": "bench_step", "taskReferenceName": f"s{i}"} for i in range(steps)],
    }


def fanout_definition(width: int) -> dict[str, Any]:
    return {
        "name": f"bench_fanout{width}",
        "tasks": [
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"forkTaskName": "bench_step", "forkTaskInputs": [{"i": i} for i in range(width)]}},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
        ],
    }  # fmt: skip


@asynccontextmanager
async def partita_pipeline(
    conn: Connection, definition: dict[str, Any], *, history: bool = True
) -> AsyncIterator[RunOne]:
    client = await Client.over(conn, Layout())
    await client.register_json(json.dumps(definition))
    name = str(definition["name"])
    completions = Completions()
    done_sub = await conn.js._nc.subscribe(f"{client.layout.prefix}.done.*", cb=completions.on_message)

    async def run_one(i: int) -> None:
        workflow_id = f"00000000-0000-4000-8000-{i:012d}"
        finished = completions.expect(workflow_id)
        message = {"kind": "StartWorkflow", "workflowId": workflow_id, "name": name}
        await conn.publish_durable(client.layout.start_subject(workflow_id), json.dumps(message).encode())
        await finished.wait()

    node = Node(conn, max_in_flight=1024, history=history)
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            specs = [WorkerSpec("bench_step", noop, concurrency=IN_FLIGHT_TASKS)]
            await tg.start(partial(run_workers, conn, specs, stop=stop))
            yield run_one
            stop.set()
            node.request_stop()
    finally:
        await done_sub.unsubscribe()
