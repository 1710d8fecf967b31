"""SubWorkflowRetrySpec (conductor-oss/conductor test-harness/.../integration/SubWorkflowRetrySpec.groovy),
ported: each test cites the feature's line; the fixtures are the spec's, unchanged. Every feature starts from the
spec's setup (l.44-186): root -> mid-level -> leaf, all FAILED because integration_task_2 failed in the leaf.
``sweep``/``asyncSystemTaskExecutor.execute`` are replaced by waiting for the state the spec asserts."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._subwf_steps import SW, T1, T2, assert_retried, child_of, complete_leaf, expect, retry, three_levels
from .conductor import conductor_server

CORRELATION = "retry_on_root_in_3level_wf"


async def test_retry_on_the_root_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRetrySpec.groovy:189 "Test retry on the root in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await retry(conductor, root, False)
        # l.195: the spec polls integration_task_1 here; none is scheduled (the poll finds nothing).
        root_wf = await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "FAILED"), (SW, "IN_PROGRESS")])
        assert_retried(root_wf, 1, 2)
        new_mid = await child_of(conductor, root, 2)
        assert new_mid != mid
        await expect(conductor, new_mid, "RUNNING", [(T1, "SCHEDULED")])

        await conductor.complete(T1, {"op1": "task1.done"})
        await expect(conductor, new_mid, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
        new_leaf = await child_of(conductor, new_mid, 1)
        assert new_leaf != leaf
        await expect(conductor, new_leaf, "RUNNING", [(T1, "SCHEDULED")])
        await conductor.complete(T1, {"op": "task1.done"})
        await conductor.complete(T2, {"op": "task2.done"})
        await expect(conductor, new_leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "COMPLETED")])

        await expect(conductor, new_mid, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
        root_wf = await expect(conductor, root, "COMPLETED", [(T1, "COMPLETED"), (SW, "FAILED"), (SW, "COMPLETED")])
        assert_retried(root_wf, 1, 2)


async def test_retry_on_the_root_with_resume_flag_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRetrySpec.groovy:311 "Test retry on the root with resume flag in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await retry(conductor, root, True)
        await _resumed_from_the_leaf(conductor, root, mid, leaf)


async def test_retry_on_the_mid_level_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRetrySpec.groovy:415 "Test retry on the mid-level in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await retry(conductor, mid, False)
        mid_wf = await expect(conductor, mid, "RUNNING", [(T1, "COMPLETED"), (SW, "FAILED"), (SW, "IN_PROGRESS")])
        assert_retried(mid_wf, 1, 2)
        # l.441: the root's SUB_WORKFLOW task is updated (updateAndPushParents).
        await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
        new_leaf = await child_of(conductor, mid, 2)
        assert new_leaf != leaf
        await complete_leaf(conductor, new_leaf)

        mid_wf = await expect(conductor, mid, "COMPLETED", [(T1, "COMPLETED"), (SW, "FAILED"), (SW, "COMPLETED")])
        assert_retried(mid_wf, 1, 2)
        await expect(conductor, root, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])


async def test_retry_on_the_mid_level_with_resume_flag_in_a_3_level_subworkflow(
    conn: Connection, client: Client
) -> None:
    # SubWorkflowRetrySpec.groovy:511 "Test retry on the mid-level with resume flag in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await retry(conductor, mid, True)
        await _resumed_from_the_leaf(conductor, root, mid, leaf)


async def test_retry_on_the_leaf_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRetrySpec.groovy:612 "Test retry on the leaf in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await retry(conductor, leaf, False)
        await _resumed_from_the_leaf(conductor, root, mid, leaf)


async def test_retry_on_the_leaf_with_resume_flag_in_a_3_level_subworkflow(conn: Connection, client: Client) -> None:
    # SubWorkflowRetrySpec.groovy:695 "Test retry on the leaf with resume flag in a 3-level subworkflow"
    async with conductor_server(conn, client) as conductor:
        root, mid, leaf = await three_levels(conductor, CORRELATION)
        await retry(conductor, leaf, True)
        await _resumed_from_the_leaf(conductor, root, mid, leaf)


async def _resumed_from_the_leaf(conductor, root: str, mid: str, leaf: str) -> None:  # type: ignore[no-untyped-def]
    """What the resume-flag retries (and the leaf retry) assert alike (l.317-408, l.517-605, l.618-688,
    l.701-763): the leaf's failed task is retried in the same leaf; the mid-level and root SUB_WORKFLOW tasks
    go back to IN_PROGRESS in the same workflows; all three complete without new SUB_WORKFLOW tasks."""
    leaf_wf = await expect(conductor, leaf, "RUNNING", [(T1, "COMPLETED"), (T2, "FAILED"), (T2, "SCHEDULED")])
    assert_retried(leaf_wf, 1, 2)
    mid_wf = await expect(conductor, mid, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
    root_wf = await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
    # "flag is reset after decide"
    assert not mid_wf["tasks"][1]["subworkflowChanged"]
    assert not root_wf["tasks"][1]["subworkflowChanged"]

    await conductor.complete(T2, {"op": "task1.done"})
    leaf_wf = await expect(conductor, leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "FAILED"), (T2, "COMPLETED")])
    assert_retried(leaf_wf, 1, 2)
    mid_wf = await expect(conductor, mid, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
    root_wf = await expect(conductor, root, "COMPLETED", [(T1, "COMPLETED"), (SW, "COMPLETED")])
    assert not mid_wf["tasks"][1]["subworkflowChanged"]
    assert not root_wf["tasks"][1]["subworkflowChanged"]
