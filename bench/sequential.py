"""Benchmark: N concurrent 3-task sequential workflows through Partita, against a raw JetStream pipeline
doing the same hops, in the same run, on the same embedded nats-server.

Per task step both pipelines do: fetch the event, CAS-write the workflow state, publish the task durably,
fetch the task in a worker, publish the result durably, ack both. The raw pipeline does only that, with
nats-py directly and no engine logic, so the ratio is Partita's overhead over the floor JetStream sets.

    python -m bench.sequential [--workflows N] [--sync-always]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import anyio
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StreamConfig

from partita.actors import Node, WorkerSpec, configure_logging, run_workers
from partita.transport import Client, Connection, EmbeddedServer, connect

STEPS = 3
START_CONCURRENCY = 256


@dataclass
class Result:
    name: str
    workflows: int
    seconds: float
    latencies_ms: list[float]

    @property
    def workflows_per_second(self) -> float:
        return self.workflows / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.workflows * STEPS / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        return (
            f"{self.name:<8} {self.workflows:>6} wf in {self.seconds:6.2f} s  "
            f"{self.workflows_per_second:8.1f} wf/s  {self.steps_per_second:8.1f} steps/s  "
            f"p50 {self.percentile(0.50):7.1f} ms  p99 {self.percentile(0.99):7.1f} ms"
        )


async def _start_all(count: int, start: Callable[[int], Awaitable[None]]) -> None:
    limiter = anyio.Semaphore(START_CONCURRENCY)

    async def one(i: int) -> None:
        async with limiter:
            await start(i)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)


# --- raw JetStream pipeline --------------------------------------------------------------------------


async def run_raw(conn: Connection, count: int) -> Result:
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
    started: dict[str, float] = {}
    latencies: list[float] = []
    all_done = anyio.Event()

    async def on_done(msg: object) -> None:
        workflow_id = msg.subject.rsplit(".", 1)[1]  # type: ignore[attr-defined]
        latencies.append((time.perf_counter() - started[workflow_id]) * 1000)
        if len(latencies) == count:
            all_done.set()

    done_sub = await nc.subscribe("raw.done.*", cb=on_done)

    async def orchestrate(msg: object) -> None:
        event = json.loads(msg.data)  # type: ignore[attr-defined]
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
        await msg.ack()  # type: ignore[attr-defined]

    async def work(msg: object) -> None:
        task = json.loads(msg.data)  # type: ignore[attr-defined]
        await js.publish("raw.ev.result", json.dumps({"id": task["id"], "step": task["step"] + 1}).encode())
        await msg.ack()  # type: ignore[attr-defined]

    async def pump(durable: str, stream: str, handle: Callable[[object], Awaitable[None]]) -> None:
        sub = await js.pull_subscribe_bind(durable, stream)
        async with anyio.create_task_group() as handlers:
            while not all_done.is_set():
                try:
                    msgs = await sub.fetch(256, timeout=0.5)
                except nats.errors.TimeoutError:  # an empty fetch
                    continue
                for msg in msgs:
                    handlers.start_soon(handle, msg)
        await sub.unsubscribe()

    async def start(i: int) -> None:
        workflow_id = f"w{i}"
        started[workflow_id] = time.perf_counter()
        await js.publish("raw.ev.start", json.dumps({"id": workflow_id, "step": 0}).encode())

    begin = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, "orch", "RAW_EVENTS", orchestrate)
        tg.start_soon(pump, "work", "RAW_TASKS", work)
        await _start_all(count, start)
        await all_done.wait()
    seconds = time.perf_counter() - begin
    await done_sub.unsubscribe()
    return Result("raw", count, seconds, latencies)


# --- Partita -------------------------------------------------------------------------------------------


async def noop() -> dict[str, object]:
    return {}


async def run_partita(conn: Connection, url: str, count: int) -> Result:
    definition = {
        "name": "bench3",
        "tasks": [{"name": f"b{i}", "taskReferenceName": f"b{i}"} for i in range(STEPS)],
    }
    specs = [WorkerSpec(f"b{i}", noop, concurrency=256) for i in range(STEPS)]
    started: dict[str, float] = {}
    latencies: list[float] = []
    all_done = anyio.Event()
    async with await Client.connect(url) as client:
        await client.register_json(json.dumps(definition))

        async def on_done(msg: object) -> None:
            workflow_id = msg.subject.rsplit(".", 1)[1]  # type: ignore[attr-defined]
            latencies.append((time.perf_counter() - started[workflow_id]) * 1000)
            if len(latencies) == count:
                all_done.set()

        done_sub = await conn.js._nc.subscribe("partita.done.*", cb=on_done)
        node = Node(conn, max_in_flight=1024)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            await tg.start(partial(run_workers, conn, specs, stop=stop))
            ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(count)]

            async def start(i: int) -> None:
                started[ids[i]] = time.perf_counter()
                message = {"kind": "StartWorkflow", "workflowId": ids[i], "name": "bench3"}
                await conn.publish_durable(client.layout.start_subject(ids[i]), json.dumps(message).encode())

            begin = time.perf_counter()
            await _start_all(count, start)
            await all_done.wait()
            seconds = time.perf_counter() - begin
            stop.set()
            node.request_stop()
        await done_sub.unsubscribe()
    return Result("partita", count, seconds, latencies)


async def main(workflows: int, sync_always: bool) -> None:
    configure_logging(json=True, level="WARNING")
    with tempfile.TemporaryDirectory(prefix="partita-bench-") as store:
        async with EmbeddedServer(store, sync_always=sync_always) as server:
            conn = await connect(server.url, name="bench")
            try:
                raw = await run_raw(conn, workflows)
                partita = await run_partita(conn, server.url, workflows)
            finally:
                await conn.aclose()
    sync = "sync_interval: always" if sync_always else "default sync_interval (2 min)"
    print(f"{workflows} concurrent {STEPS}-task sequential workflows, nats-server file store, {sync}")
    print(raw.line())
    print(partita.line())
    print(
        f"ratio partita/raw: throughput {partita.workflows_per_second / raw.workflows_per_second:.2f}x, "
        f"p50 latency {partita.percentile(0.5) / raw.percentile(0.5):.2f}x, "
        f"p99 latency {partita.percentile(0.99) / raw.percentile(0.99):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--sync-always", action="store_true", help="fsync every JetStream write")
    options = parser.parse_args()
    anyio.run(main, options.workflows, options.sync_always)
