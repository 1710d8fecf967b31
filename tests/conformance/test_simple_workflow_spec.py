"""SimpleWorkflowSpec (conductor-oss/conductor test-harness/.../integration/SimpleWorkflowSpec.groovy), ported:
each test cites the feature's line; the fixtures are the spec's, unchanged."""

from __future__ import annotations

from partita.transport import Client, Connection

from .conductor import conductor_server

WF = "integration_test_wf"


async def test_simple_workflow_completion(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:56 "Test simple workflow completion"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        workflow_id = await conductor.start(WF, 1, "", {"param1": "p1 value", "param2": "p2 value"})
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert [(t["taskType"], t["status"]) for t in workflow["tasks"]] == [("integration_task_1", "SCHEDULED")]

        await conductor.complete("integration_task_1", {"op": "task1.done"})
        workflow = await conductor.settle_tasks(workflow_id, 2, status="RUNNING")
        assert [(t["taskType"], t["status"]) for t in workflow["tasks"]] == [
            ("integration_task_1", "COMPLETED"),
            ("integration_task_2", "SCHEDULED"),
        ]

        polled = await conductor.poll_expect("integration_task_2")
        assert polled.input_data["tp1"] == "p1 value"
        assert polled.input_data["tp2"] == "task1.done"
        await conductor.update(polled, "COMPLETED", {})
        workflow = await conductor.settle(workflow_id, lambda w: w["status"] == "COMPLETED")
        assert len(workflow["tasks"]) == 2
        assert "o3" in workflow["output"]
