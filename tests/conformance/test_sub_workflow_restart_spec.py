"""SubWorkflowRestartSpec (conductor-oss/conductor test-harness/.../integration/SubWorkflowRestartSpec.groovy),
ported: each test cites the feature's line; the fixtures are the spec's, unchanged. Every feature starts from the
spec's setup (l.44-206): root -> mid-level -> leaf, all FAILED because integration_task_2 failed in the leaf.
``sweep``/``asyncSystemTaskExecutor.execute`` are replaced by waiting for the state the spec asserts."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._subwf_steps import SW, T1, T2, child_of, complete_leaf, expect, three_levels
from .conductor import conductor_server

CORRELATION = "retry_on_root_in_3level_wf"  # SubWorkflowRestartSpec.groovy:62


async def test_restart_on_the_root_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRestartSpec.groovy:214 "Test restart on the root in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await conductor.client.restart(root, use_latest_definitions=False)
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


async def test_restart_on_the_mid_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRestartSpec.groovy:318 "Test restart on the mid-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await conductor.client.restart(mid, use_latest_definitions=False)
        await expect(conductor, mid, "RUNNING", [(T1, "SCHEDULED")])
        # l.334: the root's SUB_WORKFLOW task is updated (WorkflowExecutorOps.restart -> updateAndPushParents).
        await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])

        await conductor.complete(T1, {"op": "task1.done"})
        new_leaf = await child_of(conductor, mid, 1)
        assert new_leaf != leaf
        await complete_leaf(conductor, new_leaf)

        await expect(conductor, mid, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
        root_wf = await expect(conductor, root, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
        assert not root_wf["tasks"][1]["subworkflowChanged"]


async def test_restart_on_the_leaf_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRestartSpec.groovy:407 "Test restart on the leaf in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await conductor.client.restart(leaf, use_latest_definitions=False)
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
