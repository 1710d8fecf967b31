"""DynamicForkJoinSpec (conductor-oss/conductor test-harness/.../integration/DynamicForkJoinSpec.groovy), ported: each
test cites the feature's line; the fixtures are the spec's, unchanged.

The spec's worker completes ``integration_task_1`` with Java ``WorkflowTask`` objects in ``dynamicTasks``; here they
are the JSON Jackson writes for them (``name``, ``taskReferenceName`` and the default ``type`` SIMPLE, or
SUB_WORKFLOW with its ``subWorkflowParam``). ``sweep`` and ``asyncSystemTaskExecutor.execute`` are replaced by
waiting for the state the spec asserts after them.
"""

from __future__ import annotations

import msgspec

from partita.schemas import WorkflowDef
from partita.transport import Client, Connection

from ._fork_steps import child_id, expect, task_by_ref
from .conductor import EMAIL, Conductor, conductor_server

DYNAMIC_FORK_JOIN_WF = "DynamicFanInOutTest"
S, IP, C, F, X = "SCHEDULED", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELED"

XDT1 = {"name": "integration_task_2", "taskReferenceName": "xdt1", "type": "SIMPLE"}
XDT2 = {"name": "integration_task_3", "taskReferenceName": "xdt2", "type": "SIMPLE"}
DYNAMIC_TASKS_INPUT = {"xdt1": {"k1": "v1"}, "xdt2": {"k2": "v2"}}
FORKED = {
    0: ("integration_task_1", C), 1: ("FORK", C), 2: ("integration_task_2", S), 3: ("integration_task_3", S),
    4: ("JOIN", IP),
}  # fmt: skip


async def setup(conductor: Conductor) -> None:
    # DynamicForkJoinSpec.groovy:42 setup()
    await conductor.register_fixture("dynamic_fork_join_integration_test.json")
    await conductor.register_fixture("simple_workflow_3_integration_test.json")


async def start_and_fork(conductor: Conductor, dynamic_tasks_input: dict) -> str:
    """Start the workflow, check its first task, complete it with two dynamic tasks and their input."""
    wid = await conductor.start(DYNAMIC_FORK_JOIN_WF, 1, "dynamic_fork_join_workflow", {})
    await expect(conductor, wid, "RUNNING", 1, [("integration_task_1", S)])
    await conductor.complete(
        "integration_task_1", {"dynamicTasks": [XDT1, XDT2], "dynamicTasksInput": dynamic_tasks_input}
    )
    return wid


def assert_input(polled_input: dict, expected: dict) -> None:
    # WorkflowTestUtil.verifyPolledAndAcknowledgedTask(task, expectedTaskInputParams)
    for key, value in expected.items():
        assert key in polled_input, (key, polled_input)
        assert polled_input[key] == value, (key, polled_input)


async def test_dynamic_fork_join_success_flow(conn: Connection, client: Client) -> None:
    # DynamicForkJoinSpec.groovy:47 "Test dynamic fork join success flow"
    async with conductor_server(conn, client) as conductor:
        await setup(conductor)
        wid = await start_and_fork(conductor, DYNAMIC_TASKS_INPUT)
        workflow = await expect(conductor, wid, "RUNNING", 5, FORKED)
        assert workflow["tasks"][4]["referenceTaskName"] == "dynamicfanouttask_join"

        assert_input((await conductor.complete("integration_task_2", {"ok1": "ov1"})).input_data, {"k1": "v1"})
        assert_input((await conductor.complete("integration_task_3", {"ok1": "ov1"})).input_data, {"k2": "v2"})
        workflow = await expect(
            conductor, wid, "RUNNING", 6,
            {2: ("integration_task_2", C), 3: ("integration_task_3", C), 4: ("JOIN", C), 5: ("integration_task_4", S)},
        )  # fmt: skip
        join = workflow["tasks"][4]
        assert join["referenceTaskName"] == "dynamicfanouttask_join"
        assert join["inputData"].get("joinOn") == ["xdt1", "xdt2"]
        assert join["outputData"]["xdt1"]["ok1"] == "ov1"
        assert join["outputData"]["xdt2"]["ok1"] == "ov1"

        await conductor.complete("integration_task_4")
        await expect(conductor, wid, "COMPLETED", 6, {5: ("integration_task_4", C)})


async def test_dynamic_fork_join_failure_of_dynamic_forked_task_flow(conn: Connection, client: Client) -> None:
    # DynamicForkJoinSpec.groovy:147 "Test dynamic fork join failure of dynamic forked task flow"
    async with conductor_server(conn, client) as conductor:
        await setup(conductor)
        await conductor.update_task_def("integration_task_2", retryCount=0)
        wid = await start_and_fork(conductor, DYNAMIC_TASKS_INPUT)
        await expect(conductor, wid, "RUNNING", 5, FORKED)

        polled = await conductor.fail("integration_task_2", "it is a failure..")
        assert_input(polled.input_data, {"k1": "v1"})
        workflow = await expect(
            conductor, wid, "FAILED", 5, {2: ("integration_task_2", F), 3: ("integration_task_3", X), 4: ("JOIN", X)}
        )
        join = workflow["tasks"][4]
        assert join["referenceTaskName"] == "dynamicfanouttask_join"
        assert join["inputData"].get("joinOn") == ["xdt1", "xdt2"]


async def test_retry_a_failed_dynamic_fork_join_workflow(conn: Connection, client: Client) -> None:
    # DynamicForkJoinSpec.groovy:231 "Retry a failed dynamic fork join workflow"
    async with conductor_server(conn, client) as conductor:
        await setup(conductor)
        await conductor.update_task_def("integration_task_2", retryCount=0)
        wid = await start_and_fork(conductor, DYNAMIC_TASKS_INPUT)
        await expect(conductor, wid, "RUNNING", 5, FORKED)
        join_id = task_by_ref(await conductor.workflow(wid), "dynamicfanouttask_join")["taskId"]

        assert_input((await conductor.fail("integration_task_2", "it is a failure..")).input_data, {"k1": "v1"})
        workflow = await expect(
            conductor, wid, "FAILED", 5, {2: ("integration_task_2", F), 3: ("integration_task_3", X), 4: ("JOIN", X)}
        )
        assert workflow["tasks"][4]["inputData"].get("joinOn") == ["xdt1", "xdt2"]

        await conductor.client.retry(wid)
        workflow = await expect(
            conductor, wid, "RUNNING", 7,
            {2: ("integration_task_2", F), 3: ("integration_task_3", X), 4: ("JOIN", IP), 5: ("integration_task_2", S),
             6: ("integration_task_3", S)},
        )  # fmt: skip
        join = workflow["tasks"][4]
        assert (join["referenceTaskName"], join["taskId"]) == ("dynamicfanouttask_join", join_id)
        assert join["inputData"].get("joinOn") == ["xdt1", "xdt2"]

        assert_input((await conductor.complete("integration_task_2", {"ok1": "ov1"})).input_data, {"k1": "v1"})
        assert_input((await conductor.complete("integration_task_3", {"ok1": "ov1"})).input_data, {"k2": "v2"})
        workflow = await expect(
            conductor, wid, "RUNNING", 8,
            {4: ("JOIN", C), 5: ("integration_task_2", C), 6: ("integration_task_3", C), 7: ("integration_task_4", S)},
        )  # fmt: skip
        join = workflow["tasks"][4]
        assert join["inputData"].get("joinOn") == ["xdt1", "xdt2"]
        assert join["outputData"]["xdt1"]["ok1"] == "ov1"
        assert join["outputData"]["xdt2"]["ok1"] == "ov1"

        await conductor.complete("integration_task_4")
        await expect(conductor, wid, "COMPLETED", 8, {7: ("integration_task_4", C)})


async def test_retry_a_failed_dynamic_fork_join_workflow_with_forked_subworkflow(
    conn: Connection, client: Client
) -> None:
    # DynamicForkJoinSpec.groovy:384 "Retry a failed dynamic fork join workflow with forked subworkflow"
    async with conductor_server(conn, client) as conductor:
        await setup(conductor)
        await conductor.update_task_def("integration_task_2", retryCount=0)
        wid = await conductor.start(DYNAMIC_FORK_JOIN_WF, 1, "dynamic_fork_join_wf_subwf", {})
        await expect(conductor, wid, "RUNNING", 1, [("integration_task_1", S)])

        sub_wf_task = {
            "name": "sub_wf_task", "taskReferenceName": "xdt1", "type": "SUB_WORKFLOW",
            "subWorkflowParam": {"name": "integration_test_wf3", "version": 1},
        }  # fmt: skip
        task10 = {"name": "integration_task_10", "taskReferenceName": "xdt10", "type": "SIMPLE"}
        dynamic_input = {"xdt1": {"p1": "q1", "p2": "q2"}, "xdt10": {"k2": "v2"}}
        await conductor.complete(
            "integration_task_1", {"dynamicTasks": [sub_wf_task, task10], "dynamicTasksInput": dynamic_input}
        )
        running = {0: ("integration_task_1", C), 1: ("FORK", C), 2: ("SUB_WORKFLOW", IP), 3: ("integration_task_10", S),
                   4: ("JOIN", IP)}  # fmt: skip
        workflow = await expect(conductor, wid, "RUNNING", 5, running)
        assert workflow["tasks"][4]["referenceTaskName"] == "dynamicfanouttask_join"

        sub_id = await child_id(conductor, wid, "xdt1")
        await expect(conductor, sub_id, "RUNNING", 1, [("integration_task_1", S)])

        await conductor.complete("integration_task_10")
        await expect(conductor, wid, "RUNNING", 5, {**running, 3: ("integration_task_10", C)})

        await conductor.complete("integration_task_1")
        await expect(conductor, sub_id, "RUNNING", 2, [("integration_task_1", C), ("integration_task_2", S)])

        await conductor.fail("integration_task_2", "failure")
        await expect(conductor, sub_id, "FAILED", 2, [("integration_task_1", C), ("integration_task_2", F)])
        await expect(
            conductor, wid, "FAILED", 5,
            [("integration_task_1", C), ("FORK", C), ("SUB_WORKFLOW", F), ("integration_task_10", C), ("JOIN", X)],
        )  # fmt: skip

        # workflowExecutor.retry(id, resumeSubworkflowTasks=true): Conductor retries the failed child in place and
        # reopens the same SUB_WORKFLOW task (5 parent tasks, the child RUNNING with a new attempt of its task).
        # Partita's Client.retry has no resumeSubworkflowTasks: the plain retry is the nearest call.
        await conductor.client.retry(wid)
        after_retry = [("integration_task_1", C), ("FORK", C), ("SUB_WORKFLOW", IP), ("integration_task_10", C),
                       ("JOIN", IP)]  # fmt: skip
        await expect(conductor, wid, "RUNNING", 5, after_retry)
        await expect(
            conductor, sub_id, "RUNNING", 3,
            [("integration_task_1", C), ("integration_task_2", F), ("integration_task_2", S)],
        )  # fmt: skip
        workflow = await expect(conductor, wid, "RUNNING", 5, after_retry)
        assert not workflow["tasks"][2]["subworkflowChanged"]

        await conductor.complete("integration_task_2")
        await expect(
            conductor, sub_id, "RUNNING", 4,
            [("integration_task_1", C), ("integration_task_2", F), ("integration_task_2", C),
             ("integration_task_3", S)],
        )  # fmt: skip
        await conductor.complete("integration_task_3")
        await expect(
            conductor, sub_id, "COMPLETED", 4,
            [("integration_task_1", C), ("integration_task_2", F), ("integration_task_2", C),
             ("integration_task_3", C)],
        )  # fmt: skip

        done = [("integration_task_1", C), ("FORK", C), ("SUB_WORKFLOW", C), ("integration_task_10", C), ("JOIN", C)]
        workflow = await expect(conductor, wid, "RUNNING", 6, [*done, ("integration_task_4", S)])
        assert not workflow["tasks"][2]["subworkflowChanged"]
        assert workflow["tasks"][4]["referenceTaskName"] == "dynamicfanouttask_join"

        await conductor.complete("integration_task_4")
        workflow = await expect(conductor, wid, "COMPLETED", 6, [*done, ("integration_task_4", C)])
        assert not workflow["tasks"][2]["subworkflowChanged"]


async def test_dynamic_fork_join_empty_output(conn: Connection, client: Client) -> None:
    # DynamicForkJoinSpec.groovy:705 "Test dynamic fork join empty output"
    async with conductor_server(conn, client) as conductor:
        await setup(conductor)
        wid = await start_and_fork(conductor, DYNAMIC_TASKS_INPUT)
        await expect(conductor, wid, "RUNNING", 5, FORKED)

        assert_input((await conductor.complete("integration_task_2")).input_data, {"k1": "v1"})
        assert_input((await conductor.complete("integration_task_3")).input_data, {"k2": "v2"})
        workflow = await expect(
            conductor, wid, "RUNNING", 6,
            {2: ("integration_task_2", C), 3: ("integration_task_3", C), 4: ("JOIN", C), 5: ("integration_task_4", S)},
        )  # fmt: skip
        join = workflow["tasks"][4]
        assert join["referenceTaskName"] == "dynamicfanouttask_join"
        assert join["inputData"].get("joinOn") == ["xdt1", "xdt2"]
        assert join["outputData"] == {}

        await conductor.complete("integration_task_4")
        await expect(conductor, wid, "COMPLETED", 6, {5: ("integration_task_4", C)})


async def test_dynamic_fork_join_fail_when_task_input_is_invalid(conn: Connection, client: Client) -> None:
    # DynamicForkJoinSpec.groovy:801 "Test dynamic fork join fail when task input is invalid"
    async with conductor_server(conn, client) as conductor:
        await setup(conductor)
        wid = await start_and_fork(conductor, {"xdt1": "v1", "xdt2": "v2"})
        await expect(conductor, wid, "FAILED", 1, [("integration_task_1", C)])


async def test_dynamic_fork_join_return_failed_workflow_when_start_with_invalid_input(
    conn: Connection, client: Client
) -> None:
    # DynamicForkJoinSpec.groovy:842 "Test dynamic fork join return failed workflow when start with invalid input"
    async with conductor_server(conn, client) as conductor:
        definition = msgspec.convert(
            {
                "name": "DynamicForkJoinStartTest", "version": 1, "ownerEmail": EMAIL,
                "tasks": [{
                    "name": "dynamicfanouttask", "taskReferenceName": "dynamicfanouttask", "type": "FORK_JOIN_DYNAMIC",
                    "inputParameters": {"dynamicTasks": "${workflow.input.dynamicTasks}",
                                        "dynamicTasksInput": "${workflow.input.dynamicTasksInput}"},
                    "dynamicForkTasksParam": "dynamicTasks", "dynamicForkTasksInputParamName": "dynamicTasksInput",
                }],
            },
            WorkflowDef,
        )  # fmt: skip
        workflow_input = {"dynamicTasks": [XDT1, XDT2], "dynamicTasksInput": {"xdt1": "v1", "xdt2": "v2"}}
        wid = await conductor.start(definition.name, 1, None, workflow_input, workflow_def=definition)
        workflow = await conductor.settle(wid, lambda w: w["status"] != "RUNNING", what="the workflow to end")
        assert (workflow["status"], workflow["tasks"]) == ("FAILED", [])
