"""SubWorkflowSpec (conductor-oss/conductor test-harness/.../integration/SubWorkflowSpec.groovy), ported: each
test cites the feature's line; the fixtures are the spec's, unchanged. ``asyncSystemTaskExecutor.execute`` of the
SUB_WORKFLOW task and ``sweep`` have no counterpart (a node always decides): each step waits for the state the
spec asserts next."""

from __future__ import annotations

import msgspec

from partita.transport import Client, Connection

from ._subwf_steps import child_of, expect, retry
from .conductor import FIXTURES, Conductor, conductor_server

WF_WITH_SUB = "integration_test_wf_with_sub_wf"
SUB_WORKFLOW = "sub_workflow"
SIMPLE_WORKFLOW = "integration_test_wf"
SW = "SUB_WORKFLOW"


async def _setup(conductor: Conductor) -> None:
    # SubWorkflowSpec.groovy:44 setup()
    await conductor.register_fixture("simple_one_task_sub_workflow_integration_test.json")
    await conductor.register_fixture("simple_workflow_1_integration_test.json")
    await conductor.register_fixture("workflow_with_sub_workflow_1_integration_test.json")


def _input(subwf: str) -> dict[str, object]:
    return {"param1": "p1 value", "param2": "p2 value", "subwf": subwf}


async def test_retrying_a_subworkflow_where_parent_workflow_timed_out_due_to_workflow_timeout(
    conn: Connection, client: Client
) -> None:
    # SubWorkflowSpec.groovy:50 "Test retrying a subworkflow where parent workflow timed out due to workflowTimeout"
    async with conductor_server(conn, client) as conductor:
        await _setup(conductor)
        # l.53-62: a new WorkflowDef with name, version, tasks, inputParameters, outputParameters, ownerEmail of
        # the persisted one, timeoutPolicy TIME_OUT_WF and timeoutSeconds 10 (nothing else is copied).
        persisted = msgspec.json.decode((FIXTURES / "workflow_with_sub_workflow_1_integration_test.json").read_bytes())
        keep = ("name", "version", "tasks", "inputParameters", "outputParameters", "ownerEmail")
        modified = {key: persisted[key] for key in keep if key in persisted}
        modified.update(timeoutPolicy="TIME_OUT_WF", timeoutSeconds=10)
        await conductor.register(modified)

        workflow_id = await conductor.start(WF_WITH_SUB, 1, "wf_with_subwf_test_1", _input(SUB_WORKFLOW))
        await expect(conductor, workflow_id, "RUNNING", [("integration_task_1", "SCHEDULED")])

        await conductor.complete("integration_task_1", {"op": "task1.done"})
        await expect(conductor, workflow_id, "RUNNING", [("integration_task_1", "COMPLETED"), (SW, "IN_PROGRESS")])
        workflow = await conductor.workflow(workflow_id)
        sub_workflow_task_id = workflow["tasks"][1]["taskId"]
        sub_workflow_id = await child_of(conductor, workflow_id, 1)
        await expect(conductor, sub_workflow_id, "RUNNING", [("simple_task_in_sub_wf", "SCHEDULED")])

        # l.138: Thread.sleep(10000) then sweep: the workflow timeout (10 s) fires.
        await expect(
            conductor, workflow_id, "TIMED_OUT", [("integration_task_1", "COMPLETED"), (SW, "CANCELED")], within=30
        )
        await expect(conductor, sub_workflow_id, "TERMINATED", [("simple_task_in_sub_wf", "CANCELED")])

        # l.160: the subworkflow is retried.
        await retry(conductor, sub_workflow_id, False)
        await expect(
            conductor,
            sub_workflow_id,
            "RUNNING",
            [("simple_task_in_sub_wf", "CANCELED"), ("simple_task_in_sub_wf", "SCHEDULED")],
        )
        # l.173: the parent is resumed with the SUB_WORKFLOW task back IN_PROGRESS (updateAndPushParents).
        workflow = await expect(conductor, workflow_id, "RUNNING", within=20)
        assert len(workflow["tasks"]) == 2
        assert (workflow["tasks"][1]["taskType"], workflow["tasks"][1]["status"]) == (SW, "IN_PROGRESS")

        await conductor.complete("simple_task_in_sub_wf", {"op": "simple_task_in_sub_wf.done"})
        await expect(
            conductor,
            sub_workflow_id,
            "COMPLETED",
            [("simple_task_in_sub_wf", "CANCELED"), ("simple_task_in_sub_wf", "COMPLETED")],
        )
        workflow = await expect(
            conductor, workflow_id, "COMPLETED", [("integration_task_1", "COMPLETED"), (SW, "COMPLETED")]
        )
        assert workflow["tasks"][1]["taskId"] == sub_workflow_task_id  # l.199: the same task, COMPLETED
        assert not workflow["tasks"][1]["subworkflowChanged"]
        assert workflow["output"]["op"] == "simple_task_in_sub_wf.done"


async def test_terminating_a_subworkflow_terminates_parent_workflow(conn: Connection, client: Client) -> None:
    # SubWorkflowSpec.groovy:226 "Test terminating a subworkflow terminates parent workflow"
    async with conductor_server(conn, client) as conductor:
        await _setup(conductor)
        workflow_id = await conductor.start(WF_WITH_SUB, 1, "wf_with_subwf_test_1", _input(SUB_WORKFLOW))
        await expect(conductor, workflow_id, "RUNNING", [("integration_task_1", "SCHEDULED")])

        await conductor.complete("integration_task_1", {"op": "task1.done"})
        await expect(conductor, workflow_id, "RUNNING", [("integration_task_1", "COMPLETED"), (SW, "IN_PROGRESS")])
        sub_workflow_id = await child_of(conductor, workflow_id, 1)
        await expect(conductor, sub_workflow_id, "RUNNING", [("simple_task_in_sub_wf", "SCHEDULED")])

        terminate_reason = "terminating from a test case"
        await conductor.client.terminate(sub_workflow_id, terminate_reason)
        sub = await expect(conductor, sub_workflow_id, "TERMINATED", [("simple_task_in_sub_wf", "CANCELED")])
        assert sub["reasonForIncompletion"] == terminate_reason

        workflow = await expect(
            conductor, workflow_id, "TERMINATED", [("integration_task_1", "COMPLETED"), (SW, "CANCELED")]
        )
        assert workflow.get("reasonForIncompletion")
        assert terminate_reason in workflow["reasonForIncompletion"]


async def test_retrying_a_workflow_with_subworkflow_resume(conn: Connection, client: Client) -> None:
    # SubWorkflowSpec.groovy:310 "Test retrying a workflow with subworkflow resume"
    async with conductor_server(conn, client) as conductor:
        await _setup(conductor)
        await conductor.update_task_def("integration_task_2", retryCount=0)  # l.312-316
        workflow_id = await conductor.start(WF_WITH_SUB, 1, "wf_retry_with_subwf_resume_test", _input(SIMPLE_WORKFLOW))
        await expect(conductor, workflow_id, "RUNNING", [("integration_task_1", "SCHEDULED")])

        await conductor.complete("integration_task_1", {"op": "task1.done"})
        await expect(conductor, workflow_id, "RUNNING", [("integration_task_1", "COMPLETED"), (SW, "IN_PROGRESS")])
        sub_workflow_id = await child_of(conductor, workflow_id, 1)
        await expect(conductor, sub_workflow_id, "RUNNING", [("integration_task_1", "SCHEDULED")])

        await conductor.complete("integration_task_1", {"op": "task1.done"})
        await expect(
            conductor,
            sub_workflow_id,
            "RUNNING",
            [("integration_task_1", "COMPLETED"), ("integration_task_2", "SCHEDULED")],
        )
        await conductor.fail("integration_task_2", "failed")
        await expect(
            conductor,
            sub_workflow_id,
            "FAILED",
            [("integration_task_1", "COMPLETED"), ("integration_task_2", "FAILED")],
        )
        await expect(conductor, workflow_id, "FAILED", [("integration_task_1", "COMPLETED"), (SW, "FAILED")])

        # l.420: workflowExecutor.retry(workflowInstanceId, true): the child's failed task is retried in place.
        await retry(conductor, workflow_id, True)
        await expect(
            conductor,
            sub_workflow_id,
            "RUNNING",
            [
                ("integration_task_1", "COMPLETED"),
                ("integration_task_2", "FAILED"),
                ("integration_task_2", "SCHEDULED"),
            ],
        )
        await expect(conductor, workflow_id, "RUNNING", [("integration_task_1", "COMPLETED"), (SW, "IN_PROGRESS")])

        await conductor.complete("integration_task_2", {"op": "task2.done"})
        await expect(
            conductor,
            sub_workflow_id,
            "COMPLETED",
            [
                ("integration_task_1", "COMPLETED"),
                ("integration_task_2", "FAILED"),
                ("integration_task_2", "COMPLETED"),
            ],
        )
        workflow = await expect(
            conductor, workflow_id, "COMPLETED", [("integration_task_1", "COMPLETED"), (SW, "COMPLETED")]
        )
        assert not workflow["tasks"][1]["subworkflowChanged"]
