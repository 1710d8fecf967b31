"""idle-many: many workflows parked on a WAIT task. How much node memory each costs while its actor is alive
and after the actors passivated (their state lives in JetStream), and how fast they all resume."""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
import tracemalloc
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from partita.actors import Node
from partita.transport import Client, Connection, EmbeddedServer, Layout, connect

from .measure import Completions, cpu_seconds, measure

PARK = {"name": "bench_park", "tasks": [{"name": "park", "taskReferenceName": "park", "type": "WAIT"}]}
IDLE_SECONDS = 2.0  # the bench's actor idle time (30 s by default), so passivation is quick to observe
START_IN_FLIGHT = 200
RESUME_IN_FLIGHT = 50
TRACED = 1000  # workflows parked with tracemalloc on, to count the live heap they leave behind


def rss_kib() -> float:
    """This process's resident set now (``ru_maxrss`` would be the peak)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024


async def _until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"idle-many: {what} did not happen within {within} s")
        await anyio.sleep(0.05)


async def idle_many(count: int, sync_always: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="partita-bench-") as store:
        async with EmbeddedServer(Path(store), sync_always=sync_always) as server:
            conn = await connect(server.url, name="bench")
            try:
                return await _run(conn, count, server.pid)
            finally:
                await conn.aclose()


async def _run(conn: Connection, count: int, server_pid: int | None) -> dict[str, float]:
    client_layout = Layout()
    client = await Client.over(conn, client_layout)
    await client.register_json(json.dumps(PARK))
    node = Node(conn, client_layout, max_in_flight=1024, idle_seconds=IDLE_SECONDS, history=True)
    completions = Completions()
    done = await conn.js._nc.subscribe(f"{client_layout.prefix}.done.*", cb=completions.on_message)
    first = [f"00000000-0000-4000-9000-{i:012d}" for i in range(count)]
    second = [f"00000000-0000-4000-a000-{i:012d}" for i in range(count)]
    gc.collect()
    baseline = rss_kib()
    async with anyio.create_task_group() as tg:
        await tg.start(node.run)
        limiter = anyio.Semaphore(START_IN_FLIGHT)

        async def start(workflow_id: str) -> None:
            async with limiter:
                message = {"kind": "StartWorkflow", "workflowId": workflow_id, "name": "bench_park"}
                await conn.publish_durable(client_layout.start_subject(workflow_id), json.dumps(message).encode())

        async def park(ids: list[str]) -> tuple[float, float, float]:
            """Start and park ``ids``: (seconds, RSS with their actors alive, RSS once they passivated)."""
            began, expected = time.perf_counter(), node.statistics().events_received + len(ids)
            async with anyio.create_task_group() as starts:
                for workflow_id in ids:
                    starts.start_soon(start, workflow_id)
            await _until(lambda: node.statistics().events_received >= expected, 600, "every start processed")
            await _until(lambda: node.statistics().events_in_flight == 0, 600, "every start decided")
            seconds = time.perf_counter() - began
            gc.collect()
            alive = rss_kib()
            await _until(lambda: node.statistics().actors_active == 0, 600, "every actor passivated")
            gc.collect()
            return seconds, alive, rss_kib()

        parked_seconds, with_actors, after_first = await park(first)
        # A second batch shows what each parked workflow really keeps: memory freed by the first batch's actors
        # is reused, so the growth now is what stays per passivated workflow (RSS alone never shrinks back).
        _, _, after_second = await park(second)
        # RSS includes the allocator's fragmentation; the live Python heap is what the node really keeps.
        traced = [f"00000000-0000-4000-b000-{i:012d}" for i in range(min(count, TRACED))]
        tracemalloc.start()
        heap_before = tracemalloc.get_traced_memory()[0]
        await park(traced)
        gc.collect()
        heap_after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()

        async def resume(i: int) -> None:
            workflow_id = first[i]
            finished = completions.expect(workflow_id)
            await client.complete_task(workflow_id, "park", {"resumed": True})
            await finished.wait()

        resumed = await measure(resume, count, RESUME_IN_FLIGHT, 0, 1, partial(cpu_seconds, server_pid))
        node.request_stop()
    await done.unsubscribe()
    return {
        "workflows": count,
        "park_wf_per_s": round(count / parked_seconds, 1),
        "kib_per_workflow_with_actors": round((with_actors - baseline) / count, 2),
        "kib_rss_growth_per_passivated_workflow": round(max(0.0, after_second - after_first) / count, 3),
        "bytes_heap_per_passivated_workflow": round(max(0, heap_after - heap_before) / len(traced), 1),
        "resume_wf_per_s": round(resumed.workflows_per_second, 1),
        "resume_p50_ms": round(resumed.percentile(0.5), 2),
        "resume_p99_ms": round(resumed.percentile(0.99), 2),
        "resume_cpu_ms_per_wf": round(resumed.cpu_ms_per_workflow, 3),
    }
