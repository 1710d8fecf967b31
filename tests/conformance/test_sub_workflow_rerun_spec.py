"""SubWorkflowRerunSpec (conductor-oss/conductor test-harness/.../integration/SubWorkflowRerunSpec.groovy),
ported: each test cites the feature's line; the fixtures are the spec's, unchanged. Every feature starts from the
spec's setup (l.44-184): root -> mid-level -> leaf, all FAILED because integration_task_2 failed in the leaf.
``sweep``/``asyncSystemTaskExecutor.execute`` are replaced by waiting for the state the spec asserts."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._subwf_steps import SW, T1, T2, child_of, complete_leaf, expect, three_levels
from .conductor import Conductor, conductor_server

CORRELATION = "rerun_on_root_in_3level_wf"  # SubWorkflowRerunSpec.groovy:61


async def _rerun_root(conductor: Conductor, root: str, mid: str, leaf: str, from_first_task: bool) -> None:
    """l.192-303 and l.307-417 alike: the root runs again from its first task; new mid-level and leaf."""
    task_id = (await conductor.workflow(root))["tasks"][0]["taskId"] if from_first_task else None
    await conductor.client.rerun(root, from_task_id=task_id)
    await conductor.complete(T1, {"op1": "task1.done"})
    await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
    new_mid = await child_of(conductor, root, 1)
    assert new_mid != mid
    await expect(conductor, new_mid, "RUNNING", [(T1, "SCHEDULED")])

    await conductor.complete(T1, {"op": "task1.done"})
    new_leaf = await child_of(conductor, new_mid, 1)
    assert new_leaf != leaf
    await expect(conductor, new_leaf, "RUNNING", [(T1, "SCHEDULED")])
    await conductor.complete(T1, {"op": "task1.done"})
    await conductor.complete(T2, {"op": "task2.done"})
    await expect(conductor, new_leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "COMPLETED")])

    await expect(conductor, new_mid, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
    await expect(conductor, root, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])


async def _rerun_mid(conductor: Conductor, root: str, mid: str, leaf: str, from_first_task: bool) -> None:
    """l.421-512 and l.516-609 alike: the mid-level runs again from its first task and starts a new leaf; the
    root's SUB_WORKFLOW task goes back to IN_PROGRESS."""
    task_id = (await conductor.workflow(mid))["tasks"][0]["taskId"] if from_first_task else None
    await conductor.client.rerun(mid, from_task_id=task_id)
    await expect(conductor, mid, "RUNNING", [(T1, "SCHEDULED")])
    await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])

    await conductor.complete(T1, {"op": "task1.done"})
    new_leaf = await child_of(conductor, mid, 1)
    assert new_leaf != leaf
    await complete_leaf(conductor, new_leaf)

    await expect(conductor, mid, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
    root_wf = await expect(conductor, root, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
    assert not root_wf["tasks"][1]["subworkflowChanged"]


async def _rerun_leaf(conductor: Conductor, root: str, mid: str, leaf: str, from_first_task: bool) -> None:
    """l.613-693 and l.697-773 alike: the leaf runs again from its first task; both parents' SUB_WORKFLOW tasks go
    back to IN_PROGRESS and complete with it."""
    task_id = (await conductor.workflow(leaf))["tasks"][0]["taskId"] if from_first_task else None
    await conductor.client.rerun(leaf, from_task_id=task_id)
    await expect(conductor, leaf, "RUNNING", [(T1, "SCHEDULED")])
    await expect(conductor, mid, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
    await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])

    await conductor.complete(T1, {"op": "task1.done"})
    await conductor.complete(T2, {"op": "task2.done"})
    await expect(conductor, leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "COMPLETED")])
    mid_wf = await expect(conductor, mid, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
    root_wf = await expect(conductor, root, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
    assert not mid_wf["tasks"][1]["subworkflowChanged"]
    assert not root_wf["tasks"][1]["subworkflowChanged"]


async def test_rerun_on_the_root_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRerunSpec.groovy:192 "Test rerun on the root-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        await _rerun_root(conductor, *await three_levels(conductor, CORRELATION), from_first_task=False)


async def test_rerun_on_the_root_level_with_task_id_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRerunSpec.groovy:307 "Test rerun on the root-level with taskId in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        await _rerun_root(conductor, *await three_levels(conductor, CORRELATION), from_first_task=True)


async def test_rerun_on_the_mid_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRerunSpec.groovy:421 "Test rerun on the mid-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        await _rerun_mid(conductor, *await three_levels(conductor, CORRELATION), from_first_task=False)


async def test_rerun_on_the_mid_level_with_task_id_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRerunSpec.groovy:516 "Test rerun on the mid-level with taskId in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        await _rerun_mid(conductor, *await three_levels(conductor, CORRELATION), from_first_task=True)


async def test_rerun_on_the_leaf_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRerunSpec.groovy:613 "Test rerun on the leaf-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        await _rerun_leaf(conductor, *await three_levels(conductor, CORRELATION), from_first_task=False)


async def test_rerun_on_the_leaf_level_with_task_id_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRerunSpec.groovy:697 "Test rerun on the leaf-level with taskId in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        await _rerun_leaf(conductor, *await three_levels(conductor, CORRELATION), from_first_task=True)
