"""NestedForkJoinSubWorkflowSpec (conductor-oss/conductor test-harness/.../integration/
NestedForkJoinSubWorkflowSpec.groovy), ported: each test cites the feature's line; the fixtures are the spec's,
unchanged.

nested_fork_join_swf: outer_fork [inner_fork [st1 SUB_WORKFLOW integration_test_wf (retryCount 0) | t2], inner_join
| t3], outer_join. The spec's ``setup()`` (l.48) runs before every feature and brings all three workflows to
FAILED through ``integration_task_2`` failing in the child; :func:`failed_nested_workflow` is that setup.
``sweep`` and ``asyncSystemTaskExecutor.execute`` are replaced by waiting for the state the spec asserts.
"""

from __future__ import annotations

from partita.transport import Client, Connection

from ._fork_steps import child_id, expect
from .conductor import Conductor, conductor_server

FORK_JOIN_NESTED_SUB_WF = "nested_fork_join_swf"
SIMPLE_WORKFLOW = "integration_test_wf"
S, IP, C, F, X = "SCHEDULED", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELED"
FORK, SW, JOIN, T2 = "FORK", "SUB_WORKFLOW", "JOIN", "integration_task_2"


def parent(sw: str, t: str, inner_join: str, outer_join: str, count: int = 7) -> list[tuple[str, str]]:
    """The parent's 7 tasks in Conductor's order: FORK, FORK, st1, t2, inner_join, t3, outer_join."""
    return [(FORK, C), (FORK, C), (SW, sw), (T2, t), (JOIN, inner_join), (T2, t), (JOIN, outer_join)][:count]


COMPLETE = parent(C, C, C, C)


async def failed_nested_workflow(conductor: Conductor) -> tuple[str, str]:
    # NestedForkJoinSubWorkflowSpec.groovy:48 setup(): 3 workflows reach FAILED; integration_task_2 in the leaf
    # workflow is FAILED.
    await conductor.register_fixture("nested_fork_join_swf.json")
    await conductor.register_fixture("simple_workflow_1_integration_test.json")
    await conductor.update_task_def("integration_task_2", retryCount=0)
    input_ = {"param1": "p1 value", "param2": "p2 value", "subwf": SIMPLE_WORKFLOW}
    parent_id = await conductor.start(FORK_JOIN_NESTED_SUB_WF, 1, "retry_on_root_in_3level_wf", input_)
    await expect(conductor, parent_id, "RUNNING", 7, parent(IP, S, IP, IP))

    await conductor.complete(T2, {"op": "task1.done"})
    await conductor.complete(T2, {"op": "task1.done"})
    await expect(conductor, parent_id, "RUNNING", 7, parent(IP, C, IP, IP))

    sub_id = await child_id(conductor, parent_id, "st1")
    await expect(conductor, sub_id, "RUNNING", 1, [("integration_task_1", S)])
    await conductor.complete("integration_task_1", {"op": "task1.done"})
    await conductor.fail(T2, "task2 failed")
    await expect(conductor, sub_id, "FAILED", 2, [("integration_task_1", C), (T2, F)])
    await expect(conductor, parent_id, "FAILED", 7, parent(F, C, X, X))
    return parent_id, sub_id


async def complete_child(conductor: Conductor, sub_id: str) -> None:
    await conductor.complete("integration_task_1", {"op": "task1.done"})
    await conductor.complete(T2, {"op": "task2.done"})
    await expect(conductor, sub_id, "COMPLETED", 2, [("integration_task_1", C), (T2, C)])


async def test_restart_on_the_sub_workflow_in_a_nested_fork_join_workflow(conn: Connection, client: Client) -> None:
    # NestedForkJoinSubWorkflowSpec.groovy:187 "test restart on the sub workflow in a nested fork join workflow"
    async with conductor_server(conn, client) as conductor:
        parent_id, sub_id = await failed_nested_workflow(conductor)
        await conductor.client.restart(sub_id, use_latest_definitions=False)
        await expect(conductor, sub_id, "RUNNING", 1, [("integration_task_1", S)])
        workflow = await expect(conductor, parent_id, "RUNNING", 7, parent(IP, C, IP, IP))
        assert not workflow["tasks"][2]["subworkflowChanged"]  # "the flag is reset" after the sweep

        await complete_child(conductor, sub_id)
        await expect(conductor, parent_id, "COMPLETED", 7, COMPLETE)  # assertParentWorkflowIsComplete (l.813)
        workflow = await conductor.workflow(parent_id)
        assert not workflow["tasks"][2]["subworkflowChanged"]


async def test_restart_on_the_parent_workflow_in_a_nested_fork_join_workflow(conn: Connection, client: Client) -> None:
    # NestedForkJoinSubWorkflowSpec.groovy:302 "test restart on the parent workflow in a nested fork join workflow"
    async with conductor_server(conn, client) as conductor:
        parent_id, sub_id = await failed_nested_workflow(conductor)
        await conductor.client.restart(parent_id, use_latest_definitions=False)
        await expect(conductor, parent_id, "RUNNING", 7, parent(IP, S, IP, IP))

        await conductor.complete(T2, {"op": "task2.done"})
        await conductor.complete(T2, {"op": "task2.done"})
        await expect(conductor, parent_id, "RUNNING", 7, parent(IP, C, IP, IP))
        new_sub_id = await child_id(conductor, parent_id, "st1")
        assert new_sub_id != sub_id
        await expect(conductor, new_sub_id, "RUNNING", 1, [("integration_task_1", S)])

        await complete_child(conductor, new_sub_id)
        await expect(conductor, parent_id, "COMPLETED", 7, COMPLETE)
        workflow = await conductor.workflow(parent_id)
        assert not workflow["tasks"][2]["subworkflowChanged"]


async def test_retry_on_the_parent_workflow_in_a_nested_fork_join_workflow(conn: Connection, client: Client) -> None:
    # NestedForkJoinSubWorkflowSpec.groovy:425 "test retry on the parent workflow in a nested fork join workflow"
    async with conductor_server(conn, client) as conductor:
        parent_id, sub_id = await failed_nested_workflow(conductor)
        await conductor.client.retry(parent_id)
        workflow = await expect(conductor, parent_id, "RUNNING", 8, [*parent(F, C, IP, IP), (SW, IP)])
        tasks = workflow["tasks"]
        assert tasks[2]["retried"]
        assert tasks[7].get("retriedTaskId") == tasks[2]["taskId"]
        new_sub_id = await child_id(conductor, parent_id, "st1")
        assert new_sub_id != sub_id
        await expect(conductor, new_sub_id, "RUNNING", 1, [("integration_task_1", S)])

        await complete_child(conductor, new_sub_id)
        workflow = await expect(conductor, parent_id, "COMPLETED", 8, [*parent(F, C, C, C), (SW, C)])
        tasks = workflow["tasks"]
        assert tasks[2]["retried"]
        assert tasks[7].get("retriedTaskId") == tasks[2]["taskId"]


async def test_retry_with_resume_on_the_parent_workflow_in_a_nested_fork_join_workflow(
    conn: Connection, client: Client
) -> None:
    # NestedForkJoinSubWorkflowSpec.groovy:576
    # "test retry with resume on the parent workflow in a nested fork join workflow"
    async with conductor_server(conn, client) as conductor:
        parent_id, sub_id = await failed_nested_workflow(conductor)
        # workflowExecutor.retry(parentWorkflowId, resumeSubworkflowTasks=true): Conductor retries the failed leaf
        # in place and reopens the parent's SUB_WORKFLOW task. Partita's Client.retry has no
        # resumeSubworkflowTasks: the plain retry is the nearest call.
        await conductor.client.retry(parent_id)
        workflow = await expect(conductor, sub_id, "RUNNING", 3, {1: (T2, F), 2: (T2, S)})
        tasks = workflow["tasks"]
        assert tasks[0]["taskType"] == "integration_task_1"
        assert tasks[1]["retried"]
        assert tasks[2].get("retriedTaskId") == tasks[1]["taskId"]
        workflow = await expect(conductor, parent_id, "RUNNING", 7, parent(IP, C, IP, IP))
        assert not workflow["tasks"][2]["subworkflowChanged"]

        await conductor.complete(T2, {"op": "task2.done"})
        workflow = await expect(conductor, sub_id, "COMPLETED", 3, {1: (T2, F), 2: (T2, C)})
        tasks = workflow["tasks"]
        assert tasks[1]["retried"]
        assert tasks[2].get("retriedTaskId") == tasks[1]["taskId"]
        await expect(conductor, parent_id, "COMPLETED", 7, COMPLETE)


async def test_retry_on_the_sub_workflow_in_a_nested_fork_join_workflow(conn: Connection, client: Client) -> None:
    # NestedForkJoinSubWorkflowSpec.groovy:699 "test retry on the sub workflow in a nested fork join workflow"
    async with conductor_server(conn, client) as conductor:
        parent_id, sub_id = await failed_nested_workflow(conductor)
        await conductor.client.retry(sub_id)
        workflow = await expect(conductor, sub_id, "RUNNING", 3, [("integration_task_1", C), (T2, F), (T2, S)])
        tasks = workflow["tasks"]
        assert tasks[1]["retried"]
        assert tasks[2].get("retriedTaskId") == tasks[1]["taskId"]
        workflow = await expect(conductor, parent_id, "RUNNING", 7, parent(IP, C, IP, IP))
        assert not workflow["tasks"][2]["subworkflowChanged"]

        await conductor.complete(T2, {"op": "task2.done"})
        workflow = await expect(conductor, sub_id, "COMPLETED", 3, [("integration_task_1", C), (T2, F), (T2, C)])
        tasks = workflow["tasks"]
        assert tasks[1]["retried"]
        assert tasks[2].get("retriedTaskId") == tasks[1]["taskId"]
        await expect(conductor, parent_id, "COMPLETED", 7, COMPLETE)
