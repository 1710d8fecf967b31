"""recovery: chain-3 workflows flow through a node running as its own process; it is killed with SIGKILL and a
new one started. How long until the first workflow completes again, until throughput is back, and until every
workflow caught in flight by the crash has finished (the events the dead node held come back after the
events consumer's AckWait)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio

from partita.actors import WorkerSpec, run_workers
from partita.transport import Client, EmbeddedServer, Layout, connect

from .engine import chain_definition, step
from .measure import Completions

IN_FLIGHT = 50
BEFORE_SECONDS = 3.0  # steady state before the kill
WINDOW = 0.5  # throughput is measured in windows of this many seconds
RECOVERED = 0.9  # "back to full throughput": a window at this fraction of the rate before the kill
ROOT = Path(__file__).resolve().parent.parent


def _node(url: str, log: Path) -> subprocess.Popen[bytes]:
    """``partita node --name bench-node`` as a child process (stopped by PID by the caller). The replacement
    has the killed node's name, as a systemd unit (``--name %H-%i``) or a StatefulSet pod restarts under its
    own: it takes the partitions over at once. (A node under a new name waits for the dead one's 5 s lease;
    tests/integration/test_ownership.py covers that case.)"""
    with open(log, "ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "partita.actors.cli", "--nats", url, "node", "--name", "bench-node"],
            cwd=ROOT,
            env={**os.environ, "PARTITA_LOG_FORMAT": "json", "PARTITA_LOG_LEVEL": "WARNING"},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def recovery(quick: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="partita-bench-") as store:
        async with EmbeddedServer(Path(store) / "nats") as server:
            conn = await connect(server.url, name="bench")
            first = _node(server.url, Path(store) / "node1.log")
            second: subprocess.Popen[bytes] | None = None
            try:
                client = await Client.over(conn, Layout())
                definition = chain_definition(3)
                await client.register_json(json.dumps(definition))
                completions = Completions()
                finished_at: list[float] = []
                finished: set[int] = set()

                async def run_one(i: int) -> None:
                    workflow_id = f"00000000-0000-4000-c000-{i:012d}"
                    done = completions.expect(workflow_id)
                    name, number = definition["name"], {"n": i}
                    message = {"kind": "StartWorkflow", "workflowId": workflow_id, "name": name, "input": number}
                    await conn.publish_durable(client.layout.start_subject(workflow_id), json.dumps(message).encode())
                    await done.wait()
                    finished_at.append(time.monotonic())
                    finished.add(i)

                sub = await conn.js._nc.subscribe(f"{client.layout.prefix}.done.*", cb=completions.on_message)
                stop_workers, stop_load = anyio.Event(), anyio.Event()
                started_before_kill: list[int] = []
                killed_at = new_node_at = 0.0
                counter = 0

                async def driver() -> None:
                    nonlocal counter
                    async with anyio.create_task_group() as flows:
                        limiter = anyio.Semaphore(IN_FLIGHT)
                        while not stop_load.is_set():
                            await limiter.acquire()
                            counter += 1
                            if not killed_at:
                                started_before_kill.append(counter)

                            async def one(i: int) -> None:
                                try:
                                    await run_one(i)
                                finally:
                                    limiter.release()

                            flows.start_soon(one, counter)

                specs = [WorkerSpec("bench_step", step, concurrency=256)]
                async with anyio.create_task_group() as tg:
                    await tg.start(partial(run_workers, conn, specs, stop=stop_workers))
                    tg.start_soon(driver)
                    await _until(lambda: len(finished_at) >= IN_FLIGHT, 60)  # the first node is up and working
                    steady_from = time.monotonic()
                    await anyio.sleep(BEFORE_SECONDS)  # a steady load, measured below (not a synchronisation)
                    killed_at = time.monotonic()
                    before = sum(steady_from <= t < killed_at for t in finished_at) / (killed_at - steady_from)
                    first.send_signal(signal.SIGKILL)
                    first.wait(timeout=10)
                    new_node_at = time.monotonic()
                    second = _node(server.url, Path(store) / "node2.log")
                    stranded = set(started_before_kill)
                    limit = 20.0 if quick else 60.0
                    await _until(lambda: stranded <= finished, limit)
                    all_done_at = time.monotonic()
                    with contextlib.suppress(TimeoutError):  # a machine busy elsewhere may never get back to 90 %
                        await _until(lambda: _recovered(finished_at, new_node_at, before), limit)
                    stop_load.set()
                    stop_workers.set()
                    tg.cancel_scope.cancel()  # workflows still in flight are abandoned with the server
                await sub.unsubscribe()
                after = [t for t in finished_at if t >= new_node_at]
                return {
                    "wf_per_s_before": round(before, 1),
                    "first_completion_s": round(min(after) - new_node_at, 3) if after else float("nan"),
                    "full_throughput_s": round(_recovered_at(finished_at, new_node_at, before) - new_node_at, 3),
                    "all_in_flight_done_s": round(all_done_at - new_node_at, 3),
                }
            finally:
                for process in (first, second):
                    if process is not None:
                        _stop(process)
                await conn.aclose()


async def _until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"recovery: not reached within {within} s")
        await anyio.sleep(0.05)


def _recovered_at(finished_at: list[float], since: float, rate: float) -> float:
    """The end of the first window after ``since`` whose completion rate reached RECOVERED times ``rate``."""
    start = since
    while start + WINDOW <= time.monotonic():
        count = sum(start <= t < start + WINDOW for t in finished_at)
        if count / WINDOW >= RECOVERED * rate:
            return start + WINDOW
        start += WINDOW / 5
    return float("inf")


def _recovered(finished_at: list[float], since: float, rate: float) -> bool:
    return _recovered_at(finished_at, since, rate) != float("inf")
