"""Measuring a pipeline: closed-loop runs, latency percentiles, CPU time of every process under test."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from nats.aio.msg import Msg

# A pipeline runs workflow i and returns once it has finished (its completion was pushed, never polled).
RunOne = Callable[[int], Awaitable[None]]
# After the timed run: check that every workflow in the range produced the output its input implies (raises).
Verify = Callable[[range], Awaitable[None]]


@dataclass
class Pipeline:
    """A system under test, ready: ``pids`` are its processes besides this one and the nats-server (workers)."""

    run_one: RunOne
    verify: Verify
    pids: list[int] = field(default_factory=list)


def cpu_seconds(server_pid: int | None) -> float:
    """CPU time (user + system) of this process and the nats-server: the whole system under test."""
    total = time.process_time()  # this process, at the clock's resolution (os.times() ticks at 10 ms)
    if server_pid is not None:
        fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time (user + system) of ``pids`` and every live descendant, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    wanted = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sum(times.get(pid, 0.0) for pid in wanted)


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Result:
    workflows: int
    steps_per_workflow: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float

    @property
    def workflows_per_second(self) -> float:
        return self.workflows / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.workflows_per_second * self.steps_per_workflow

    @property
    def cpu_ms_per_workflow(self) -> float:
        return self.cpu_seconds * 1000 / self.workflows

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def figures(self) -> dict[str, float]:
        return {
            "cpu_ms_per_wf": round(self.cpu_ms_per_workflow, 3),
            "wf_per_s": round(self.workflows_per_second, 1),
            "steps_per_s": round(self.steps_per_second, 1),
            "p50_ms": round(self.percentile(0.50), 2),
            "p99_ms": round(self.percentile(0.99), 2),
        }


class Completions:
    """Workflow-finished notifications (core NATS ``<prefix>.done.<id>``) turned into per-workflow events; the
    notification's payload is kept for the waiter (``data``)."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}
        self.data: dict[str, bytes] = {}

    def expect(self, workflow_id: str) -> anyio.Event:
        event = self._events[workflow_id] = anyio.Event()
        return event

    async def on_message(self, msg: Msg) -> None:
        workflow_id = msg.subject.rsplit(".", 1)[1]
        event = self._events.pop(workflow_id, None)
        if event is not None:
            self.data[workflow_id] = msg.data
            event.set()


async def measure(
    run_one: RunOne, count: int, in_flight: int, offset: int, steps: int, cpu: Callable[[], float]
) -> Result:
    """Run ``count`` workflows, at most ``in_flight`` at once, and time each from start to completion."""
    latencies: list[float] = []
    limiter = anyio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with limiter:
            began = time.perf_counter()
            await run_one(offset + i)
            latencies.append((time.perf_counter() - began) * 1000)

    began, cpu_began = time.perf_counter(), cpu()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return Result(count, steps, time.perf_counter() - began, latencies, cpu() - cpu_began)
