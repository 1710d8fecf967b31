"""SimpleWorkflowSpec (conductor-oss/conductor test-harness/.../integration/SimpleWorkflowSpec.groovy), ported:
each test cites the feature's line; the fixtures are the spec's, unchanged."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from partita.schemas.errors import WorkflowError
from partita.transport import Client, Connection

from ._simple_steps import reset_callbacks, settle_status, trail, workflow_def
from .conductor import EMAIL, FIXTURES, JSON, Conductor, conductor_server

WF = "integration_test_wf"


def _reported(workflow: JSON) -> bool:
    """integration_task_1's IN_PROGRESS report has been applied (its output is on the task)."""
    return workflow["tasks"][0]["outputData"].get("op") == "task1.in.progress"


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


async def test_simple_workflow_with_null_inputs(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:113 "Test simple workflow with null inputs"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        definition = await workflow_def(client, WF, 1)
        assert "someNullKey" in definition["tasks"][0]["inputParameters"]

        workflow_id = await conductor.start(WF, 1, "unit_test_1", {"param1": "p1 value", "param2": None})
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert workflow["input"]["param2"] is None
        assert trail(workflow) == [("integration_task_1", "SCHEDULED")]
        assert not workflow["tasks"][0]["inputData"]["someNullKey"]

        await conductor.complete("integration_task_1", {"someOtherKey": {"a": 1, "A": None}, "someKey": None})
        workflow = await conductor.settle_tasks(workflow_id, 2, status="RUNNING")
        assert trail(workflow)[0] == ("integration_task_1", "COMPLETED")
        output = workflow["tasks"][0]["outputData"]
        assert "someKey" in output
        assert not output["someKey"]
        assert "A" in output["someOtherKey"]
        assert not output["someOtherKey"]["A"]


async def test_simple_workflow_terminal_error_condition(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:162 "Test simple workflow terminal error condition"
    async with conductor_server(conn, client) as conductor:
        fixture = "simple_workflow_1_integration_test.json"
        await conductor.register_fixture(fixture)
        await conductor.update_task_def("integration_task_1", retryCount=1)
        output_parameters = dict((await workflow_def(client, WF, 1))["outputParameters"])
        output_parameters["validationErrors"] = "${t1.output.ErrorMessage}"
        await conductor.register_fixture(fixture, outputParameters=output_parameters)

        workflow_id = await conductor.start(WF, 1, "unit_test_1", {"param1": "p1 value", "param2": "p2 value"})
        await conductor.settle_tasks(workflow_id, 1, status="RUNNING")

        # restart of a RUNNING workflow: Conductor throws ConflictException
        with pytest.raises(WorkflowError):
            await client.restart(workflow_id, use_latest_definitions=False)

        polled = await conductor.poll_expect("integration_task_1")
        reason = "NON TRANSIENT ERROR OCCURRED: An integration point required to complete the task is down"
        output = {"TERMINAL_ERROR": "Integration endpoint down: FOOBAR", "ErrorMessage": "There was a terminal error"}
        await conductor.update(polled, "FAILED_WITH_TERMINAL_ERROR", output, reason=reason)
        assert polled.task.task_type == "integration_task_1"
        assert polled.task.workflow_instance_id == workflow_id

        workflow = await settle_status(conductor, workflow_id, "FAILED")
        (t1,) = [t for t in workflow["tasks"] if t["referenceTaskName"] == "t1"]
        assert (
            workflow["reasonForIncompletion"]
            == f"Task {t1['taskId']} failed with status: FAILED and reason: '{reason}'"
        )
        assert workflow["output"]["o1"] == "p1 value"
        assert workflow["output"]["validationErrors"] == "There was a terminal error"
        assert t1["retryCount"] == 0
        assert set(workflow["failedReferenceTaskNames"]) == {"t1"}
        assert set(workflow["failedTaskNames"]) == {"integration_task_1"}


async def test_simple_workflow_with_response_timeout(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:234 "Test Simple Workflow with response timeout "
    # task_rt has responseTimeoutSeconds=10 (WorkflowTestUtil.groovy): this test waits that long, as the spec does.
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        await conductor.register_fixture("simple_workflow_with_resp_time_out_integration_test.json")
        workflow_id = await conductor.start("RTOWF", 1, "unit_test_1", {"param1": "p1 value", "param2": "p2 value"})
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert trail(workflow) == [("task_rt", "SCHEDULED")]

        # queueDAO.getSize('task_rt') == 1, then the poll: the task is handed out and is IN_PROGRESS
        polled = await conductor.poll_expect("task_rt")
        assert polled.task.task_type == "task_rt"
        assert polled.task.workflow_instance_id == workflow_id
        await conductor.settle(workflow_id, lambda w: w["tasks"][0]["status"] == "IN_PROGRESS", what="IN_PROGRESS")
        assert await conductor.poll("task_rt", within=1.0) is None

        # past responseTimeoutSeconds (10 s) the task is TIMED_OUT and retried. Deliberate difference: Conductor's
        # sweeper times it out by itself; here JetStream redelivers it when the lease ends and the next worker to
        # poll reports the old attempt TIMED_OUT (the facade's poll, as the worker SDK), then gets the retry.
        retried = await conductor.poll_expect("task_rt", within=30)
        assert retried.task.task_id != polled.task.task_id
        workflow = await conductor.workflow(workflow_id)
        assert workflow["status"] == "RUNNING"
        assert workflow["tasks"][0]["status"] == "TIMED_OUT"
        assert len(workflow["tasks"]) == 2
        await conductor.update(retried, "IN_PROGRESS", callback_after_seconds=2)
        workflow = await conductor.settle(workflow_id, lambda w: w["tasks"][1]["callbackAfterSeconds"] == 2)
        assert workflow["status"] == "RUNNING"
        assert len(workflow["tasks"]) == 2

        # after the 2 s callback the task is delivered again
        again = await conductor.poll_expect("task_rt", within=15)
        await conductor.update(again, "COMPLETED", {"op": "task1.done"})
        await conductor.complete("integration_task_2")
        await settle_status(conductor, workflow_id, "COMPLETED")


async def test_workflow_definitions_with_and_without_schema_version(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:331 "Test if the workflow definitions with and without schema version can be registered"
    async with conductor_server(conn, client) as conductor:
        task = {"name": "integration_task_1", "taskReferenceName": "t1"}
        await conductor.register({"name": "Test_schema_version1", "version": 1, "ownerEmail": EMAIL, "tasks": [task]})
        await conductor.register(
            {"name": "Test_schema_version2", "version": 1, "schemaVersion": 2, "ownerEmail": EMAIL, "tasks": [task]}
        )
        found1 = await client.definitions.workflow_def("Test_schema_version1", 1)
        found2 = await client.definitions.workflow_def("Test_schema_version2", 1)
        assert found1 is not None
        assert found1.schema_version == 2
        assert found2 is not None
        assert found2.schema_version == 2


async def _fail_then_restart(conductor: Conductor, client: Client) -> tuple[str, JSON]:
    """The common first half of l.369 and l.446: integration_task_1 without retries, started, failed."""
    await conductor.register_fixture("simple_workflow_1_integration_test.json")
    await conductor.update_task_def("integration_task_1", retryCount=0)
    definition = await workflow_def(client, WF, 1)
    assert definition["failureWorkflow"].strip()

    workflow_id = await conductor.start(
        WF, 1, f"integration_test_1{uuid.uuid4()}", {"param1": "p1 value", "param2": "p2 value"}
    )
    await settle_status(conductor, workflow_id, "RUNNING")
    await conductor.fail("integration_task_1", "failed..")
    workflow = await settle_status(conductor, workflow_id, "FAILED")
    assert trail(workflow)[0] == ("integration_task_1", "FAILED")
    return workflow_id, definition


async def test_simple_workflow_restart_without_using_the_latest_definition(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:369 "Test Simple workflow restart without using the latest definition"
    async with conductor_server(conn, client) as conductor:
        workflow_id, _ = await _fail_then_restart(conductor, client)

        await client.restart(workflow_id, use_latest_definitions=False)
        await conductor.settle(workflow_id, lambda w: w["status"] == "RUNNING", what="RUNNING after restart")

        await conductor.complete("integration_task_1")
        workflow = await conductor.settle_tasks(workflow_id, 2, status="RUNNING")
        assert trail(workflow)[0] == ("integration_task_1", "COMPLETED")

        await conductor.complete("integration_task_2")
        workflow = await settle_status(conductor, workflow_id, "COMPLETED")
        assert trail(workflow)[1] == ("integration_task_2", "COMPLETED")


async def test_simple_workflow_restart_with_the_latest_definition(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:446 "Test Simple workflow restart with the latest definition"
    async with conductor_server(conn, client) as conductor:
        workflow_id, definition = await _fail_then_restart(conductor, client)

        added = {"name": "integration_task_20", "taskReferenceName": "task_added", "type": "SIMPLE"}
        await conductor.register({**definition, "version": 2, "tasks": [*definition["tasks"], added]})
        await client.restart(workflow_id, use_latest_definitions=True)
        await conductor.settle(workflow_id, lambda w: w["status"] == "RUNNING", what="RUNNING after restart")

        await conductor.complete("integration_task_1")
        workflow = await conductor.settle_tasks(workflow_id, 2, status="RUNNING")
        assert trail(workflow)[0] == ("integration_task_1", "COMPLETED")

        await conductor.complete("integration_task_2")
        await conductor.settle_tasks(workflow_id, 3, status="RUNNING")

        polled = await conductor.complete("integration_task_20")
        assert polled.task.workflow_instance_id == workflow_id
        assert polled.task.reference_task_name == "task_added"
        await settle_status(conductor, workflow_id, "COMPLETED", 3)


async def test_simple_workflow_with_task_retries(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:546 "Test simple workflow with task retries"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        await conductor.update_task_def("integration_task_2", retryCount=3, retryDelaySeconds=2)
        workflow_id = await conductor.start(WF, 1, "integration_test_1", {"param1": "p1 value", "param2": "p2 value"})
        await settle_status(conductor, workflow_id, "RUNNING")

        polled = await conductor.poll_expect("integration_task_1")
        assert polled.input_data["p1"] == "p1 value"
        assert polled.input_data["p2"] == "p2 value"
        op = f"task1.output -> {polled.input_data['p1']}.{polled.input_data['p2']}"
        await conductor.update(polled, "COMPLETED", {"op": op})

        for attempt in range(3):  # failed twice (each retry 2 s later), then completed
            polled = await conductor.poll_expect("integration_task_2", within=15)
            assert polled.input_data["tp2"] == op
            assert polled.input_data["tp1"] == "p1 value"
            if attempt < 2:
                await conductor.update(polled, "FAILED", reason="failure...0")
            else:
                await conductor.update(polled, "COMPLETED")

        workflow = await settle_status(conductor, workflow_id, "COMPLETED")
        tasks = workflow["tasks"]
        assert trail(workflow) == [
            ("integration_task_1", "COMPLETED"),
            ("integration_task_2", "FAILED"),
            ("integration_task_2", "FAILED"),
            ("integration_task_2", "COMPLETED"),
        ]
        assert tasks[1]["taskId"] == tasks[2]["retriedTaskId"]
        assert tasks[2]["taskId"] == tasks[3]["retriedTaskId"]
        assert set(workflow["failedReferenceTaskNames"]) == {"t2"}
        assert set(workflow["failedTaskNames"]) == {"integration_task_2"}


async def test_simple_workflow_with_retry_at_workflow_level(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:623 "Test simple workflow with retry at workflow level"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        await conductor.update_task_def("integration_task_1", retryCount=1, retryDelaySeconds=0)
        workflow_id = await conductor.start(
            WF, 1, f"retry_test{uuid.uuid4()}", {"param1": "p1 value", "param2": "p2 value"}
        )
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert workflow["tasks"][0]["status"] == "SCHEDULED"
        assert workflow["tasks"][0]["inputData"]["p3"] == workflow["tasks"][0]["taskId"]
        assert (await workflow_def(client, WF, 1))["failureWorkflow"].strip()

        await conductor.fail("integration_task_1", "failure...0")
        workflow = await conductor.settle_tasks(workflow_id, 2, status="RUNNING")
        assert [t["status"] for t in workflow["tasks"]] == ["FAILED", "SCHEDULED"]
        assert workflow["tasks"][1]["inputData"]["p3"] == workflow["tasks"][1]["taskId"]

        await conductor.fail("integration_task_1", "failure...0")
        workflow = await settle_status(conductor, workflow_id, "FAILED")
        assert [t["status"] for t in workflow["tasks"]] == ["FAILED", "FAILED"]

        await client.retry(workflow_id)
        workflow = await conductor.settle_tasks(workflow_id, 3, status="RUNNING")
        assert [t["status"] for t in workflow["tasks"]] == ["FAILED", "FAILED", "SCHEDULED"]
        assert workflow["tasks"][2]["inputData"]["p3"] == workflow["tasks"][2]["taskId"]

        await conductor.complete("integration_task_1")
        workflow = await conductor.settle_tasks(workflow_id, 4, status="RUNNING")
        assert workflow["tasks"][2]["status"] == "COMPLETED"
        assert workflow["tasks"][3]["status"] == "SCHEDULED"

        await conductor.complete("integration_task_2")
        workflow = await settle_status(conductor, workflow_id, "COMPLETED", 4)
        assert workflow["tasks"][2]["status"] == "COMPLETED"
        assert workflow["tasks"][3]["status"] == "COMPLETED"
        assert set(workflow["failedReferenceTaskNames"]) == {"t1"}
        assert set(workflow["failedTaskNames"]) == {"integration_task_1"}


async def test_long_running_simple_workflow(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:725 "Test Long running simple workflow"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        workflow_id = await conductor.start(WF, 1, "integration_test_1", {"param1": "p1 value", "param2": "p2 value"})
        await settle_status(conductor, workflow_id, "RUNNING")

        # queue size 1: the task is there to poll; sent back IN_PROGRESS with callbackAfterSeconds=5
        polled = await conductor.poll_expect("integration_task_1")
        assert polled.input_data["p1"] == "p1 value"
        assert "p2" in polled.input_data
        await conductor.update(polled, "IN_PROGRESS", {"op": "task1.in.progress"}, callback_after_seconds=5)
        await conductor.settle(workflow_id, _reported, what="the progress report")
        assert await conductor.poll("integration_task_1", within=1.0) is None

        # after the 5 s the task is there again (still queued: getTaskQueueSizes == 1)
        await conductor.complete("integration_task_1", {"op": "task1.done"})
        workflow = await conductor.settle_tasks(workflow_id, 2)
        assert trail(workflow)[0] == ("integration_task_1", "COMPLETED")
        assert workflow["tasks"][0]["outputData"]["op"] == "task1.done"

        polled = await conductor.poll_expect("integration_task_2")
        assert polled.input_data["tp2"] == "task1.done"
        assert polled.input_data["tp1"] == "p1 value"
        await conductor.update(polled, "COMPLETED")
        workflow = await settle_status(conductor, workflow_id, "COMPLETED", 2)
        assert trail(workflow) == [("integration_task_1", "COMPLETED"), ("integration_task_2", "COMPLETED")]


async def test_simple_workflow_when_the_tasks_call_back_after_seconds_are_reset(
    conn: Connection, client: Client
) -> None:
    # SimpleWorkflowSpec.groovy:802 "Test simple workflow when the task's call back after seconds are reset"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        workflow_id = await conductor.start(WF, 1, "integration_test_1", {"param1": "p1 value", "param2": "p2 value"})
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert workflow["tasks"][0]["status"] == "SCHEDULED"

        polled = await conductor.poll_expect("integration_task_1")
        assert polled.input_data["p1"] == "p1 value"
        assert "p2" in polled.input_data
        await conductor.update(polled, "IN_PROGRESS", {"op": "task1.in.progress"}, callback_after_seconds=3600)
        await conductor.settle(workflow_id, _reported, what="the progress report")
        assert await conductor.poll("integration_task_1", within=1.0) is None
        assert await conductor.poll("integration_task_1", within=0.5) is None

        await reset_callbacks(client, workflow_id)
        await conductor.complete("integration_task_1", {"op": "task1.done"})
        workflow = await conductor.settle_tasks(workflow_id, 2)
        assert trail(workflow)[0] == ("integration_task_1", "COMPLETED")
        assert workflow["tasks"][0]["outputData"]["op"] == "task1.done"

        polled = await conductor.poll_expect("integration_task_2")
        assert polled.input_data["tp2"] == "task1.done"
        assert polled.input_data["tp1"] == "p1 value"
        await conductor.update(polled, "COMPLETED")
        workflow = await settle_status(conductor, workflow_id, "COMPLETED", 2)
        assert trail(workflow) == [("integration_task_1", "COMPLETED"), ("integration_task_2", "COMPLETED")]


async def test_non_restartable_simple_workflow(conn: Connection, client: Client) -> None:
    # SimpleWorkflowSpec.groovy:890 "Test non restartable simple workflow"
    async with conductor_server(conn, client) as conductor:
        await conductor.update_task_def("integration_task_1", retryCount=0)
        name = "integration_test_wf_non_restartable"
        definition = msgspec.json.decode((FIXTURES / "simple_workflow_1_integration_test.json").read_bytes())
        await conductor.register({**definition, "name": name, "restartable": False})
        workflow_id = await conductor.start(name, 1, "integration_test_1", {"param1": "p1 value", "param2": "p2 value"})
        await conductor.fail("integration_task_1", "failure...0")
        workflow = await settle_status(conductor, workflow_id, "FAILED")
        assert trail(workflow)[0] == ("integration_task_1", "FAILED")

        # a FAILED non-restartable workflow may be restarted
        await client.restart(workflow_id, use_latest_definitions=False)
        await conductor.complete("integration_task_1", {"op": "task1.done"})
        workflow = await conductor.settle_tasks(workflow_id, 2, status="RUNNING")
        assert trail(workflow)[0] == ("integration_task_1", "COMPLETED")

        polled = await conductor.poll_expect("integration_task_2")
        assert polled.input_data["tp2"] == "task1.done"
        assert polled.input_data["tp1"] == "p1 value"
        await conductor.update(polled, "COMPLETED")
        workflow = await settle_status(conductor, workflow_id, "COMPLETED", 2)
        assert trail(workflow) == [("integration_task_1", "COMPLETED"), ("integration_task_2", "COMPLETED")]
        assert workflow["output"]["o3"] == "task1.done"

        # a COMPLETED non-restartable workflow may not: Conductor throws NotFoundException
        with pytest.raises(WorkflowError):
            await client.restart(workflow_id, use_latest_definitions=False)


async def test_simple_workflow_when_update_tasks_result_with_call_back_after_seconds(
    conn: Connection, client: Client
) -> None:
    # SimpleWorkflowSpec.groovy:970 "Test simple workflow when update task's result with call back after seconds"
    async with conductor_server(conn, client) as conductor:
        await conductor.register_fixture("simple_workflow_1_integration_test.json")
        workflow_id = await conductor.start(WF, 1, "integration_test_1", {"param1": "p1 value", "param2": "p2 value"})
        workflow = await conductor.settle_tasks(workflow_id, 1, status="RUNNING")
        assert workflow["tasks"][0]["status"] == "SCHEDULED"

        # sent back IN_PROGRESS with no callback: SCHEDULED again, in the queue at once
        polled = await conductor.poll_expect("integration_task_1")
        assert polled.input_data["p1"] == "p1 value"
        assert "p2" in polled.input_data
        await conductor.update(polled, "IN_PROGRESS", {"op": "task1.in.progress"})
        workflow = await conductor.settle(workflow_id, _reported, what="the report")
        assert workflow["status"] == "RUNNING"
        assert trail(workflow) == [("integration_task_1", "SCHEDULED")]
        assert workflow["tasks"][0]["callbackAfterSeconds"] == 0

        # polled again at once; sent back with callbackAfterSeconds=3600
        polled = await conductor.poll_expect("integration_task_1", within=5)
        await conductor.update(polled, "IN_PROGRESS", {"op": "task1.in.progress"}, callback_after_seconds=3600)
        workflow = await conductor.settle(
            workflow_id, lambda w: w["tasks"][0]["callbackAfterSeconds"] == 3600, what="the report"
        )
        assert workflow["status"] == "RUNNING"
        assert trail(workflow) == [("integration_task_1", "SCHEDULED")]
        assert workflow["tasks"][0]["callbackAfterSeconds"] == 3600

        assert await conductor.poll("integration_task_1", within=1.0) is None
