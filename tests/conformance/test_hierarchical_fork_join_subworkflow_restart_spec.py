"""HierarchicalForkJoinSubworkflowRestartSpec (conductor-oss/conductor test-harness/.../integration/
HierarchicalForkJoinSubworkflowRestartSpec.groovy), ported: each test cites the feature's line; the fixtures
are the spec's, unchanged. Every feature starts from the spec's setup (l.53-221): root and mid-level are
hierarchical_fork_join_swf, the leaf integration_test_wf, all FAILED because integration_task_2 failed in the
leaf. ``sweep``/``asyncSystemTaskExecutor.execute`` are replaced by waiting for the asserted state."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._subwf_steps import (
    REOPENED,
    T1,
    T2,
    assert_workflow_is_completed,
    child_of,
    complete_leaf,
    complete_two_task_2,
    expect,
    fork_join,
    hierarchical_three_levels,
)
from .conductor import conductor_server

CORRELATION = "retry_on_root_in_3level_wf"  # l.72


async def test_restart_on_the_root_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRestartSpec.groovy:229 "Test restart on the root in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await conductor.client.restart(root, use_latest_definitions=False)
        await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "SCHEDULED", "IN_PROGRESS"))
        new_mid = await child_of(conductor, root, 1)
        assert new_mid != mid
        await complete_two_task_2(conductor, root, new_mid)
        new_leaf = await child_of(conductor, new_mid, 1)
        assert new_leaf != leaf
        await complete_leaf(conductor, new_leaf)
        await assert_workflow_is_completed(conductor, new_mid)
        await assert_workflow_is_completed(conductor, root)


async def test_restart_on_the_mid_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRestartSpec.groovy:345 "Test restart on the mid-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await conductor.client.restart(mid, use_latest_definitions=False)
        await expect(conductor, mid, "RUNNING", fork_join("IN_PROGRESS", "SCHEDULED", "IN_PROGRESS"))
        # l.366: the root is updated (restart -> updateAndPushParents); its JOIN CANCELED or already reopened.
        await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", REOPENED))

        await conductor.complete(T2, {"op": "task2.done"})
        new_leaf = await child_of(conductor, mid, 1)
        assert new_leaf != leaf
        await complete_leaf(conductor, new_leaf)
        await assert_workflow_is_completed(conductor, mid)
        await assert_workflow_is_completed(conductor, root)


async def test_restart_on_the_leaf_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRestartSpec.groovy:447 "Test restart on the leaf in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await conductor.client.restart(leaf, use_latest_definitions=False)
        await expect(conductor, leaf, "RUNNING", [(T1, "SCHEDULED")])
        await expect(conductor, mid, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", REOPENED))
        await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", REOPENED))
        # l.503 joinIsUpdated(mid) && joinIsUpdated(root)
        for parent in (mid, root):
            parent_wf = await expect(conductor, parent, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))
            assert not parent_wf["tasks"][1]["subworkflowChanged"]

        await conductor.complete(T1, {"op": "task1.done"})
        await conductor.complete(T2, {"op": "task2.done"})
        await expect(conductor, leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "COMPLETED")])
        await assert_workflow_is_completed(conductor, mid)
        await assert_workflow_is_completed(conductor, root)
