"""SwitchTaskSpec (conductor-oss/conductor test-harness/.../integration/SwitchTaskSpec.groovy), ported: each
test cites the feature's line; the fixtures are the spec's, unchanged. The steps are shared with
DecisionTaskSpec (the same features on DECISION), in ``_loops_steps``."""

from __future__ import annotations

import pytest

from partita.transport import Client, Connection

from . import _loops_steps as steps
from ._loops_steps import C, S, expect
from .conductor import Conductor, conductor_server

KIND, OUTPUT = "SWITCH", "evaluationResult"


async def register(conductor: Conductor) -> None:
    # SwitchTaskSpec.groovy:45 setup()
    for name in (
        "simple_switch_task_integration_test.json",
        "switch_and_fork_join_integration_test.json",
        "conditional_switch_task_workflow_integration_test.json",
        "switch_with_no_default_case_integration_test.json",
    ):
        await conductor.register_fixture(name)


async def test_simple_switch_workflow(conn: Connection, client: Client) -> None:
    # SwitchTaskSpec.groovy:53 "Test simple switch workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.simple_conditional_workflow(conductor, "SwitchWorkflow", KIND, "switch_workflow")


async def test_a_workflow_that_has_a_switch_task_that_leads_to_a_fork_join(conn: Connection, client: Client) -> None:
    # SwitchTaskSpec.groovy:124 "Test a workflow that has a switch task that leads to a fork join"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.conditional_leading_to_fork_join(conductor, KIND, "switch_forkjoin")


async def test_default_case_condition_execution_of_a_conditional_workflow(conn: Connection, client: Client) -> None:
    # SwitchTaskSpec.groovy:219 "Test default case condition execution of a conditional workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.default_case(conductor, KIND, OUTPUT)


@pytest.mark.parametrize(
    ("case_value", "expected_task"), [("two", "integration_task_2"), ("one", "integration_task_1")]
)
async def test_case_nested_and_case_value_condition_execution_of_a_conditional_workflow(
    conn: Connection, client: Client, case_value: str, expected_task: str
) -> None:
    # SwitchTaskSpec.groovy:260 "Test case 'nested' and '#caseValue' condition execution of a conditional
    # workflow" (@Unroll: one case per row of its where: table, :303-305)
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.nested_case(conductor, KIND, OUTPUT, case_value, expected_task)


async def test_three_case_condition_execution_of_a_conditional_workflow(conn: Connection, client: Client) -> None:
    # SwitchTaskSpec.groovy:308 "Test 'three' case condition execution of a conditional workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.three_case(conductor, KIND, OUTPUT)


async def test_switch_with_no_default_case_workflow(conn: Connection, client: Client) -> None:
    # SwitchTaskSpec.groovy:370 "Test switch with no default case workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        wid = await conductor.start("SwitchWithNoDefaultCaseWF", 1, "switch_no_default_workflow",
                                    {"param1": "p1", "param2": "p2"})  # fmt: skip
        await expect(conductor, wid, "RUNNING", [(KIND, C), ("integration_task_2", S)])
        await conductor.complete("integration_task_2")
        await expect(conductor, wid, "COMPLETED", [(KIND, C), ("integration_task_2", C)])
