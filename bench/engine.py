"""Partita pipelines for the benchmark: a node in this process and the trivial worker in its own process
(``partita worker bench.workers``, as users deploy workers), workflows started with start messages and their
completions pushed to the client (``<prefix>.done.<id>``), never polled."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats.errors

from partita.actors import Node
from partita.schemas import WorkflowStatus
from partita.transport import Client, Connection, Layout

from .measure import Completions, Pipeline
from .peers.common import spawned
from .workers import IN_FLIGHT_TASKS, step

__all__ = ["IN_FLIGHT_TASKS", "chain_definition", "fanout_definition", "partita_pipeline", "step"]

ROOT = Path(__file__).resolve().parent.parent


def chain_definition(steps: int) -> dict[str, Any]:
    """``steps`` tasks in a row, each given the previous one's output; the workflow's output is ``input + steps``."""
    tasks = [
        {"name": "bench_step", "taskReferenceName": f"s{i}",
         "inputParameters": {"n": "${workflow.input.n}" if i == 0 else f"${{s{i - 1}.output.n}}"}}
        for i in range(steps)
    ]  # fmt: skip
    return {"name": f"bench_chain{steps}", "tasks": tasks, "outputParameters": {"n": f"${{s{steps - 1}.output.n}}"}}


def fanout_definition(width: int) -> dict[str, Any]:
    return {
        "name": f"bench_fanout{width}",
        "tasks": [
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"forkTaskName": "bench_step", "forkTaskInputs": [{"n": i} for i in range(width)]}},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
        ],
        "outputParameters": {"joined": "${join.output}"},
    }  # fmt: skip


def expected_output(definition: dict[str, Any], i: int) -> dict[str, Any]:
    """What workflow ``i`` of a benchmark definition must output (every workflow's output is checked)."""
    if "joined" in definition["outputParameters"]:
        width = len(definition["tasks"][0]["inputParameters"]["forkTaskInputs"])
        return {"joined": {f"_bench_step_{k}": {"n": k + 1} for k in range(width)}}  # Conductor's fork refs
    return {"n": i + len(definition["tasks"])}


@asynccontextmanager
async def worker_process(
    conn: Connection, argv: list[str], log: Path, stream: str, consumer: str
) -> AsyncIterator[int]:
    """A worker process (stopped by PID on exit), logging warnings only as the node does, once it waits on its
    consumer (a pull request pending on the server); yields its PID."""
    env = {"PARTITA_LOG_FORMAT": "json", "PARTITA_LOG_LEVEL": "WARNING"}

    async def ready() -> bool:
        try:
            info = await conn.js.consumer_info(stream, consumer)
        except nats.errors.Error:  # not created yet
            return False
        return bool(info.num_waiting)

    async with spawned(argv, log, ready, env=env, cwd=ROOT) as process:
        yield process.pid


@asynccontextmanager
async def partita_pipeline(
    conn: Connection, url: str, scratch: Path, definition: dict[str, Any], *, history: bool = True
) -> AsyncIterator[Pipeline]:
    client = await Client.over(conn, Layout())
    await client.register_json(json.dumps(definition))
    name = str(definition["name"])
    completions = Completions()
    done_sub = await conn.js._nc.subscribe(f"{client.layout.prefix}.done.*", cb=completions.on_message)

    def workflow_id(i: int) -> str:
        return f"00000000-0000-4000-8000-{i:012d}"

    async def run_one(i: int) -> None:
        finished = completions.expect(workflow_id(i))
        message = {"kind": "StartWorkflow", "workflowId": workflow_id(i), "name": name, "input": {"n": i}}
        await conn.publish_durable(client.layout.start_subject(workflow_id(i)), json.dumps(message).encode())
        await finished.wait()

    async def verify(numbers: range) -> None:
        """After the timed run: every workflow COMPLETED with the output its input implies."""
        for i in numbers:
            workflow = await client.get(workflow_id(i))
            expected = expected_output(definition, i)
            if workflow.status != WorkflowStatus.COMPLETED or workflow.output != expected:
                raise AssertionError(f"workflow {i}: {workflow.status}, output {str(workflow.output)[:200]}")

    node = Node(conn, max_in_flight=1024, history=history)
    argv = [sys.executable, "-m", "partita.actors.cli", "--nats", url, "worker", "bench.workers"]
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            stream, consumer = client.layout.tasks_stream, client.layout.task_consumer("bench_step", None)
            async with worker_process(conn, argv, scratch / "worker.log", stream, consumer) as pid:
                yield Pipeline(run_one, verify, [pid])
            node.request_stop()
    finally:
        await done_sub.unsubscribe()
