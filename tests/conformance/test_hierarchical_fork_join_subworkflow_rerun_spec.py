"""HierarchicalForkJoinSubworkflowRerunSpec (conductor-oss/conductor test-harness/.../integration/
HierarchicalForkJoinSubworkflowRerunSpec.groovy), ported: each test cites the feature's line; the fixtures are
the spec's, unchanged. Every feature starts from the spec's setup (l.54-222): root and mid-level are
hierarchical_fork_join_swf, the leaf integration_test_wf, all FAILED because integration_task_2 failed in the
leaf. ``sweep``/``decide``/``asyncSystemTaskExecutor.execute`` are replaced by waiting for the asserted state."""

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

CORRELATION = "rerun_on_root_in_3level_wf"  # l.73


async def test_rerun_on_the_root_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRerunSpec.groovy:229 "Test rerun on the root-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await conductor.client.rerun(root)
        await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "SCHEDULED", "IN_PROGRESS"))
        new_mid = await child_of(conductor, root, 1)
        assert new_mid != mid
        await complete_two_task_2(conductor, root, new_mid)
        new_leaf = await child_of(conductor, new_mid, 1)
        assert new_leaf != leaf
        await complete_leaf(conductor, new_leaf)
        await assert_workflow_is_completed(conductor, new_mid)
        await assert_workflow_is_completed(conductor, root)


async def test_rerun_on_the_mid_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRerunSpec.groovy:347 "Test rerun on the mid-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await conductor.client.rerun(mid)
        await expect(conductor, mid, "RUNNING", fork_join("IN_PROGRESS", "SCHEDULED", "IN_PROGRESS"))
        # l.370: "verify the root workflow is updated": SUB_WORKFLOW and JOIN IN_PROGRESS (awaited 10 s).
        await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))

        await conductor.complete(T2, {"op": "task2.done"})
        new_leaf = await child_of(conductor, mid, 1)
        assert new_leaf != leaf
        await complete_leaf(conductor, new_leaf)
        await assert_workflow_is_completed(conductor, mid)
        await assert_workflow_is_completed(conductor, root)


async def test_rerun_on_the_leaf_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRerunSpec.groovy:441 "Test rerun on the leaf-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await conductor.client.rerun(leaf)
        await expect(conductor, leaf, "RUNNING", [(T1, "SCHEDULED")])
        await expect(conductor, mid, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", REOPENED))
        await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", REOPENED))
        for parent in (mid, root):  # l.490-511 after the sweeps: JOINs IN_PROGRESS, subworkflowChanged reset
            parent_wf = await expect(conductor, parent, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))
            assert not parent_wf["tasks"][1]["subworkflowChanged"]

        await conductor.complete(T1, {"op": "task1.done"})
        await conductor.complete(T2, {"op": "task2.done"})
        await expect(conductor, leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "COMPLETED")])
        await assert_workflow_is_completed(conductor, mid)
        await assert_workflow_is_completed(conductor, root)
