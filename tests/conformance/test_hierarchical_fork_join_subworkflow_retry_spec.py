"""HierarchicalForkJoinSubworkflowRetrySpec (conductor-oss/conductor test-harness/.../integration/
HierarchicalForkJoinSubworkflowRetrySpec.groovy), ported: each test cites the feature's line; the fixtures are
the spec's, unchanged. Every feature starts from the spec's setup (l.57-212): root and mid-level are
hierarchical_fork_join_swf (FORK: SUB_WORKFLOW st1 | integration_task_2 t2, then JOIN), the leaf is
integration_test_wf, and integration_task_2 failed in the leaf, so all three are FAILED. ``sweep``,
``asyncSystemTaskExecutor.execute`` (SUB_WORKFLOW and JOIN) are replaced by waiting for the asserted state."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._subwf_steps import (
    SW,
    T1,
    T2,
    assert_retried,
    assert_sub_workflow_task_is_retried_and_workflow_completed,
    assert_workflow_is_completed,
    child_of,
    complete_leaf,
    expect,
    fork_join,
    hierarchical_three_levels,
    retry,
)
from .conductor import Conductor, conductor_server

CORRELATION = "retry_on_root_in_3level_wf"  # l.76


async def test_retry_on_the_root_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRetrySpec.groovy:220 "Test retry on the root in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await retry(conductor, root, False)
        wanted = [*fork_join("FAILED", "COMPLETED", "IN_PROGRESS"), (SW, "IN_PROGRESS")]
        root_wf = await expect(conductor, root, "RUNNING", wanted)
        assert_retried(root_wf, 1, 4)
        new_mid = await child_of(conductor, root, 4)
        assert new_mid != mid
        await expect(conductor, new_mid, "RUNNING", fork_join("IN_PROGRESS", "SCHEDULED", "IN_PROGRESS"))

        await conductor.complete(T2, {"op": "task2.done"})
        new_leaf = await child_of(conductor, new_mid, 1)
        assert new_leaf != leaf
        await expect(conductor, new_leaf, "RUNNING", [(T1, "SCHEDULED")])
        await conductor.complete(T1, {"op": "task1.done"})
        await conductor.complete(T2, {"op": "task2.done"})
        await expect(conductor, new_leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "COMPLETED")])

        await assert_workflow_is_completed(conductor, new_mid)
        await assert_sub_workflow_task_is_retried_and_workflow_completed(conductor, root)


async def test_retry_on_the_mid_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRetrySpec.groovy:321 "Test retry on the mid-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await retry(conductor, mid, False)
        wanted = [*fork_join("FAILED", "COMPLETED", "IN_PROGRESS"), (SW, "IN_PROGRESS")]
        mid_wf = await expect(conductor, mid, "RUNNING", wanted)
        assert_retried(mid_wf, 1, 4)
        # l.346: the root's SUB_WORKFLOW back IN_PROGRESS, its CANCELED JOIN reopened (updateAndPushParents).
        await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))
        new_leaf = await child_of(conductor, mid, 4)
        assert new_leaf != leaf
        await complete_leaf(conductor, new_leaf)

        await assert_sub_workflow_task_is_retried_and_workflow_completed(conductor, mid)
        await assert_workflow_is_completed(conductor, root)


async def _leaf_retried(conductor: Conductor, root: str, mid: str, leaf: str) -> None:
    """What the leaf retry and the three resume-flag retries assert alike (l.418-548, l.551-678, l.681-808,
    l.811-939): the leaf's failed task is retried in the same leaf; the mid-level's and root's SUB_WORKFLOW go
    back to IN_PROGRESS and their CANCELED JOINs to IN_PROGRESS; then all complete."""
    leaf_wf = await expect(conductor, leaf, "RUNNING", [(T1, "COMPLETED"), (T2, "FAILED"), (T2, "SCHEDULED")])
    assert_retried(leaf_wf, 1, 2)
    for parent in (mid, root):
        parent_wf = await expect(conductor, parent, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))
        assert not parent_wf["tasks"][1]["subworkflowChanged"]  # "flag is reset after decide"

    await conductor.complete(T2, {"op": "task1.done"})
    leaf_wf = await expect(conductor, leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "FAILED"), (T2, "COMPLETED")])
    assert_retried(leaf_wf, 1, 2)
    await assert_workflow_is_completed(conductor, mid)
    await assert_workflow_is_completed(conductor, root)


async def test_retry_on_the_leaf_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRetrySpec.groovy:418 "Test retry on the leaf in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await retry(conductor, leaf, False)
        await _leaf_retried(conductor, root, mid, leaf)


async def test_retry_on_the_root_with_resume_flag_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRetrySpec.groovy:551 "Test retry on the root with resume flag in a 3-level
    # subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await retry(conductor, root, True)
        await _leaf_retried(conductor, root, mid, leaf)


async def test_retry_on_the_mid_level_with_resume_flag_in_a_3_level_subworkflow(
    conn: Connection, client: Client
) -> None:
    # HierarchicalForkJoinSubworkflowRetrySpec.groovy:681 "Test retry on the mid-level with resume flag in a
    # 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await retry(conductor, mid, True)
        await _leaf_retried(conductor, root, mid, leaf)


async def test_retry_on_the_leaf_with_resume_flag_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # HierarchicalForkJoinSubworkflowRetrySpec.groovy:811 "Test retry on the leaf with resume flag in a 3-level
    # subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await hierarchical_three_levels(conductor, CORRELATION)
        await retry(conductor, leaf, True)
        await _leaf_retried(conductor, root, mid, leaf)
