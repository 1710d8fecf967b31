"""DoWhileSpec (conductor-oss/conductor test-harness/.../integration/DoWhileSpec.groovy), ported: each test
cites the feature's line; the fixtures are the spec's, unchanged. ``asyncSystemTaskExecutor.execute(joinTask)``
and ``sweep`` have no counterpart (a node always decides): the step waits for the state the spec asserts."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._loops_steps import by_ref, expect, verify_iteration
from .conductor import Conductor, conductor_server

FIXTURES = (
    "do_while_integration_test.json",
    "do_while_multiple_integration_test.json",
    "do_while_as_subtask_integration_test.json",
    "simple_one_task_sub_workflow_integration_test.json",
    "do_while_iteration_fix_test.json",
    "do_while_sub_workflow_integration_test.json",
    "do_while_five_loop_over_integration_test.json",
    "do_while_system_tasks.json",
    "do_while_with_decision_task.json",
    "do_while_set_variable_fix.json",
    "do_while_high_iteration_test.json",
)

C, S, IP, F, X = "COMPLETED", "SCHEDULED", "IN_PROGRESS", "FAILED", "CANCELED"
R = "RUNNING"


async def register(conductor: Conductor, *names: str) -> None:
    """DoWhileSpec.groovy:37 setup() registers all of FIXTURES before each feature; here each feature registers
    the ones it runs, so that a fixture Partita rejects fails only the features that use it."""
    for name in names:
        assert name in FIXTURES
        await conductor.register_fixture(name)


async def test_workflow_with_2_iterations_of_five_tasks(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:51 "Test workflow with 2 iterations of five tasks"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_five_loop_over_integration_test.json")
        wid = await conductor.start("do_while_five_loop_over_integration_test", 1, "looptest", {"loop": 2})
        await expect(conductor, wid, R, [
            ("DO_WHILE", IP), ("LAMBDA", C, 1), ("JSON_JQ_TRANSFORM", C, 1), ("integration_task_1", S, 1),
        ])  # fmt: skip

        polled = await conductor.complete("integration_task_1")
        await verify_iteration(conductor, polled, 1)
        await expect(conductor, wid, R, [
            ("DO_WHILE", IP), ("LAMBDA", C), ("JSON_JQ_TRANSFORM", C), ("integration_task_1", C),
            ("JSON_JQ_TRANSFORM", C), ("integration_task_2", S),
        ])  # fmt: skip

        polled = await conductor.complete("integration_task_2")
        await verify_iteration(conductor, polled, 1)
        await expect(conductor, wid, R, [
            ("DO_WHILE", IP), ("LAMBDA", C), ("JSON_JQ_TRANSFORM", C), ("integration_task_1", C),
            ("JSON_JQ_TRANSFORM", C), ("integration_task_2", C),
            ("LAMBDA", C, 2), ("JSON_JQ_TRANSFORM", C, 2), ("integration_task_1", S, 2),
        ])  # fmt: skip

        polled = await conductor.complete("integration_task_1")
        await verify_iteration(conductor, polled, 2)
        polled = await conductor.complete("integration_task_2")
        await verify_iteration(conductor, polled, 2)
        await expect(conductor, wid, R, [
            ("DO_WHILE", C), ("LAMBDA", C), ("JSON_JQ_TRANSFORM", C), ("integration_task_1", C),
            ("JSON_JQ_TRANSFORM", C), ("integration_task_2", C),
            ("LAMBDA", C, 2), ("JSON_JQ_TRANSFORM", C, 2), ("integration_task_1", C, 2),
            ("JSON_JQ_TRANSFORM", C, 2), ("integration_task_2", C, 2),
            ("integration_task_3", S, 0),  # outside the DO_WHILE
        ])  # fmt: skip

        await conductor.complete("integration_task_3")
        workflow = await conductor.settle(wid, lambda w: w["status"] == "COMPLETED")
        assert len(workflow["tasks"]) == 12
        last = workflow["tasks"][11]
        assert (last["taskType"], last["status"], last["iteration"]) == ("integration_task_3", C, 0)


async def test_workflow_with_2_iterations_of_3_system_tasks(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:193 "Test workflow with 2 iterations of 3 system tasks"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_system_tasks.json")
        wid = await conductor.start("do_while_system_tasks", 1, "looptest", {"loop": 2})
        await expect(conductor, wid, R, [
            ("DO_WHILE", C), ("LAMBDA", C, 1), ("JSON_JQ_TRANSFORM", C, 1), ("JSON_JQ_TRANSFORM", C, 1),
            ("LAMBDA", C, 2), ("JSON_JQ_TRANSFORM", C, 2), ("JSON_JQ_TRANSFORM", C, 2),
            ("integration_task_1", S, 0),  # outside the loop
        ])  # fmt: skip

        await conductor.complete("integration_task_1")
        workflow = await conductor.settle(wid, lambda w: w["status"] == "COMPLETED")
        assert len(workflow["tasks"]) == 8
        last = workflow["tasks"][7]
        assert (last["taskType"], last["status"], last["iteration"]) == ("integration_task_1", C, 0)


async def _single_iteration_until_join(conductor: Conductor, wid: str) -> None:
    """The steps DoWhileSpec.groovy:252-307 and :344-399 share: task 0, then the fork's two branches."""
    await expect(conductor, wid, R, [("DO_WHILE", IP), ("integration_task_0", S)])
    polled = await conductor.complete("integration_task_0")
    await verify_iteration(conductor, polled, 1)
    await expect(conductor, wid, R, [
        ("DO_WHILE", IP), ("integration_task_0", C), ("FORK", C), ("integration_task_1", S),
        ("integration_task_2", S), ("JOIN", IP),
    ])  # fmt: skip
    by_ref(await conductor.workflow(wid), "join__1")
    polled = await conductor.complete("integration_task_1")
    await verify_iteration(conductor, polled, 1)
    await expect(conductor, wid, R, [
        ("DO_WHILE", IP), ("integration_task_0", C), ("FORK", C), ("integration_task_1", C),
        ("integration_task_2", S), ("JOIN", IP),
    ])  # fmt: skip
    polled = await conductor.complete("integration_task_2")
    await verify_iteration(conductor, polled, 1)


async def test_workflow_with_a_single_iteration_do_while_task(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:244 "Test workflow with a single iteration Do While task"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_integration_test.json")
        wid = await conductor.start("Do_While_Workflow", 1, "looptest", {"loop": 1})
        await _single_iteration_until_join(conductor, wid)
        await expect(conductor, wid, "COMPLETED", [
            ("DO_WHILE", C), ("integration_task_0", C), ("FORK", C), ("integration_task_1", C),
            ("integration_task_2", C), ("JOIN", C),
        ])  # fmt: skip


async def test_workflow_with_a_single_iteration_do_while_task_with_sub_workflow(
    conn: Connection, client: Client
) -> None:
    # DoWhileSpec.groovy:336 "Test workflow with a single iteration Do While task with Sub workflow"
    async with conductor_server(conn, client) as conductor:
        await register(
            conductor,
            "do_while_sub_workflow_integration_test.json",
            "simple_one_task_sub_workflow_integration_test.json",
        )
        wid = await conductor.start("Do_While_Sub_Workflow", 1, "looptest", {"loop": 1})
        await _single_iteration_until_join(conductor, wid)
        head = [
            ("DO_WHILE", IP), ("integration_task_0", C), ("FORK", C), ("integration_task_1", C),
            ("integration_task_2", C), ("JOIN", C),
        ]  # fmt: skip
        workflow = await expect(conductor, wid, R, [*head, ("SUB_WORKFLOW", IP)])

        sub_id = by_ref(workflow, "st1__1")["subWorkflowId"]
        assert sub_id
        await expect(conductor, sub_id, R, [("simple_task_in_sub_wf", S)])
        await conductor.complete("simple_task_in_sub_wf")
        await expect(conductor, sub_id, "COMPLETED", [("simple_task_in_sub_wf", C)])

        await expect(conductor, wid, "COMPLETED", [("DO_WHILE", C), *head[1:], ("SUB_WORKFLOW", C)])


async def test_workflow_with_multiple_do_while_tasks_with_multiple_iterations(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:507 "Test workflow with multiple Do While tasks with multiple iterations"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_multiple_integration_test.json")
        wid = await conductor.start("Do_While_Multiple", 1, "looptest", {"loop": 2, "loop2": 1})
        await _single_iteration_until_join(conductor, wid)
        first = [
            ("integration_task_0", C), ("FORK", C), ("integration_task_1", C), ("integration_task_2", C),
            ("JOIN", C),
        ]  # fmt: skip
        await expect(conductor, wid, R, [("DO_WHILE", IP), *first, ("integration_task_0", S)])

        polled = await conductor.complete("integration_task_0")
        await verify_iteration(conductor, polled, 2)
        await expect(conductor, wid, R, [
            ("DO_WHILE", IP), *first, ("integration_task_0", C), ("FORK", C), ("integration_task_1", S),
            ("integration_task_2", S), ("JOIN", IP),
        ])  # fmt: skip
        by_ref(await conductor.workflow(wid), "join__2")

        polled = await conductor.complete("integration_task_1")
        await verify_iteration(conductor, polled, 2)
        await expect(conductor, wid, R, [
            ("DO_WHILE", IP), *first, ("integration_task_0", C), ("FORK", C), ("integration_task_1", C),
            ("integration_task_2", S), ("JOIN", IP),
        ])  # fmt: skip

        polled = await conductor.complete("integration_task_2")
        await verify_iteration(conductor, polled, 2)
        await expect(conductor, wid, R, [
            ("DO_WHILE", C), *first, *first, ("DO_WHILE", IP), ("integration_task_3", S),
        ])  # fmt: skip

        polled = await conductor.complete("integration_task_3")
        await verify_iteration(conductor, polled, 1)
        await expect(conductor, wid, "COMPLETED", [
            ("DO_WHILE", C), *first, *first, ("DO_WHILE", C), ("integration_task_3", C),
        ])  # fmt: skip


async def test_retrying_a_failed_do_while_workflow(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:746 "Test retrying a failed do while workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_integration_test.json")
        await conductor.update_task_def("integration_task_0", retryCount=0)
        wid = await conductor.start("Do_While_Workflow", 1, "looptest", {"loop": 1})
        await expect(conductor, wid, R, [("DO_WHILE", IP), ("integration_task_0", S)])

        polled = await conductor.fail("integration_task_0", "induced..failure")
        await verify_iteration(conductor, polled, 1)
        await expect(conductor, wid, "FAILED", [("DO_WHILE", X), ("integration_task_0", F)])

        await conductor.client.retry(wid)
        await expect(conductor, wid, R, [("DO_WHILE", IP), ("integration_task_0", F), ("integration_task_0", S)])
        await _after_retried_task_0(conductor, wid)


async def _after_retried_task_0(conductor: Conductor, wid: str) -> None:
    """DoWhileSpec.groovy:800-877 (and :928-1005): the loop's single iteration after a retried task 0."""
    polled = await conductor.complete("integration_task_0")
    await verify_iteration(conductor, polled, 1)
    head = [("integration_task_0", F), ("integration_task_0", C), ("FORK", C)]
    await expect(conductor, wid, R, [
        ("DO_WHILE", IP), *head, ("integration_task_1", S), ("integration_task_2", S), ("JOIN", IP),
    ])  # fmt: skip
    by_ref(await conductor.workflow(wid), "join__1")

    polled = await conductor.complete("integration_task_1")
    await verify_iteration(conductor, polled, 1)
    await expect(conductor, wid, R, [
        ("DO_WHILE", IP), *head, ("integration_task_1", C), ("integration_task_2", S), ("JOIN", IP),
    ])  # fmt: skip

    polled = await conductor.complete("integration_task_2")
    await verify_iteration(conductor, polled, 1)
    await expect(conductor, wid, "COMPLETED", [
        ("DO_WHILE", C), *head, ("integration_task_1", C), ("integration_task_2", C), ("JOIN", C),
    ])  # fmt: skip


async def test_auto_retrying_a_failed_do_while_workflow(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:883 "Test auto retrying a failed do while workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_integration_test.json")
        await conductor.update_task_def("integration_task_0", retryCount=1, retryDelaySeconds=0)
        wid = await conductor.start("Do_While_Workflow", 1, "looptest", {"loop": 1})
        await expect(conductor, wid, R, [("DO_WHILE", IP), ("integration_task_0", S)])

        polled = await conductor.fail("integration_task_0", "induced..failure")
        await verify_iteration(conductor, polled, 1)
        workflow = await expect(
            conductor, wid, R, [("DO_WHILE", IP), ("integration_task_0", F), ("integration_task_0", S)]
        )
        failed, retried = workflow["tasks"][1], workflow["tasks"][2]
        assert failed["retried"] is True
        assert retried["retryCount"] == 1
        assert retried["retriedTaskId"] == failed["taskId"]
        await _after_retried_task_0(conductor, wid)


async def test_workflow_with_a_iteration_do_while_task_as_subtask_of_a_forkjoin_task(
    conn: Connection, client: Client
) -> None:
    # DoWhileSpec.groovy:1011 "Test workflow with a iteration Do While task as subtask of a forkjoin task"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_as_subtask_integration_test.json")
        wid = await conductor.start("Do_While_SubTask", 1, "looptest", {"loop": 1})
        await expect(conductor, wid, R, [
            ("FORK", C), ("DO_WHILE", IP), ("integration_task_2", S), ("JOIN", IP), ("integration_task_0", S),
        ])  # fmt: skip
        by_ref(await conductor.workflow(wid), "join")

        polled = await conductor.complete("integration_task_0")
        await verify_iteration(conductor, polled, 1)
        await expect(conductor, wid, R, [
            ("FORK", C), ("DO_WHILE", IP), ("integration_task_2", S), ("JOIN", IP), ("integration_task_0", C),
            ("integration_task_1", S),
        ])  # fmt: skip

        polled = await conductor.complete("integration_task_1")
        await verify_iteration(conductor, polled, 1)
        await expect(conductor, wid, R, [
            ("FORK", C), ("DO_WHILE", C), ("integration_task_2", S), ("JOIN", IP), ("integration_task_0", C),
            ("integration_task_1", C),
        ])  # fmt: skip

        await conductor.complete("integration_task_2")
        await expect(conductor, wid, "COMPLETED", [
            ("FORK", C), ("DO_WHILE", C), ("integration_task_2", C), ("JOIN", C), ("integration_task_0", C),
            ("integration_task_1", C),
        ])  # fmt: skip


async def test_do_while_task_contains_loop_over_task_that_use_iteration_in_script_expression(
    conn: Connection, client: Client
) -> None:
    # DoWhileSpec.groovy:1111 "Test workflow with Do While task contains loop over task that use iteration in
    # script expression"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_iteration_fix_test.json")
        wid = await conductor.start("Do_While_Workflow_Iteration_Fix", 1, "looptest", {"loop": 2})
        workflow = await expect(conductor, wid, "COMPLETED", [("DO_WHILE", C), ("LAMBDA", C), ("LAMBDA", C)])
        assert workflow["tasks"][1]["outputData"].get("result") == 0
        assert workflow["tasks"][2]["outputData"].get("result") == 1


async def test_do_while_task_contains_set_variable_task(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:1134 "Test workflow with Do While task contains set variable task"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_set_variable_fix.json")
        wid = await conductor.start("do_while_Set_variable_fix", 1, "looptest", {"value": 2})
        workflow = await expect(conductor, wid, "COMPLETED", [("DO_WHILE", C), ("SET_VARIABLE", C)])
        assert workflow["tasks"][1]["inputData"].get("value") == "0"


async def test_do_while_task_contains_decision_task(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:1154 "Test workflow with Do While task contains decision task"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_with_decision_task.json")
        wid = await conductor.start("DO_While_with_Decision_task", 1, "looptest", {"list": [1, 2]})
        await expect(conductor, wid, R, [("DO_WHILE", IP), ("INLINE", C), ("SWITCH", C), ("WAIT", IP)])

        # workflowExecutor.updateTask(new TaskResult(waitTask)) with status COMPLETED
        await conductor.client.update_task(wid, "WaitTask__1", "COMPLETED")
        first = [("INLINE", C), ("SWITCH", C), ("WAIT", C), ("INLINE", C)]
        await expect(conductor, wid, R, [("DO_WHILE", IP, 2), *first, ("INLINE", C), ("SWITCH", C), ("WAIT", IP)])

        await conductor.client.update_task(wid, "WaitTask__2", "COMPLETED")
        await expect(conductor, wid, "COMPLETED", [("DO_WHILE", C, 2), *first, *first])


async def test_do_while_with_500_lambda_iterations_completes_without_stack_overflow(
    conn: Connection, client: Client
) -> None:
    # DoWhileSpec.groovy:1249 "Test DO_WHILE with 500 LAMBDA iterations completes without StackOverflowError"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_high_iteration_test.json")
        wid = await conductor.start("do_while_high_iteration_test", 1, "overflow-regression", {"loop": 500})
        workflow = await conductor.settle(wid, lambda w: w["status"] != "RUNNING", within=30)
        assert workflow["status"] == "COMPLETED", workflow.get("reasonForIncompletion")
        tasks = workflow["tasks"]
        assert len(tasks) == 501  # 1 DO_WHILE + 500 LAMBDA
        assert (tasks[0]["taskType"], tasks[0]["status"], tasks[0]["iteration"]) == ("DO_WHILE", C, 500)
        assert (tasks[1]["taskType"], tasks[1]["status"], tasks[1]["iteration"]) == ("LAMBDA", C, 1)
        assert (tasks[500]["taskType"], tasks[500]["status"], tasks[500]["iteration"]) == ("LAMBDA", C, 500)


async def test_do_while_iteration_counter_is_correct_at_500_iterations(conn: Connection, client: Client) -> None:
    # DoWhileSpec.groovy:1284 "Test DO_WHILE iteration counter is correct at 500 iterations (issue #799)"
    async with conductor_server(conn, client) as conductor:
        await register(conductor, "do_while_iteration_fix_test.json")
        wid = await conductor.start("Do_While_Workflow_Iteration_Fix", 1, "iteration-count-regression", {"loop": 500})
        workflow = await conductor.settle(wid, lambda w: w["status"] != "RUNNING", within=30)
        assert workflow["status"] == "COMPLETED", workflow.get("reasonForIncompletion")
        tasks = workflow["tasks"]
        assert len(tasks) == 501  # 1 DO_WHILE + 500 LAMBDA (form_uri)
        assert (tasks[0]["taskType"], tasks[0]["status"], tasks[0]["iteration"]) == ("DO_WHILE", C, 500)
        assert (tasks[1]["taskType"], tasks[1]["status"]) == ("LAMBDA", C)
        assert tasks[1]["outputData"].get("result") == 0
        assert (tasks[500]["taskType"], tasks[500]["status"]) == ("LAMBDA", C)
        assert tasks[500]["outputData"].get("result") == 499
