"""Steps the conf-tasks ports need beyond :mod:`.conductor`'s facade."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from partita.actors import WorkerSpec
from partita.schemas import TaskMessage
from partita.transport import Client, Connection

from ..integration.harness import running
from .conductor import JSON, Conductor


def ended(workflow: JSON) -> bool:
    return workflow["status"] not in ("RUNNING", "PAUSED", "NOT_STARTED")


async def step(conductor: Conductor, workflow_id: str, count: int, *, within: float = 20.0) -> JSON:
    """The workflow once it has at least ``count`` tasks or has ended (whichever first): the state after a
    spec step, returned early on an unexpected end so the assertions that follow say what happened."""
    return await conductor.settle(
        workflow_id, lambda w: len(w["tasks"]) >= count or ended(w), within=within, what=f"{count} tasks"
    )


def trail(workflow: JSON, *keys: str) -> list[tuple[Any, ...]]:
    """``(taskType, status, *keys)`` of each task, in order."""
    return [(t["taskType"], t["status"], *(t.get(k) for k in keys)) for t in workflow["tasks"]]


@dataclass
class RecordingWorker:
    """A worker run by Partita's own worker SDK (``partita.actors.TaskWorker``): records each task it ran
    (workflow id, monotonic time) and returns ``output``."""

    task_type: str
    output: Mapping[str, object] = field(default_factory=dict)
    calls: list[tuple[str, float]] = field(default_factory=list)

    def __call__(self, task: TaskMessage) -> dict[str, object]:
        self.calls.append((task.workflow_instance_id, time.monotonic()))
        return dict(self.output)

    def ran(self, workflow_id: str) -> list[float]:
        return [at for wid, at in self.calls if wid == workflow_id]

    @property
    def spec(self) -> WorkerSpec:
        function: Callable[[TaskMessage], dict[str, object]] = self.__call__
        return WorkerSpec(self.task_type, function)


async def signal_task(
    client: Client, workflow_id: str, status: str, output: Mapping[str, object] | None = None
) -> str | None:
    """Conductor's ``TaskService.signalTask(workflowId, status, output)`` (core/.../service/TaskServiceImpl.java:
    175-189; REST ``POST /tasks/{workflowId}/{status}/signal``): update the first non-terminal WAIT task of the
    workflow, else of its running sub-workflows (depth first); the updated task's id, or None when nothing waits;
    NotFound for an unknown workflow. Partita's Client is expected to offer it as ``signal_task``."""
    signal = client.signal_task  # type: ignore[attr-defined]
    result: str | None = await signal(workflow_id, status, dict(output or {}))
    return result


@asynccontextmanager
async def workers(conn: Connection, *specs: WorkerSpec) -> AsyncIterator[None]:
    """Partita's worker SDK running ``specs`` for the block (no node: the test's node runs already)."""
    async with running(conn, specs, node=False):
        yield
