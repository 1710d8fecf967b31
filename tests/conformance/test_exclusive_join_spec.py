"""ExclusiveJoinSpec (conductor-oss/conductor test-harness/.../integration/ExclusiveJoinSpec.groovy), ported: each
test cites the feature's line; the fixture is the spec's, unchanged.

ExclusiveJoinTestWorkflow: task1, then DECISION decision1 (true: task2 then DECISION decision2 [true: task3];
false: task4 then DECISION decision3 [true: task5]), then EXCLUSIVE_JOIN joinOn [task3, task5] with
defaultExclusiveJoinTask [task2, task4, task1]. Each worker completes with output {taskReferenceName: <its ref>},
and the EXCLUSIVE_JOIN's output is the output of the task it joined.
"""

from __future__ import annotations

from partita.transport import Client, Connection

from ._fork_steps import expect
from .conductor import Conductor, conductor_server

EXCLUSIVE_JOIN_WF = "ExclusiveJoinTestWorkflow"
S, C = "SCHEDULED", "COMPLETED"


async def start(conductor: Conductor, workflow_input: dict[str, str]) -> str:
    # ExclusiveJoinSpec.groovy:29 setup()
    await conductor.register_fixture("exclusive_join_integration_test.json")
    wid = await conductor.start(EXCLUSIVE_JOIN_WF, 1, "exclusive_join_workflow", workflow_input)
    await expect(conductor, wid, "RUNNING", 1, [("integration_task_1", S)])
    await conductor.complete("integration_task_1", {"taskReferenceName": "task1"})
    return wid


async def test_that_the_default_decision_is_run(conn: Connection, client: Client) -> None:
    # ExclusiveJoinSpec.groovy:43 "Test that the default decision is run"
    async with conductor_server(conn, client) as conductor:
        wid = await start(conductor, {"decision_1": "null"})
        workflow = await expect(
            conductor, wid, "COMPLETED", 3, [("integration_task_1", C), ("DECISION", C), ("EXCLUSIVE_JOIN", C)]
        )
        assert workflow["tasks"][2]["outputData"].get("taskReferenceName") == "task1"


async def test_when_the_one_decision_is_true_and_the_other_is_decision_null(conn: Connection, client: Client) -> None:
    # ExclusiveJoinSpec.groovy:80 "Test when the one decision is true and the other is decision null"
    async with conductor_server(conn, client) as conductor:
        wid = await start(conductor, {"decision_1": "true", "decision_2": "null"})
        await expect(conductor, wid, "RUNNING", 3, {1: ("DECISION", C), 2: ("integration_task_2", S)})

        await conductor.complete("integration_task_2", {"taskReferenceName": "task2"})
        workflow = await expect(
            conductor, wid, "COMPLETED", 5,
            [("integration_task_1", C), ("DECISION", C), ("integration_task_2", C), ("DECISION", C),
             ("EXCLUSIVE_JOIN", C)],
        )  # fmt: skip
        assert workflow["tasks"][4]["outputData"].get("taskReferenceName") == "task2"


async def test_when_both_the_decisions_decision_1_and_decision_2_are_true(conn: Connection, client: Client) -> None:
    # ExclusiveJoinSpec.groovy:138 "Test when both the decisions, decision_1 and decision_2 are true"
    async with conductor_server(conn, client) as conductor:
        wid = await start(conductor, {"decision_1": "true", "decision_2": "true"})
        await expect(conductor, wid, "RUNNING", 3, {1: ("DECISION", C), 2: ("integration_task_2", S)})

        await conductor.complete("integration_task_2", {"taskReferenceName": "task2"})
        await expect(
            conductor, wid, "RUNNING", 5,
            [("integration_task_1", C), ("DECISION", C), ("integration_task_2", C), ("DECISION", C),
             ("integration_task_3", S)],
        )  # fmt: skip

        await conductor.complete("integration_task_3", {"taskReferenceName": "task3"})
        workflow = await expect(
            conductor, wid, "COMPLETED", 6,
            [("integration_task_1", C), ("DECISION", C), ("integration_task_2", C), ("DECISION", C),
             ("integration_task_3", C), ("EXCLUSIVE_JOIN", C)],
        )  # fmt: skip
        assert workflow["tasks"][5]["outputData"].get("taskReferenceName") == "task3"


async def test_when_decision_1_is_false_and_decision_3_is_default(conn: Connection, client: Client) -> None:
    # ExclusiveJoinSpec.groovy:221 "Test when decision_1 is false and  decision_3 is default"
    async with conductor_server(conn, client) as conductor:
        wid = await start(conductor, {"decision_1": "false", "decision_3": "null"})
        await expect(conductor, wid, "RUNNING", 3, {1: ("DECISION", C), 2: ("integration_task_4", S)})

        await conductor.complete("integration_task_4", {"taskReferenceName": "task4"})
        workflow = await expect(
            conductor, wid, "COMPLETED", 5,
            [("integration_task_1", C), ("DECISION", C), ("integration_task_4", C), ("DECISION", C),
             ("EXCLUSIVE_JOIN", C)],
        )  # fmt: skip
        assert workflow["tasks"][4]["outputData"].get("taskReferenceName") == "task4"


async def test_when_decision_1_is_false_and_decision_3_is_true(conn: Connection, client: Client) -> None:
    # ExclusiveJoinSpec.groovy:279 "Test when decision_1 is false and  decision_3 is true"
    async with conductor_server(conn, client) as conductor:
        wid = await start(conductor, {"decision_1": "false", "decision_3": "true"})
        await expect(conductor, wid, "RUNNING", 3, {1: ("DECISION", C), 2: ("integration_task_4", S)})

        await conductor.complete("integration_task_4", {"taskReferenceName": "task4"})
        await expect(
            conductor, wid, "RUNNING", 5,
            [("integration_task_1", C), ("DECISION", C), ("integration_task_4", C), ("DECISION", C),
             ("integration_task_5", S)],
        )  # fmt: skip

        await conductor.complete("integration_task_5", {"taskReferenceName": "task5"})
        workflow = await expect(
            conductor, wid, "COMPLETED", 6,
            [("integration_task_1", C), ("DECISION", C), ("integration_task_4", C), ("DECISION", C),
             ("integration_task_5", C), ("EXCLUSIVE_JOIN", C)],
        )  # fmt: skip
        assert workflow["tasks"][5]["outputData"].get("taskReferenceName") == "task5"
