"""The raw JetStream baseline: a hand-written nats-py orchestrator and worker doing the same hops as Partita with
the same durability, and no engine logic. Per step: fetch the event, CAS-write the workflow state in KV,
publish the task(s) durably, ack; the worker fetches the task, publishes the result durably, acks. The ratio
against it is Partita's overhead over the floor JetStream sets."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StreamConfig

from partita.transport import Connection

from .engine import worker_process
from .measure import Completions, Pipeline


async def pump(js: JetStreamContext, durable: str, stream: str, handle: Callable[[Msg], Awaitable[None]],
               stopping: anyio.Event) -> None:  # fmt: skip
    sub = await js.pull_subscribe_bind(durable, stream)
    async with anyio.create_task_group() as handlers:
        while not stopping.is_set():
            try:
                msgs = await sub.fetch(256, timeout=0.5)
            except TimeoutError:  # an empty fetch (nats-py raises both its own and asyncio.TimeoutError)
                continue
            for msg in msgs:
                handlers.start_soon(handle, msg)
    await sub.unsubscribe()


async def run_worker(url: str) -> None:
    """The raw worker, in its own process (``python -m bench.raw URL``) as Partita's is: until SIGTERM."""
    nc = await nats.connect(url, name="raw-worker")
    js = nc.jetstream()

    async def work(msg: Msg) -> None:
        task = json.loads(msg.data)
        result = {"id": task["id"], "step": task["step"] + 1, "n": task["n"] + 1}
        await js.publish("raw.ev.result", json.dumps(result).encode())
        await msg.ack()

    await pump(js, "work", "RAW_TASKS", work, anyio.Event())


@asynccontextmanager
async def raw_pipeline(
    conn: Connection, url: str, scratch: Path, steps: int, width: int = 1
) -> AsyncIterator[Pipeline]:
    """``steps`` sequential steps of ``width`` parallel tasks each (width > 1: a fan-out joined at the end).

    Like the engine's workload, a task turns ``n`` into ``n + 1``; the state carries the last ``n`` and the
    completion notice the final one, which ``run_one`` checks (``input + steps``, or ``input + 1`` for a fan-out).
    """
    js = conn.js
    nc = js._nc
    for name, subject in (("RAW_EVENTS", "raw.ev.>"), ("RAW_TASKS", "raw.task.>")):
        await js.add_stream(StreamConfig(name=name, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE))
    kv = await js.create_key_value(KeyValueConfig(bucket="raw_state", history=1))
    for stream, durable, subject in (("RAW_EVENTS", "orch", "raw.ev.>"), ("RAW_TASKS", "work", "raw.task.>")):
        await js.add_consumer(
            stream,
            ConsumerConfig(durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
        )
    revisions: dict[str, int] = {}
    pending: dict[str, int] = {}  # results still awaited in the current step
    locks: dict[str, asyncio.Lock] = {}  # one event at a time per workflow, like an actor
    completions = Completions()
    done_sub = await nc.subscribe("raw.done.*", cb=completions.on_message)

    async def orchestrate(msg: Msg) -> None:
        event = json.loads(msg.data)
        workflow_id, step, n = event["id"], event["step"], event["n"]
        async with locks.setdefault(workflow_id, asyncio.Lock()):
            left = pending.get(workflow_id, 0) - 1 if step > 0 else 0
            state = json.dumps({"id": workflow_id, "step": step, "n": n, "left": max(left, 0)}).encode()
            if workflow_id in revisions:
                revisions[workflow_id] = await kv.update(workflow_id, state, last=revisions[workflow_id])
            else:
                revisions[workflow_id] = await kv.create(workflow_id, state)
            if left > 0:
                pending[workflow_id] = left
            elif step < steps:
                pending[workflow_id] = width
                acks = [
                    await js.publish_async("raw.task.t", json.dumps({"id": workflow_id, "step": step, "n": n}).encode())
                    for _ in range(width)
                ]
                await asyncio.gather(*acks)
            else:
                pending.pop(workflow_id, None)
                locks.pop(workflow_id, None)
                await nc.publish(f"raw.done.{workflow_id}", str(n).encode())
        await msg.ack()

    async def run_one(i: int) -> None:
        workflow_id = f"w{i}"
        finished = completions.expect(workflow_id)
        await js.publish("raw.ev.start", json.dumps({"id": workflow_id, "step": 0, "n": i}).encode())
        await finished.wait()
        n = int(completions.data.pop(workflow_id))
        expected = i + (steps if width == 1 else 1)
        if n != expected:
            raise AssertionError(f"raw workflow {i} ended with {n}, expected {expected}")

    async def verify(numbers: range) -> None:
        """Checked by ``run_one`` as each workflow finished."""

    stopping = anyio.Event()
    argv = [sys.executable, "-m", "bench.raw", url]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, js, "orch", "RAW_EVENTS", orchestrate, stopping)
            async with worker_process(conn, argv, scratch / "raw-worker.log", "RAW_TASKS", "work") as pid:
                yield Pipeline(run_one, verify, [pid])
            stopping.set()
    finally:
        await done_sub.unsubscribe()
        for stream in ("RAW_EVENTS", "RAW_TASKS"):
            await js.delete_stream(stream)
        await js.delete_key_value("raw_state")


if __name__ == "__main__":
    anyio.run(run_worker, sys.argv[1])
