"""DecisionTaskSpec (conductor-oss/conductor test-harness/.../integration/DecisionTaskSpec.groovy), ported:
each test cites the feature's line; the fixtures are the spec's, unchanged. The steps are shared with
SwitchTaskSpec (the same features on SWITCH), in ``_loops_steps``."""

from __future__ import annotations

import pytest

from partita.transport import Client, Connection

from . import _loops_steps as steps
from .conductor import Conductor, conductor_server

KIND, OUTPUT = "DECISION", "caseOutput"


async def register(conductor: Conductor) -> None:
    # DecisionTaskSpec.groovy:42 setup()
    for name in (
        "simple_decision_task_integration_test.json",
        "decision_and_fork_join_integration_test.json",
        "conditional_task_workflow_integration_test.json",
    ):
        await conductor.register_fixture(name)


async def test_simple_decision_workflow(conn: Connection, client: Client) -> None:
    # DecisionTaskSpec.groovy:49 "Test simple decision workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.simple_conditional_workflow(conductor, "DecisionWorkflow", KIND, "decision_workflow")


async def test_a_workflow_that_has_a_decision_task_that_leads_to_a_fork_join(conn: Connection, client: Client) -> None:
    # DecisionTaskSpec.groovy:120 "Test a workflow that has a decision task that leads to a fork join"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.conditional_leading_to_fork_join(conductor, KIND, "decision_forkjoin")


async def test_default_case_condition_execution_of_a_conditional_workflow(conn: Connection, client: Client) -> None:
    # DecisionTaskSpec.groovy:215 "Test default case condition execution of a conditional workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.default_case(conductor, KIND, OUTPUT)


@pytest.mark.parametrize(
    ("case_value", "expected_task"), [("two", "integration_task_2"), ("one", "integration_task_1")]
)
async def test_case_nested_and_case_value_condition_execution_of_a_conditional_workflow(
    conn: Connection, client: Client, case_value: str, expected_task: str
) -> None:
    # DecisionTaskSpec.groovy:256 "Test case 'nested' and '#caseValue' condition execution of a conditional
    # workflow" (@Unroll: one case per row of its where: table, :299-301)
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.nested_case(conductor, KIND, OUTPUT, case_value, expected_task)


async def test_three_case_condition_execution_of_a_conditional_workflow(conn: Connection, client: Client) -> None:
    # DecisionTaskSpec.groovy:304 "Test 'three' case condition execution of a conditional workflow"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        await steps.three_case(conductor, KIND, OUTPUT)
