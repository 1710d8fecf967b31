"""Benchmark: 3-task sequential workflows through Partita, against a raw JetStream pipeline doing the same
hops, in the same run, on the same embedded nats-server.

Per task step both pipelines: fetch the event, CAS-write the workflow state, publish the task durably, fetch
the task in a worker, publish the result durably, ack both. The raw pipeline does only that, with nats-py
directly and no engine logic, so the ratio is Partita's overhead over the floor JetStream sets.

Two closed-loop phases per pipeline: one workflow at a time (latency without queueing), then N workflows with
up to 256 in flight (throughput, and latency under that load).

    python -m bench.sequential [--workflows N] [--sync-always]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StreamConfig

from partita.actors import Node, WorkerSpec, configure_logging, run_workers
from partita.transport import Client, Connection, EmbeddedServer, Layout, connect

STEPS = 3
IN_FLIGHT = 256
LATENCY_SAMPLES = 100

# A pipeline runs workflow i and returns once it has finished.
RunOne = Callable[[int], Awaitable[None]]


@dataclass
class Result:
    name: str
    workflows: int
    seconds: float
    latencies_ms: list[float]

    @property
    def workflows_per_second(self) -> float:
        return self.workflows / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.name:<22} {self.workflows:>6} wf {self.seconds:6.2f} s "
            f"{self.workflows_per_second:7.1f} wf/s {self.workflows_per_second * STEPS:7.1f} steps/s  "
            f"p50 {self.percentile(0.50):6.1f} ms  p99 {self.percentile(0.99):6.1f} ms"
        )


class Completions:
    """Workflow-finished notifications (core NATS) turned into per-workflow events."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}

    def expect(self, workflow_id: str) -> anyio.Event:
        event = self._events[workflow_id] = anyio.Event()
        return event

    async def on_message(self, msg: Msg) -> None:
        event = self._events.pop(msg.subject.rsplit(".", 1)[1], None)
        if event is not None:
            event.set()


async def measure(name: str, run_one: RunOne, count: int, in_flight: int, offset: int) -> Result:
    latencies: list[float] = []
    limiter = anyio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with limiter:
            began = time.perf_counter()
            await run_one(offset + i)
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return Result(name, count, time.perf_counter() - began, latencies)


# --- raw JetStream pipeline --------------------------------------------------------------------------


@asynccontextmanager
async def raw_pipeline(conn: Connection) -> AsyncIterator[RunOne]:
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
    completions = Completions()
    done_sub = await nc.subscribe("raw.done.*", cb=completions.on_message)

    async def orchestrate(msg: Msg) -> None:
        event = json.loads(msg.data)
        workflow_id, step = event["id"], event["step"]
        state = json.dumps({"id": workflow_id, "step": step}).encode()
        if workflow_id in revisions:
            revisions[workflow_id] = await kv.update(workflow_id, state, last=revisions[workflow_id])
        else:
            revisions[workflow_id] = await kv.create(workflow_id, state)
        if step < STEPS:
            await js.publish("raw.task.t", json.dumps({"id": workflow_id, "step": step}).encode())
        else:
            await nc.publish(f"raw.done.{workflow_id}", b"")
        await msg.ack()

    async def work(msg: Msg) -> None:
        task = json.loads(msg.data)
        await js.publish("raw.ev.result", json.dumps({"id": task["id"], "step": task["step"] + 1}).encode())
        await msg.ack()

    stopping = anyio.Event()

    async def pump(durable: str, stream: str, handle: Callable[[Msg], Awaitable[None]]) -> None:
        sub = await js.pull_subscribe_bind(durable, stream)
        async with anyio.create_task_group() as handlers:
            while not stopping.is_set():
                try:
                    msgs = await sub.fetch(256, timeout=0.5)
                except nats.errors.TimeoutError:  # an empty fetch
                    continue
                for msg in msgs:
                    handlers.start_soon(handle, msg)
        await sub.unsubscribe()

    async def run_one(i: int) -> None:
        workflow_id = f"w{i}"
        finished = completions.expect(workflow_id)
        await js.publish("raw.ev.start", json.dumps({"id": workflow_id, "step": 0}).encode())
        await finished.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, "orch", "RAW_EVENTS", orchestrate)
        tg.start_soon(pump, "work", "RAW_TASKS", work)
        yield run_one
        stopping.set()
    await done_sub.unsubscribe()


# --- Partita -------------------------------------------------------------------------------------------


async def noop() -> dict[str, object]:
    return {}


@asynccontextmanager
async def partita_pipeline(conn: Connection) -> AsyncIterator[RunOne]:
    definition = {"name": "bench3", "tasks": [{"name": f"b{i}", "taskReferenceName": f"b{i}"} for i in range(STEPS)]}
    specs = [WorkerSpec(f"b{i}", noop, concurrency=IN_FLIGHT) for i in range(STEPS)]
    client = await Client.over(conn, Layout())
    await client.register_json(json.dumps(definition))
    completions = Completions()
    done_sub = await conn.js._nc.subscribe("partita.done.*", cb=completions.on_message)

    async def run_one(i: int) -> None:
        workflow_id = f"00000000-0000-4000-8000-{i:012d}"
        finished = completions.expect(workflow_id)
        message = {"kind": "StartWorkflow", "workflowId": workflow_id, "name": "bench3"}
        await conn.publish_durable(client.layout.start_subject(workflow_id), json.dumps(message).encode())
        await finished.wait()

    node = Node(conn, max_in_flight=1024)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(node.run)
        await tg.start(partial(run_workers, conn, specs, stop=stop))
        yield run_one
        stop.set()
        node.request_stop()
    await done_sub.unsubscribe()


async def main(workflows: int, sync_always: bool) -> None:
    configure_logging(json=True, level="WARNING")
    results: dict[str, tuple[Result, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="partita-bench-") as store:
        async with EmbeddedServer(store, sync_always=sync_always) as server:
            conn = await connect(server.url, name="bench")
            try:
                for name, pipeline in (("raw", raw_pipeline), ("partita", partita_pipeline)):
                    async with pipeline(conn) as run_one:
                        alone = await measure(f"{name}, 1 in flight", run_one, LATENCY_SAMPLES, 1, 0)
                        loaded = await measure(f"{name}, {IN_FLIGHT} in flight", run_one, workflows, IN_FLIGHT, 10**6)
                    results[name] = (alone, loaded)
            finally:
                await conn.aclose()
    sync = "sync_interval: always" if sync_always else "default sync_interval (2 min)"
    print(f"3-task sequential workflows, trivial workers, one nats-server (file store, {sync}), one process")
    for alone, loaded in results.values():
        print(alone.line())
        print(loaded.line())
    (raw_alone, raw_loaded), (p_alone, p_loaded) = results["raw"], results["partita"]
    print(
        f"ratio partita/raw: throughput {p_loaded.workflows_per_second / raw_loaded.workflows_per_second:.2f}x, "
        f"p50 latency alone {p_alone.percentile(0.5) / raw_alone.percentile(0.5):.2f}x, "
        f"p99 latency alone {p_alone.percentile(0.99) / raw_alone.percentile(0.99):.2f}x, "
        f"p50 latency loaded {p_loaded.percentile(0.5) / raw_loaded.percentile(0.5):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=2000, help="workflows in the throughput phase")
    parser.add_argument("--sync-always", action="store_true", help="fsync every JetStream write")
    options = parser.parse_args()
    anyio.run(main, options.workflows, options.sync_always)
