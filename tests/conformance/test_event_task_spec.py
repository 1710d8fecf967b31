"""EventTaskSpec (conductor-oss/conductor test-harness/.../integration/EventTaskSpec.groovy), ported: each test
cites the feature's line; the fixtures are the spec's, unchanged.

Conductor's ``asyncSystemTaskExecutor.execute(eventTask, ...)`` has no counterpart: a node executes the EVENT task
(sink ``conductor``) itself; the test waits for the state the spec asserts."""

from __future__ import annotations

import msgspec

from partita.transport import Client, Connection

from ._tasks_steps import ended, step, trail
from .conductor import FIXTURES, conductor_server

FIXTURE = "event_workflow_integration_test.json"


async def test_event_based_simple_workflow_is_executed(conn: Connection, client: Client) -> None:
    # EventTaskSpec.groovy:42 "Verify that a event based simple workflow is executed"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture(FIXTURE)  # EventTaskSpec.groovy:38 setup()
        workflow_id = await conductor.start("test_event_workflow", 1, "", {})
        workflow = await step(conductor, workflow_id, 2)
        assert workflow["status"] == "RUNNING"
        assert trail(workflow) == [("EVENT", "COMPLETED"), ("integration_task_1", "SCHEDULED")]
        assert workflow["tasks"][0]["outputData"].get("event_produced")

        # :58-68 integration_task_1 polled and completed: the workflow completes.
        await conductor.complete("integration_task_1")
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")
        assert workflow["status"] == "COMPLETED"
        assert len(workflow["tasks"]) == 2
        assert trail(workflow)[1] == ("integration_task_1", "COMPLETED")


async def test_workflow_with_event_task_that_is_async_complete(conn: Connection, client: Client) -> None:
    # EventTaskSpec.groovy:71 "Test a workflow with event task that is asyncComplete "
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture(FIXTURE)
        # :72-82 the definition updated: the EVENT task asyncComplete.
        definition = msgspec.json.decode((FIXTURES / FIXTURE).read_bytes())
        definition["tasks"][0]["asyncComplete"] = True
        await conductor.register(definition)

        workflow_id = await conductor.start("test_event_workflow", 1, "", {})
        workflow = await conductor.settle(
            workflow_id,
            lambda w: ended(w) or (bool(w["tasks"]) and w["tasks"][0]["status"] != "SCHEDULED"),
            what="the EVENT task executed",
        )
        assert workflow["status"] == "RUNNING"
        assert trail(workflow) == [("EVENT", "IN_PROGRESS")]
        assert workflow["tasks"][0]["outputData"].get("event_produced")

        # :97-112 the EVENT task completed through the API: the workflow moves on.
        # new TaskResult(task) carries the task's outputData (event_produced) into the update.
        await client.update_task(workflow_id, "wait0", "COMPLETED", workflow["tasks"][0]["outputData"])
        workflow = await step(conductor, workflow_id, 2)
        assert workflow["status"] == "RUNNING"
        assert trail(workflow) == [("EVENT", "COMPLETED"), ("integration_task_1", "SCHEDULED")]
        assert workflow["tasks"][0]["outputData"].get("event_produced")

        # :114-127 integration_task_1 polled and completed: the workflow completes.
        await conductor.complete("integration_task_1")
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")
        assert workflow["status"] == "COMPLETED"
        assert trail(workflow) == [("EVENT", "COMPLETED"), ("integration_task_1", "COMPLETED")]
        assert workflow["tasks"][0]["outputData"].get("event_produced")
