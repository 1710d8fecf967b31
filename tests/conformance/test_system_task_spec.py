"""SystemTaskSpec (conductor-oss/conductor test-harness/.../integration/SystemTaskSpec.groovy), ported: the test
cites the feature's line; the fixture is the spec's, unchanged."""

from __future__ import annotations

import uuid

from partita.transport import Client, Connection

from ._simple_steps import settle_status, trail
from .conductor import conductor_server

WF = "async_complete_integration_test_wf"


async def test_system_task_with_async_complete_set_to_true(conn: Connection, client: Client) -> None:
    # SystemTaskSpec.groovy:43 "Test system task with asyncComplete set to true"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_with_async_complete_system_task_integration_test.json")
        workflow_id = await conductor.start(
            WF, 1, f"async_complete_test{uuid.uuid4()}", {"param1": "p1 value", "param2": "p2 value"}
        )
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert trail(workflow) == [("integration_task_1", "SCHEDULED")]

        await conductor.complete("integration_task_1", {"op": "task1.done"})
        workflow = await conductor.settle_tasks(workflow_id, 2)
        print(workflow["status"], trail(workflow), workflow.get("reasonForIncompletion"))
        assert False
