"""The liveness invariant (what should move each part of a workflow) and the decider's repair, without I/O."""

from __future__ import annotations

from msgspec import structs

from partita.actors.decider import decide
from partita.actors.decider.liveness import MoverKind, audit
from partita.schemas import (
    DispatchTask,
    ReconcileWorkflow,
    ScheduleTimer,
    StartChild,
    TaskStatus,
    Workflow,
    WorkflowStatus,
)

from .test_decider import NOW, THREE, definition, report, simple, start


def _kinds(workflow: Workflow) -> list[tuple[str, MoverKind]]:
    return [(mover.task.reference_task_name, mover.kind) for mover in audit(workflow).movers]


def test_a_scheduled_worker_task_is_moved_by_its_task_message() -> None:
    workflow = start(THREE)
    assert _kinds(workflow) == [("a", MoverKind.TASK_MESSAGE)]
    assert not audit(workflow).owes_nothing
    assert not audit(workflow).parked


def test_a_timed_wait_is_moved_by_its_timer_an_untimed_one_and_a_human_are_parked() -> None:
    timed = start(definition({"name": "w", "taskReferenceName": "w", "type": "WAIT",
                              "inputParameters": {"duration": "5 seconds"}}))  # fmt: skip
    assert _kinds(timed) == [("w", MoverKind.TIMER)]
    for parked in (
        definition({"name": "w", "taskReferenceName": "w", "type": "WAIT"}),
        definition({"name": "h", "taskReferenceName": "h", "type": "HUMAN"}),
    ):
        found = audit(start(parked))
        assert found.movers == ()
        assert found.parked
        assert not found.owes_nothing


def test_a_sub_workflow_in_progress_is_moved_by_its_child() -> None:
    parent = start(definition({"name": "sub", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                               "subWorkflowParam": {"name": "child", "version": 1}}))  # fmt: skip
    assert _kinds(parent) == [("sub", MoverKind.CHILD)]


def test_a_fork_is_moved_by_each_branch_not_by_its_join() -> None:
    forked = start(
        definition(
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
             "forkTasks": [[simple("x")], [simple("y")]]},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["x", "y"]},
        )
    )  # fmt: skip
    assert sorted(_kinds(forked)) == [("x", MoverKind.TASK_MESSAGE), ("y", MoverKind.TASK_MESSAGE)]


def test_paused_and_ended_workflows_owe_nothing_and_a_running_one_without_tasks_owes_a_walk() -> None:
    workflow = start(THREE)
    assert audit(structs.replace(workflow, status=WorkflowStatus.PAUSED)).parked
    ended = audit(structs.replace(workflow, status=WorkflowStatus.COMPLETED))
    assert ended.movers == ()
    assert not ended.owes_nothing
    left_behind = structs.replace(workflow, tasks=())  # a decision that scheduled nothing: only a walk helps
    assert audit(left_behind).owes_nothing


def test_repair_redispatches_a_missing_task_under_a_new_id_and_is_ignored_once_the_workflow_moved() -> None:
    workflow = start(THREE)
    task = workflow.tasks[0]
    command = ReconcileWorkflow(workflow_id=workflow.workflow_id, observed_update_time=workflow.update_time,
                                task_ids=[task.task_id])  # fmt: skip
    repaired = decide(workflow, command, NOW + 60_000)
    assert repaired.workflow is not None
    dispatches = [e for e in repaired.effects if isinstance(e, DispatchTask)]
    assert [d.task.task_id for d in dispatches] == [task.task_id]  # the same task, so its result is accepted
    assert dispatches[0].dispatch_id != task.task_id  # (the first dispatch's id): not deduplicated away
    assert dispatches[0].task.poll_count == task.poll_count
    assert repaired.workflow.tasks[0].status is TaskStatus.SCHEDULED
    assert repaired.workflow.update_time == NOW + 60_000
    # The workflow moved on since the audit (a result came): the command changes nothing.
    moved = report(workflow, output={"y": 1}).workflow
    assert moved is not None
    assert decide(moved, command, NOW + 60_000).workflow is None


def test_repair_rearms_a_wait_for_its_original_deadline_and_restarts_a_lost_child() -> None:
    waiting = start(definition({"name": "w", "taskReferenceName": "w", "type": "WAIT",
                                "inputParameters": {"duration": "5 seconds"}}))  # fmt: skip
    wait = waiting.tasks[0]
    command = ReconcileWorkflow(workflow_id=waiting.workflow_id, observed_update_time=waiting.update_time,
                                task_ids=[wait.task_id])  # fmt: skip
    timers = [e for e in decide(waiting, command, NOW + 30_000).effects if isinstance(e, ScheduleTimer)]
    assert [(t.timer_id, t.at) for t in timers] == [(wait.task_id, wait.start_time + 5000)]
    assert timers[0].repair == NOW + 30_000  # a new message id, the same deadline

    parent = start(definition({"name": "sub", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                               "subWorkflowParam": {"name": "child", "version": 1}}))  # fmt: skip
    sub = parent.tasks[0]
    command = ReconcileWorkflow(workflow_id=parent.workflow_id, observed_update_time=parent.update_time,
                                task_ids=[sub.task_id])  # fmt: skip
    starts = [e for e in decide(parent, command, NOW + 30_000).effects if isinstance(e, StartChild)]
    assert [s.request.workflow_id for s in starts] == [sub.sub_workflow_id]  # the same child id: deduplicated
