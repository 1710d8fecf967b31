"""WaitTaskSpec (conductor-oss/conductor test-harness/.../integration/WaitTaskSpec.groovy), ported: each test
cites the feature's line; the fixtures are the spec's, unchanged.

Conductor's ``workflowExecutor.updateTask(new TaskResult(waitTask))`` with the WAIT task's status set to COMPLETED
is Conductor's update of that task by id; here it is the update by reference (``client.update_task``), the API
Conductor offers clients for WAIT tasks (``POST /tasks/{workflowId}/{taskRefName}/{status}``)."""

from __future__ import annotations

from partita.transport import Client, Connection

from .conductor import Conductor, conductor_server


async def register_all(conductor: Conductor) -> None:
    # WaitTaskSpec.groovy:32 setup()
    await conductor.register_fixture("wait_workflow_integration_test.json")
    await conductor.register_fixture("set_variable_workflow_integration_test.json")


async def test_workflow_with_set_variable_task(conn: Connection, client: Client) -> None:
    # WaitTaskSpec.groovy:37 "Test workflow with set variable task"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("set_variable_workflow_integration_test", 1, "", {"var": "var_test_value"})
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert [(t["taskType"], t["status"]) for t in workflow["tasks"]] == [("simple", "SCHEDULED")]

        # :54-72 the 'simple' task completed: SET_VARIABLE runs, the WAIT task waits.
        await conductor.complete("simple", {"ok1": "ov1"})
        workflow = await conductor.settle_tasks(workflow_id, 3, status="RUNNING")
        assert [(t["taskType"], t["status"]) for t in workflow["tasks"]] == [
            ("simple", "COMPLETED"),
            ("SET_VARIABLE", "COMPLETED"),
            ("WAIT", "IN_PROGRESS"),
        ]
        assert workflow["variables"] == {"var": "var_test_value"}

        # :74-91 the WAIT task completed: the workflow completes, its output the variables.
        await client.update_task(workflow_id, "wait0", "COMPLETED")
        workflow = await conductor.settle(workflow_id, lambda w: w["status"] != "RUNNING", what="the workflow to end")
        assert workflow["status"] == "COMPLETED"
        assert [(t["taskType"], t["status"]) for t in workflow["tasks"]] == [
            ("simple", "COMPLETED"),
            ("SET_VARIABLE", "COMPLETED"),
            ("WAIT", "COMPLETED"),
        ]
        assert workflow["variables"] == {"var": "var_test_value"}
        assert workflow["output"] == {"variables": {"var": "var_test_value"}}


async def test_wait_based_simple_workflow_is_executed(conn: Connection, client: Client) -> None:
    # WaitTaskSpec.groovy:94 "Verify that a wait based simple workflow is executed"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_wait_workflow", 1, "", {})
        workflow = await conductor.settle(
            workflow_id, lambda w: [t["status"] for t in w["tasks"]] == ["IN_PROGRESS"], what="the WAIT task"
        )
        assert workflow["status"] == "RUNNING"
        assert [(t["taskType"], t["status"]) for t in workflow["tasks"]] == [("WAIT", "IN_PROGRESS")]

        # :107-120 the WAIT task completed: integration_task_1 is scheduled.
        await client.update_task(workflow_id, "wait0", "COMPLETED")
        workflow = await conductor.settle_tasks(workflow_id, 2, status="RUNNING")
        assert [(t["taskType"], t["status"]) for t in workflow["tasks"]] == [
            ("WAIT", "COMPLETED"),
            ("integration_task_1", "SCHEDULED"),
        ]

        # :122-132 integration_task_1 polled and completed: the workflow completes.
        await conductor.complete("integration_task_1")
        workflow = await conductor.settle(workflow_id, lambda w: w["status"] != "RUNNING", what="the workflow to end")
        assert workflow["status"] == "COMPLETED"
        assert len(workflow["tasks"]) == 2
        assert (workflow["tasks"][1]["taskType"], workflow["tasks"][1]["status"]) == ("integration_task_1", "COMPLETED")
