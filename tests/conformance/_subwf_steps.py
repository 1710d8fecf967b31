"""Steps the sub-workflow specs (SubWorkflow*Spec, HierarchicalForkJoinSubworkflow*Spec) need beyond the facade.

* ``expect``: wait (deadline, not a sleep) until a workflow has exactly the ``(taskType, status)`` list and the
  status a spec asserts, then return its Conductor JSON; on timeout the message shows what it had instead.
* ``retry``: Conductor's ``workflowExecutor.retry(id, resumeSubworkflowTasks)``. ``Client.retry`` has no
  ``resumeSubworkflowTasks`` flag, so with the flag the ``RetryWorkflow`` command is published with the field
  Conductor's REST API names it (``POST /workflow/{id}/retry?resumeSubworkflowTasks=true``), camelCase like every
  Partita message: a node that knows it applies it, one that does not ignores it (unknown fields are ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from partita.schemas import RetryWorkflow
from partita.transport.codec import encode_json

from .conductor import JSON, Conductor

Shape = Sequence[tuple[str, str | frozenset[str]]]  # a status, or the statuses a spec accepts there


def shape(workflow: JSON) -> list[tuple[str, str]]:
    return [(t["taskType"], t["status"]) for t in workflow["tasks"]]


async def expect(
    conductor: Conductor, workflow_id: str, status: str, tasks: Shape | None = None, *, within: float = 20.0
) -> JSON:
    """The workflow once it is ``status`` with exactly the tasks ``tasks`` (types and statuses, in order)."""
    wanted = list(tasks) if tasks is not None else None

    def matches(workflow: JSON) -> bool:
        have = shape(workflow)
        if wanted is None:
            return True
        if len(have) != len(wanted):
            return False
        return all(
            t == wt and (s == ws if isinstance(ws, str) else s in ws)
            for (t, s), (wt, ws) in zip(have, wanted, strict=True)
        )

    def ready(workflow: JSON) -> bool:
        return workflow["status"] == status and matches(workflow)

    return await conductor.settle(workflow_id, ready, within=within, what=f"status {status}, tasks {wanted}")


async def child_of(conductor: Conductor, workflow_id: str, index: int, *, within: float = 20.0) -> str:
    """``tasks[index].subWorkflowId`` of a workflow, once its SUB_WORKFLOW task there has started the child."""
    workflow = await conductor.settle(
        workflow_id,
        lambda w: len(w["tasks"]) > index and bool(w["tasks"][index].get("subWorkflowId")),
        within=within,
        what=f"tasks[{index}].subWorkflowId",
    )
    child: str = workflow["tasks"][index]["subWorkflowId"]
    return child


async def retry(conductor: Conductor, workflow_id: str, resume_subworkflow_tasks: bool = False) -> None:
    if not resume_subworkflow_tasks:
        await conductor.client.retry(workflow_id)
        return
    command: dict[str, Any] = msgspec_builtins(RetryWorkflow(workflow_id=workflow_id))
    command["resumeSubworkflowTasks"] = True
    subject = conductor.layout.command_subject(workflow_id)
    await conductor.conn.publish_durable(subject, encode_json(command))


def msgspec_builtins(message: RetryWorkflow) -> dict[str, Any]:
    import msgspec

    decoded: dict[str, Any] = msgspec.json.decode(encode_json(message))
    return decoded


WF_WITH_SUB = "integration_test_wf_with_sub_wf"
SIMPLE_WORKFLOW = "integration_test_wf"
SW = "SUB_WORKFLOW"
T1, T2 = "integration_task_1", "integration_task_2"


async def register_sub_workflow_fixtures(conductor: Conductor) -> None:
    """The setup() of SubWorkflowRetrySpec/RestartSpec/RerunSpec (and SubWorkflowSpec)."""
    await conductor.register_fixture("simple_one_task_sub_workflow_integration_test.json")
    await conductor.register_fixture("simple_workflow_1_integration_test.json")
    await conductor.register_fixture("workflow_with_sub_workflow_1_integration_test.json")


async def three_levels(conductor: Conductor, correlation_id: str) -> tuple[str, str, str]:
    """The common setup of the SubWorkflow{Retry,Restart,Rerun}Spec: root -> mid-level -> leaf, with
    ``integration_task_2`` (retryCount 0) failed in the leaf, so all three end FAILED. Returns their ids.
    (SubWorkflowRetrySpec.groovy:44-186; the other two specs repeat it.)"""
    await register_sub_workflow_fixtures(conductor)
    await conductor.update_task_def(T2, retryCount=0)
    workflow_input = {"param1": "p1 value", "param2": "p2 value", "subwf": WF_WITH_SUB, "nextSubwf": SIMPLE_WORKFLOW}
    root = await conductor.start(WF_WITH_SUB, 1, correlation_id, workflow_input)
    await expect(conductor, root, "RUNNING", [(T1, "SCHEDULED")])

    await conductor.complete(T1, {"op": "task1.done"})
    await expect(conductor, root, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
    mid = await child_of(conductor, root, 1)
    await expect(conductor, mid, "RUNNING", [(T1, "SCHEDULED")])

    await conductor.complete(T1, {"op": "task1.done"})
    await expect(conductor, mid, "RUNNING", [(T1, "COMPLETED"), (SW, "IN_PROGRESS")])
    leaf = await child_of(conductor, mid, 1)
    await expect(conductor, leaf, "RUNNING", [(T1, "SCHEDULED")])

    await conductor.complete(T1, {"op": "task1.done"})
    await conductor.fail(T2, "failed")
    await expect(conductor, leaf, "FAILED", [(T1, "COMPLETED"), (T2, "FAILED")])
    await expect(conductor, mid, "FAILED", [(T1, "COMPLETED"), (SW, "FAILED")])
    await expect(conductor, root, "FAILED", [(T1, "COMPLETED"), (SW, "FAILED")])
    return root, mid, leaf


async def complete_leaf(conductor: Conductor, leaf: str) -> None:
    """A new leaf (integration_test_wf) runs its two tasks to completion."""
    await expect(conductor, leaf, "RUNNING", [(T1, "SCHEDULED")])
    await conductor.complete(T1, {"op": "task1.done"})
    await conductor.complete(T2, {"op": "task1.done"})
    await expect(conductor, leaf, "COMPLETED", [(T1, "COMPLETED"), (T2, "COMPLETED")])


def assert_retried(workflow: JSON, failed: int, again: int) -> None:
    """``tasks[failed].retried`` and ``tasks[again].retriedTaskId == tasks[failed].taskId``."""
    assert workflow["tasks"][failed]["retried"] is True
    assert workflow["tasks"][again].get("retriedTaskId") == workflow["tasks"][failed]["taskId"]


HIERARCHICAL = "hierarchical_fork_join_swf"
FORK, JOIN = "FORK", "JOIN"
REOPENED = frozenset({"CANCELED", "IN_PROGRESS"})  # "either is valid; only completion is not"


def fork_join(sub_workflow: str | frozenset[str], task_2: str, join: str | frozenset[str]) -> Shape:
    """The four tasks of hierarchical_fork_join_swf: FORK, SUB_WORKFLOW st1, integration_task_2 t2, JOIN."""
    return [(FORK, "COMPLETED"), (SW, sub_workflow), (T2, task_2), (JOIN, join)]


async def hierarchical_three_levels(conductor: Conductor, correlation_id: str) -> tuple[str, str, str]:
    """The setup of the HierarchicalForkJoinSubworkflow{Retry,Restart,Rerun}Spec (HierarchicalForkJoinSubworkflow
    RetrySpec.groovy:57-212): root and mid-level are hierarchical_fork_join_swf (FORK: SUB_WORKFLOW | t2, JOIN),
    the leaf integration_test_wf; integration_task_2 fails in the leaf, so all three end FAILED."""
    await conductor.register_fixture("hierarchical_fork_join_swf.json")
    await conductor.register_fixture("simple_workflow_1_integration_test.json")
    await conductor.update_task_def(T2, retryCount=0)
    workflow_input = {"param1": "p1 value", "param2": "p2 value", "subwf": HIERARCHICAL, "nextSubwf": SIMPLE_WORKFLOW}
    root = await conductor.start(HIERARCHICAL, 1, correlation_id, workflow_input)
    await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "SCHEDULED", "IN_PROGRESS"))
    mid = await child_of(conductor, root, 1)
    # The root's integration_task_2 and the mid-level's: which one a poll gets is not specified.
    await conductor.complete(T2, {"op": "task2.done"})
    await conductor.complete(T2, {"op": "task2.done"})
    await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))
    await expect(conductor, mid, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))
    leaf = await child_of(conductor, mid, 1)
    await expect(conductor, leaf, "RUNNING", [(T1, "SCHEDULED")])

    await conductor.complete(T1, {"op": "task1.done"})
    await conductor.fail(T2, "failed")
    await expect(conductor, leaf, "FAILED", [(T1, "COMPLETED"), (T2, "FAILED")])
    await expect(conductor, mid, "FAILED", fork_join("FAILED", "COMPLETED", "CANCELED"))
    await expect(conductor, root, "FAILED", fork_join("FAILED", "COMPLETED", "CANCELED"))
    return root, mid, leaf


async def complete_two_task_2(conductor: Conductor, root: str, mid: str) -> None:
    """The root's and the (new) mid-level's integration_task_2, in whichever order they are polled, until both
    are COMPLETED (HierarchicalForkJoinSubworkflowRestartSpec.groovy:256-268)."""
    await conductor.complete(T2, {"op": "task2.done"})
    await conductor.complete(T2, {"op": "task2.done"})
    await expect(conductor, root, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))
    await expect(conductor, mid, "RUNNING", fork_join("IN_PROGRESS", "COMPLETED", "IN_PROGRESS"))


async def assert_workflow_is_completed(conductor: Conductor, workflow_id: str) -> None:
    """``assertWorkflowIsCompleted`` of the hierarchical specs: 4 tasks, all COMPLETED, subworkflowChanged reset."""
    workflow = await expect(conductor, workflow_id, "COMPLETED", fork_join("COMPLETED", "COMPLETED", "COMPLETED"))
    assert not workflow["tasks"][1]["subworkflowChanged"]


async def assert_sub_workflow_task_is_retried_and_workflow_completed(conductor: Conductor, workflow_id: str) -> None:
    """``assertSubWorkflowTaskIsRetriedAndWorkflowCompleted`` (HierarchicalForkJoinSubworkflowRetrySpec.groovy:
    952-968): 5 tasks, the first SUB_WORKFLOW FAILED and retried, the retry COMPLETED."""
    wanted = [*fork_join("FAILED", "COMPLETED", "COMPLETED"), (SW, "COMPLETED")]
    workflow = await expect(conductor, workflow_id, "COMPLETED", wanted)
    assert_retried(workflow, 1, 4)
