"""FailureWorkflowSpec (conductor-oss/conductor test-harness/.../integration/FailureWorkflowSpec.groovy), ported:
each test cites the feature's line; the fixtures are the spec's, unchanged."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._tasks_steps import ended
from .conductor import Conductor, conductor_server

FIXTURES = (
    "failure_workflow_for_terminate_task_workflow.json",
    "terminate_task_failed_workflow_integration.json",
    "test_task_failed_parent_workflow.json",
    "test_task_failed_sub_workflow.json",
)


async def register_all(conductor: Conductor) -> None:
    # FailureWorkflowSpec.groovy:38 setup()
    for name in FIXTURES:
        await conductor.register_fixture(name)


async def test_workflow_with_a_task_that_failed(conn: Connection, client: Client) -> None:
    # FailureWorkflowSpec.groovy:47 "Test workflow with a task that failed"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_terminate_task_failed_wf", 1, "testId", {"a": 1})
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")
        assert workflow["status"] == "FAILED"
        assert len(workflow["tasks"]) == 2
        assert workflow["reasonForIncompletion"] == "Early exit in terminate"
        assert [(t["taskType"], t["status"], t["seq"]) for t in workflow["tasks"]] == [
            ("LAMBDA", "COMPLETED", 1),
            ("TERMINATE", "COMPLETED", 2),
        ]
        assert workflow["output"]
        failure_id = workflow["output"]["conductor.failure_workflow"]
        failure = await conductor.settle(failure_id, ended, what="the failure workflow to end")
        assert failure["status"] == "COMPLETED"
        assert failure.get("correlationId") == workflow.get("correlationId")
        assert failure["input"]["workflowId"] == workflow_id
        assert failure["input"]["failureTaskId"] == workflow["tasks"][1]["taskId"]
        assert [t["taskType"] for t in failure["tasks"]] == ["LAMBDA"]
        assert failure["input"]["failedWorkflow"] is not None


async def test_workflow_with_a_task_failed_in_subworkflow(conn: Connection, client: Client) -> None:
    # FailureWorkflowSpec.groovy:84 "Test workflow with a task failed in subworkflow"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_task_failed_parent_wf", 1, "", {"a": 1})
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")

        # :100-115 the sub-workflow has failed (by its TERMINATE task).
        sub_id = next(t for t in workflow["tasks"] if t["referenceTaskName"] == "test_task_failed_sub_wf")[
            "subWorkflowId"
        ]
        sub = await conductor.settle(sub_id, ended, what="the sub-workflow to end")
        assert sub["status"] == "FAILED"
        assert len(sub["tasks"]) == 2
        assert "Workflow is FAILED by TERMINATE task" in (sub.get("reasonForIncompletion") or "")
        assert [(t["taskType"], t["status"], t["seq"]) for t in sub["tasks"]] == [
            ("LAMBDA", "COMPLETED", 1),
            ("TERMINATE", "COMPLETED", 2),
        ]

        # :117-140 the parent has failed, and its failure workflow got the failed SUB_WORKFLOW task.
        assert workflow["status"] == "FAILED"
        assert len(workflow["tasks"]) == 2
        assert [(t["taskType"], t["status"], t["seq"]) for t in workflow["tasks"]] == [
            ("LAMBDA", "COMPLETED", 1),
            ("SUB_WORKFLOW", "FAILED", 2),
        ]
        assert workflow["tasks"][0]["referenceTaskName"] == "lambdaTask1"
        failure_id = workflow["output"]["conductor.failure_workflow"]
        failure = await conductor.settle(failure_id, ended, what="the failure workflow to end")
        assert failure["status"] == "COMPLETED"
        assert failure.get("correlationId") == workflow.get("correlationId")
        assert failure["input"]["workflowId"] == workflow_id
        assert failure["input"]["failureTaskId"] == workflow["tasks"][1]["taskId"]
        assert [t["taskType"] for t in failure["tasks"]] == ["LAMBDA"]
        assert failure["input"]["failedWorkflow"] is not None
