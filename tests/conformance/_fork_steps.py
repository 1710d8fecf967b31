"""Steps the fork/join specs need beyond the facade: waiting for a spec's asserted task list.

A spec asserts the workflow after a step as ``status``, ``tasks.size()`` and, per index, ``taskType`` and
``status``. :func:`expect` waits (with a deadline) until the workflow shows exactly that, and returns it. If the
engine settles on something else, it returns the workflow as soon as it has stopped changing for a few seconds
(or at the deadline), and the assertion then shows the spec's expectation against what Partita did, as a diff.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from partita.schemas.conductor import conductor_workflow

from .conductor import JSON, Conductor

Row = tuple[str, str]  # (taskType, status)


def view(workflow: JSON, indices: Sequence[int]) -> dict[str, Any]:
    tasks = workflow["tasks"]
    return {
        "status": workflow["status"],
        "tasks.size()": len(tasks),
        **{f"tasks[{i}]": (tasks[i]["taskType"], tasks[i]["status"]) if i < len(tasks) else None for i in indices},
    }


def expected_view(status: str, count: int, rows: Mapping[int, Row] | Sequence[Row]) -> dict[str, Any]:
    by_index = dict(enumerate(rows)) if not isinstance(rows, Mapping) else dict(rows)
    return {"status": status, "tasks.size()": count, **{f"tasks[{i}]": row for i, row in sorted(by_index.items())}}


async def read(conductor: Conductor, workflow_id: str) -> JSON | None:
    found = await conductor.client.find(workflow_id)
    return conductor_workflow(found) if found is not None else None


async def expect(
    conductor: Conductor,
    workflow_id: str,
    status: str,
    count: int,
    rows: Mapping[int, Row] | Sequence[Row],
    *,
    within: float = 20.0,
    stable: float = 3.0,
) -> JSON:
    """Wait until the workflow is ``status`` with ``count`` tasks and the given (taskType, status) rows (all of
    them when ``rows`` is a list), then return it; assert (with a diff) if it settles on anything else."""
    want = expected_view(status, count, rows)
    indices = [int(k[6:-1]) for k in want if k.startswith("tasks[")]
    deadline = time.monotonic() + within
    last: dict[str, Any] | None = None
    last_change = time.monotonic()
    workflow: JSON | None = None
    while True:
        workflow = await read(conductor, workflow_id)
        if workflow is not None:
            now_view = view(workflow, indices)
            if now_view == want:
                return workflow
            fingerprint = {**now_view, "all": [(t["taskType"], t["status"]) for t in workflow["tasks"]]}
            if fingerprint != last:
                last, last_change = fingerprint, time.monotonic()
        now = time.monotonic()
        if now > deadline or (workflow is not None and now - last_change > stable):
            break
        await anyio.sleep(0.02)
    assert workflow is not None, f"workflow {workflow_id} never started"
    trail = [(t["referenceTaskName"], t["taskType"], t["status"]) for t in workflow["tasks"]]
    got = view(workflow, indices)
    differences = {key: (want[key], got[key]) for key in want if got[key] != want[key]}
    assert got == want, (
        f"spec vs Partita {differences}; reason {workflow.get('reasonForIncompletion')!r}; all tasks {trail}"
    )
    return workflow


async def child_id(conductor: Conductor, workflow_id: str, ref: str, *, within: float = 20.0) -> str:
    """The ``subWorkflowId`` of the parent's latest task ``ref``, once it has one."""

    def latest(w: JSON) -> JSON | None:
        matching = [t for t in w["tasks"] if t["referenceTaskName"] == ref]
        return matching[-1] if matching else None

    def has_child(w: JSON) -> bool:
        task = latest(w)
        return task is not None and bool(task.get("subWorkflowId"))

    workflow = await conductor.settle(workflow_id, has_child, within=within, what=f"a sub-workflow id on {ref}")
    task = latest(workflow)
    assert task is not None
    return str(task["subWorkflowId"])


def task_by_ref(workflow: JSON, ref: str) -> JSON:
    matching = [t for t in workflow["tasks"] if t["referenceTaskName"] == ref]
    assert matching, f"no task {ref!r} in {[t['referenceTaskName'] for t in workflow['tasks']]}"
    return matching[-1]
