"""LambdaAndTerminateTaskSpec (conductor-oss/conductor test-harness/.../integration/LambdaAndTerminateTaskSpec.groovy),
ported: each test cites the feature's line; the fixtures are the spec's, unchanged."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._tasks_steps import ended
from .conductor import Conductor, conductor_server

FIXTURES = (
    "failure_workflow_for_terminate_task_workflow.json",
    "terminate_task_completed_workflow_integration_test.json",
    "terminate_task_failed_workflow_integration.json",
    "simple_lambda_workflow_integration_test.json",
    "terminate_task_parent_workflow.json",
    "terminate_task_sub_workflow.json",
    "decision_and_terminate_integration_test.json",
)


async def register_all(conductor: Conductor) -> None:
    # LambdaAndTerminateTaskSpec.groovy:49 setup()
    for name in FIXTURES:
        await conductor.register_fixture(name)


async def test_terminate_task_when_the_status_is_completed(conn: Connection, client: Client) -> None:
    # LambdaAndTerminateTaskSpec.groovy:61 "Test workflow with a terminate task when the status is completed"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_terminate_task_wf", 1, "", {"a": 1})
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")
        assert workflow["status"] == "COMPLETED"
        assert len(workflow["tasks"]) == 2
        assert "Workflow is COMPLETED by TERMINATE task" in (workflow.get("reasonForIncompletion") or "")
        assert [(t["taskType"], t["status"], t["seq"]) for t in workflow["tasks"]] == [
            ("LAMBDA", "COMPLETED", 1),
            ("TERMINATE", "COMPLETED", 2),
        ]
        # output as String == "[result:[testvalue:true]]"
        assert workflow["output"] == {"result": {"testvalue": True}}


async def test_terminate_task_when_the_status_is_failed(conn: Connection, client: Client) -> None:
    # LambdaAndTerminateTaskSpec.groovy:86 "Test workflow with a terminate task when the status is failed"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_terminate_task_failed_wf", 1, "", {"a": 1})
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
        assert failure["input"]["workflowId"] == workflow_id
        assert [t["taskType"] for t in failure["tasks"]] == ["LAMBDA"]


async def test_terminate_task_when_the_workflow_has_a_subworkflow(conn: Connection, client: Client) -> None:
    # LambdaAndTerminateTaskSpec.groovy:117 "Test workflow with a terminate task when the workflow has a subworkflow"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_terminate_task_parent_wf", 1, "", {"a": 1})

        # :126-157 the SUB_WORKFLOW system task executed: it is IN_PROGRESS, the WAIT task too.
        def forked(w: dict) -> bool:
            statuses = {t["referenceTaskName"]: t["status"] for t in w["tasks"]}
            return statuses.get("test_terminate_subworkflow") == "IN_PROGRESS" and statuses.get("basicJavaA") == (
                "IN_PROGRESS"
            )

        workflow = await conductor.settle(workflow_id, forked, what="the sub-workflow and the WAIT task running")
        assert workflow["status"] == "RUNNING"
        assert [(t["taskType"], t["status"], t["seq"]) for t in workflow["tasks"]] == [
            ("FORK", "COMPLETED", 1),
            ("LAMBDA", "COMPLETED", 2),
            ("LAMBDA", "COMPLETED", 3),
            ("JOIN", "IN_PROGRESS", 4),
            ("SUB_WORKFLOW", "IN_PROGRESS", 5),
            ("WAIT", "IN_PROGRESS", 6),
        ]
        assert workflow["tasks"][1]["referenceTaskName"] == "lambdaTask1"
        assert workflow["tasks"][2]["referenceTaskName"] == "lambdaTask2"

        # :159-171 the sub-workflow is RUNNING, its one task SCHEDULED.
        sub_id = next(t for t in workflow["tasks"] if t["referenceTaskName"] == "test_terminate_subworkflow")[
            "subWorkflowId"
        ]
        sub = await conductor.settle_tasks(sub_id, 1, status="RUNNING")
        assert [(t["taskType"], t["status"]) for t in sub["tasks"]] == [("integration_task_3", "SCHEDULED")]

        # :173-206 completing the WAIT task runs the TERMINATE task.
        await client.update_task(workflow_id, "basicJavaA", "COMPLETED")
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")
        assert workflow["status"] == "COMPLETED"
        assert len(workflow["tasks"]) == 7
        assert "Workflow is COMPLETED by TERMINATE task" in (workflow.get("reasonForIncompletion") or "")
        assert [(t["taskType"], t["status"], t["seq"]) for t in workflow["tasks"]] == [
            ("FORK", "COMPLETED", 1),
            ("LAMBDA", "COMPLETED", 2),
            ("LAMBDA", "COMPLETED", 3),
            ("JOIN", "CANCELED", 4),
            ("SUB_WORKFLOW", "CANCELED", 5),
            ("WAIT", "COMPLETED", 6),
            ("TERMINATE", "COMPLETED", 7),
        ]
        assert workflow["tasks"][1]["referenceTaskName"] == "lambdaTask1"
        assert workflow["tasks"][2]["referenceTaskName"] == "lambdaTask2"

        # :208-216 the sub-workflow is terminated, its task CANCELED.
        sub = await conductor.settle(sub_id, ended, what="the sub-workflow to end")
        assert sub["status"] == "TERMINATED"
        assert len(sub["tasks"]) == 1
        assert "Parent workflow has been terminated with reason: Workflow is COMPLETED by TERMINATE task" in (
            sub.get("reasonForIncompletion") or ""
        )
        assert [(t["taskType"], t["status"]) for t in sub["tasks"]] == [("integration_task_3", "CANCELED")]


async def test_terminate_task_within_a_decision_branch(conn: Connection, client: Client) -> None:
    # LambdaAndTerminateTaskSpec.groovy:219 "Test workflow with a terminate task within a decision branch"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_input = {"param1": "p1", "param2": "p2", "case": "two"}
        workflow_id = await conductor.start("ConditionalTerminateWorkflow", 1, "", workflow_input)
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert [(t["taskType"], t["status"], t["seq"]) for t in workflow["tasks"]] == [
            ("integration_task_1", "SCHEDULED", 1)
        ]

        await conductor.complete("integration_task_1", {"op": "task1 completed"})
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")
        assert workflow["status"] == "FAILED"
        assert len(workflow["tasks"]) == 3
        # output as String == "[output:task1 completed]"
        assert workflow["output"] == {"output": "task1 completed"}
        assert "Workflow is FAILED by TERMINATE task" in (workflow.get("reasonForIncompletion") or "")
        assert [(t["taskType"], t["status"], t["seq"]) for t in workflow["tasks"]] == [
            ("integration_task_1", "COMPLETED", 1),
            ("DECISION", "COMPLETED", 2),
            ("TERMINATE", "COMPLETED", 3),
        ]
        assert workflow["tasks"][0]["outputData"]["op"] == "task1 completed"


async def test_workflow_with_lambda_task(conn: Connection, client: Client) -> None:
    # LambdaAndTerminateTaskSpec.groovy:265 "Test workflow with lambda task"
    async with conductor_server(conn, client) as conductor:
        await register_all(conductor)
        workflow_id = await conductor.start("test_lambda_wf", 1, "", {"a": 1})
        workflow = await conductor.settle(workflow_id, ended, what="the workflow to end")
        assert workflow["status"] == "COMPLETED"
        assert len(workflow["tasks"]) == 1
        task = workflow["tasks"][0]
        assert (task["taskType"], task["status"], task["seq"]) == ("LAMBDA", "COMPLETED", 1)
        # tasks[0].outputData as String == "[result:[testvalue:true]]"
        assert task["outputData"] == {"result": {"testvalue": True}}
