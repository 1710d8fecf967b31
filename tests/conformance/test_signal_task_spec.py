"""SignalTaskSpec (conductor-oss/conductor test-harness/.../integration/SignalTaskSpec.groovy), ported: each test
cites the feature's line; the fixtures are the spec's, unchanged.

``taskService.signalTask`` is Conductor's signal API (see ``_tasks_steps.signal_task``); ``sweep`` and the
SUB_WORKFLOW system task's execution have no counterpart: the test waits for the state the spec asserts."""

from __future__ import annotations

import pytest

from partita.schemas.errors import WorkflowNotFound
from partita.transport import Client, Connection

from ._tasks_steps import ended, signal_task, step, trail
from .conductor import Conductor, conductor_server


async def register_all(conductor: Conductor) -> None:
    # SignalTaskSpec.groovy:48 setup()
    for name in (
        "wait_workflow_integration_test.json",
        "signal_sub_wf_child_integration_test.json",
        "signal_sub_wf_parent_integration_test.json",
    ):
        await conductor.register_fixture(name)


def waiting(workflow: dict) -> bool:
    return bool(workflow["tasks"]) and workflow["tasks"][0]["status"] == "IN_PROGRESS"


async def test_signal_completes_a_blocked_wait_task_and_advances_the_workflow(conn: Connection, client: Client) -> None:
    # SignalTaskSpec.groovy:55 "Signal completes a blocked WAIT task and advances the workflow"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_wait_workflow", 1, "", {})
        workflow = await conductor.settle(workflow_id, waiting, what="the WAIT task")
        assert workflow["status"] == "RUNNING"
        assert trail(workflow) == [("WAIT", "IN_PROGRESS")]
        wait_task_id = workflow["tasks"][0]["taskId"]

        # :66-76 signalled COMPLETED: the WAIT task's id is returned, the task is COMPLETED.
        task_id = await signal_task(client, workflow_id, "COMPLETED", {"result": "done"})
        assert task_id is not None
        assert task_id == wait_task_id

        # :78-88 the workflow moves on to integration_task_1.
        workflow = await step(conductor, workflow_id, 2)
        assert workflow["status"] == "RUNNING"
        assert trail(workflow) == [("WAIT", "COMPLETED"), ("integration_task_1", "SCHEDULED")]


async def test_signal_on_a_workflow_with_no_blocking_task_returns_null(conn: Connection, client: Client) -> None:
    # SignalTaskSpec.groovy:91 "Signal on a workflow with no blocking task returns null"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_wait_workflow", 1, "", {})
        await conductor.settle(workflow_id, waiting, what="the WAIT task")
        await client.update_task(workflow_id, "wait0", "COMPLETED")
        await step(conductor, workflow_id, 2)  # Conductor's updateTask has applied it when it returns

        # :98-102 signalled again: nothing is blocked.
        assert await signal_task(client, workflow_id, "COMPLETED", {}) is None


async def test_signal_on_a_non_existent_workflow_throws_not_found(conn: Connection, client: Client) -> None:
    # SignalTaskSpec.groovy:105 "Signal on a non-existent workflow throws NotFoundException"
    async with conductor_server(conn, client):
        with pytest.raises(WorkflowNotFound):
            await signal_task(client, "non-existent-wf-id", "COMPLETED", {})


async def test_signal_descends_into_a_sub_workflow_to_complete_its_blocked_wait_task(
    conn: Connection, client: Client
) -> None:
    # SignalTaskSpec.groovy:113 "Signal descends into a sub-workflow to complete its blocked WAIT task"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        parent_id = await conductor.start("signal_sub_wf_parent", 1, "", {})

        # :117-125 the SUB_WORKFLOW task executed: IN_PROGRESS.
        parent = await conductor.settle(
            parent_id, lambda w: ended(w) or waiting(w), what="the SUB_WORKFLOW task in progress"
        )
        assert parent["status"] == "RUNNING"
        assert trail(parent) == [("SUB_WORKFLOW", "IN_PROGRESS")]

        # :127-135 the sub-workflow's WAIT task is IN_PROGRESS.
        sub_id = parent["tasks"][0]["subWorkflowId"]
        sub = await conductor.settle(sub_id, lambda w: ended(w) or waiting(w), what="the sub-workflow's WAIT task")
        assert sub["status"] == "RUNNING"
        assert trail(sub) == [("WAIT", "IN_PROGRESS")]
        wait_task_id = sub["tasks"][0]["taskId"]

        # :137-147 signalling the parent completes the WAIT task inside the sub-workflow.
        task_id = await signal_task(client, parent_id, "COMPLETED", {"result": "sub-done"})
        assert task_id is not None
        assert task_id == wait_task_id

        # :149-163 the sub-workflow completes, then the parent.
        sub = await conductor.settle(sub_id, ended, what="the sub-workflow to end")
        assert trail(sub) == [("WAIT", "COMPLETED")]
        assert sub["status"] == "COMPLETED"
        parent = await conductor.settle(parent_id, ended, what="the parent to end")
        assert parent["status"] == "COMPLETED"
