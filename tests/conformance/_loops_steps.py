"""Steps the loops/switch/transform ports share, over the facade in ``conductor.py`` (not changed here).

``expect`` is the workhorse: a spec's ``with(workflowExecutionService.getExecutionStatus(id, true)) {...}``
block asserts the workflow's status and its tasks' (taskType, status[, iteration]) in order; a node decides
asynchronously, so the step waits (with a deadline) until the record shows exactly that, and on timeout fails
with the record it saw instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .conductor import JSON, Conductor, Polled

Row = tuple[Any, ...]


def trail(workflow: JSON, width: int = 2) -> list[Row]:
    """The tasks as (taskType, status[, iteration]) rows."""
    fields = ("taskType", "status", "iteration")[:width]
    return [tuple(t[f] for f in fields) for t in workflow["tasks"]]


def _matches(workflow: JSON, status: str, rows: Sequence[Row]) -> bool:
    if workflow["status"] != status or len(workflow["tasks"]) != len(rows):
        return False
    for task, row in zip(workflow["tasks"], rows, strict=True):
        fields = ("taskType", "status", "iteration")[: len(row)]
        if tuple(task[f] for f in fields) != tuple(row):
            return False
    return True


async def expect(
    conductor: Conductor, workflow_id: str, status: str, rows: Sequence[Row], *, within: float = 20.0
) -> JSON:
    """Wait until the workflow is ``status`` with exactly the tasks ``rows``; then return its JSON. On
    timeout: an assertion comparing what the spec asserts with the last record read."""
    try:
        return await conductor.settle(workflow_id, lambda w: _matches(w, status, rows), within=within)
    except AssertionError:
        workflow = await conductor.workflow(workflow_id)
        seen = [(t["taskType"], t["status"], t["iteration"], t["referenceTaskName"]) for t in workflow["tasks"]]
        raise AssertionError(
            f"expected status {status} with tasks {list(rows)};\n"
            f"got status {workflow['status']} (reason {workflow.get('reasonForIncompletion')!r}) with tasks {seen}"
        ) from None


async def verify_iteration(conductor: Conductor, polled: Polled, iteration: int) -> None:
    """DoWhileSpec.verifyTaskIteration (DoWhileSpec.groovy:1310): the polled task's reference name ends with
    ``__<iteration>`` and its ``iteration`` is that number (read from the workflow record)."""
    assert polled.task.reference_task_name.endswith(f"__{iteration}"), polled.task.reference_task_name
    workflow = await conductor.workflow(polled.task.workflow_instance_id)
    (task,) = [t for t in workflow["tasks"] if t["taskId"] == polled.task_id]
    assert task["iteration"] == iteration, task["iteration"]


def by_ref(workflow: JSON, ref: str) -> JSON:
    """``Workflow.getTaskByRefName``: the last task with that reference name."""
    found = [t for t in workflow["tasks"] if t["referenceTaskName"] == ref]
    assert found, f"no task {ref!r} in {[t['referenceTaskName'] for t in workflow['tasks']]}"
    return found[-1]


async def expect_at(
    conductor: Conductor,
    workflow_id: str,
    status: str,
    count: int,
    rows: dict[int, Row],
    *,
    within: float = 20.0,
) -> JSON:
    """Like :func:`expect` for a spec block that asserts ``tasks.size()`` and only some tasks: ``rows`` maps
    an index to its (taskType, status[, iteration])."""

    def ready(workflow: JSON) -> bool:
        if workflow["status"] != status or len(workflow["tasks"]) != count:
            return False
        for index, row in rows.items():
            fields = ("taskType", "status", "iteration")[: len(row)]
            if tuple(workflow["tasks"][index][f] for f in fields) != tuple(row):
                return False
        return True

    try:
        return await conductor.settle(workflow_id, ready, within=within)
    except AssertionError:
        workflow = await conductor.workflow(workflow_id)
        seen = [(t["taskType"], t["status"], t["referenceTaskName"]) for t in workflow["tasks"]]
        raise AssertionError(
            f"expected status {status} with {count} tasks, at {rows};\n"
            f"got status {workflow['status']} (reason {workflow.get('reasonForIncompletion')!r}) with tasks {seen}"
        ) from None


# --- SwitchTaskSpec and DecisionTaskSpec --------------------------------------------------------------
# The two specs are the same features line for line, on a SWITCH (output ``evaluationResult``) or a DECISION
# (output ``caseOutput``) flavour of the same fixtures; the steps below are written once and cited for both.

C, S, IP = "COMPLETED", "SCHEDULED", "IN_PROGRESS"


async def simple_conditional_workflow(conductor: Conductor, name: str, kind: str, correlation: str) -> None:
    """SwitchTaskSpec.groovy:53 / DecisionTaskSpec.groovy:49."""
    wid = await conductor.start(name, 1, correlation, {"param1": "p1", "param2": "p2", "case": "c"})
    await expect(conductor, wid, "RUNNING", [(kind, C), ("integration_task_1", S)])
    await conductor.complete("integration_task_1")
    await expect(conductor, wid, "RUNNING", [(kind, C), ("integration_task_1", C), ("integration_task_2", S)])
    await conductor.complete("integration_task_2")
    await expect_at(conductor, wid, "RUNNING", 4, {2: ("integration_task_2", C), 3: ("integration_task_20", S)})
    await conductor.complete("integration_task_20")
    await expect_at(conductor, wid, "COMPLETED", 4, {3: ("integration_task_20", C)})


async def conditional_leading_to_fork_join(conductor: Conductor, kind: str, correlation: str) -> None:
    """SwitchTaskSpec.groovy:124 / DecisionTaskSpec.groovy:120 (workflow ForkConditionalTest)."""
    wid = await conductor.start("ForkConditionalTest", 1, correlation, {"param1": "p1", "param2": "p2", "case": "c"})
    await expect(conductor, wid, "RUNNING", [
        ("FORK", C), (kind, C), ("integration_task_1", S), ("integration_task_10", S), ("JOIN", IP),
    ])  # fmt: skip
    by_ref(await conductor.workflow(wid), "joinTask")

    await conductor.complete("integration_task_1")
    await conductor.complete("integration_task_10")
    workflow = await expect_at(conductor, wid, "RUNNING", 6, {
        2: ("integration_task_1", C), 3: ("integration_task_10", C), 4: ("JOIN", IP), 5: ("integration_task_2", S),
    })  # fmt: skip
    assert workflow["tasks"][4]["inputData"]["joinOn"] == ["t20", "t10"]

    await conductor.complete("integration_task_2")
    workflow = await expect_at(conductor, wid, "RUNNING", 7, {
        4: ("JOIN", IP), 5: ("integration_task_2", C), 6: ("integration_task_20", S),
    })  # fmt: skip
    assert workflow["tasks"][4]["inputData"]["joinOn"] == ["t20", "t10"]

    await conductor.complete("integration_task_20")
    workflow = await expect_at(conductor, wid, "COMPLETED", 7, {4: ("JOIN", C), 6: ("integration_task_20", C)})
    assert workflow["tasks"][4]["inputData"]["joinOn"] == ["t20", "t10"]


async def default_case(conductor: Conductor, kind: str, output_key: str) -> None:
    """SwitchTaskSpec.groovy:219 / DecisionTaskSpec.groovy:215 (workflow ConditionalTaskWF)."""
    wid = await conductor.start("ConditionalTaskWF", 1, "conditional_default", {"param1": "xxx", "param2": "two"})
    workflow = await expect(conductor, wid, "RUNNING", [(kind, C), ("integration_task_10", S)])
    assert workflow["tasks"][0]["outputData"][output_key] == ["xxx"]
    await conductor.complete("integration_task_10")
    workflow = await expect_at(conductor, wid, "COMPLETED", 3, {1: ("integration_task_10", C), 2: (kind, C)})
    assert workflow["tasks"][2]["outputData"][output_key] == ["null"]


async def nested_case(conductor: Conductor, kind: str, output_key: str, case_value: str, expected: str) -> None:
    """SwitchTaskSpec.groovy:260 / DecisionTaskSpec.groovy:256, one row of the ``where:`` table."""
    wid = await conductor.start(
        "ConditionalTaskWF", 1, f"conditional_nested_{case_value}", {"param1": "nested", "param2": case_value}
    )
    workflow = await expect(conductor, wid, "RUNNING", [(kind, C), (kind, C), (expected, S)])
    assert workflow["tasks"][0]["outputData"][output_key] == ["nested"]
    assert workflow["tasks"][1]["outputData"][output_key] == [case_value]
    await conductor.complete(expected)
    workflow = await expect_at(conductor, wid, "COMPLETED", 4, {2: (expected, C), 3: (kind, C)})
    assert workflow["tasks"][3]["outputData"][output_key] == ["null"]


async def three_case(conductor: Conductor, kind: str, output_key: str) -> None:
    """SwitchTaskSpec.groovy:308 / DecisionTaskSpec.groovy:304."""
    wid = await conductor.start(
        "ConditionalTaskWF", 1, "conditional_three", {"param1": "three", "param2": "two", "finalCase": "notify"}
    )
    workflow = await expect(conductor, wid, "RUNNING", [(kind, C), ("integration_task_3", S)])
    assert workflow["tasks"][0]["outputData"][output_key] == ["three"]
    await conductor.complete("integration_task_3")
    workflow = await expect_at(conductor, wid, "RUNNING", 4, {
        1: ("integration_task_3", C), 2: (kind, C), 3: ("integration_task_4", S),
    })  # fmt: skip
    assert workflow["tasks"][2]["outputData"][output_key] == ["notify"]
    await conductor.complete("integration_task_4")
    workflow = await expect_at(conductor, wid, "COMPLETED", 4, {
        1: ("integration_task_3", C), 2: (kind, C), 3: ("integration_task_4", C),
    })  # fmt: skip
    assert workflow["tasks"][2]["outputData"][output_key] == ["notify"]
