"""A workflow's history: one :class:`HistoryEntry` per committed event, built by comparing the record before
and after it. Pure functions; the actor puts the entry in the record's outbox, so it is published (with a
message id) exactly when the rest of the event's effects are, and replayed with them after a crash."""

from __future__ import annotations

from typing import assert_never

from partita.schemas import (
    ChildFinished,
    HistoryEntry,
    PauseWorkflow,
    ReconcileWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SkipTask,
    StartWorkflow,
    TaskResult,
    TaskStarted,
    TaskTransition,
    TerminateWorkflow,
    TimerFired,
    UpdateTask,
    WireEvent,
    Workflow,
)


def describe(event: WireEvent) -> str:
    """What happened, in a few words: ``result COMPLETED from worker-7``, ``timer TASK_TIMEOUT``..."""
    match event:
        case StartWorkflow():
            return f"start {event.name}" + (f" v{event.version}" if event.version is not None else "")
        case TaskResult():
            return f"result {event.status}" + (f" from {event.worker_id}" if event.worker_id else "")
        case TaskStarted():
            return "task started" + (f" by {event.worker_id}" if event.worker_id else "")
        case UpdateTask():
            return f"update {event.task_ref_name} {event.status}"
        case TerminateWorkflow():
            return "terminate" + (f": {event.reason}" if event.reason else "")
        case ChildFinished():
            return f"sub-workflow {event.child_workflow_id} {event.status}"
        case TimerFired():
            return f"timer {event.purpose}"
        case ReconcileWorkflow():
            return "reconcile: re-drive " + (", ".join(event.task_ids) or "the workflow")
        case PauseWorkflow():
            return "pause"
        case ResumeWorkflow():
            return "resume"
        case RetryWorkflow():
            return "retry"
        case RestartWorkflow():
            return "restart" + (" with the latest definition" if event.use_latest_definitions else "")
        case SkipTask():
            return f"skip {event.task_ref_name}"
        case RerunWorkflow():
            return "rerun" + (f" from task {event.re_run_from_task_id}" if event.re_run_from_task_id else "")
        case _:
            assert_never(event)


def history_entry(before: Workflow | None, after: Workflow, cause: str, now: int, event_seq: int) -> HistoryEntry:
    """The transition from ``before`` to ``after``: the workflow's status and every task that is new or whose
    status, retry or delivery changed."""
    previous = {task.task_id: task for task in before.tasks} if before else {}
    changed = []
    for task in after.tasks:
        old = previous.get(task.task_id)
        if old is not None and (old.status, old.poll_count) == (task.status, task.poll_count):
            continue
        changed.append(
            TaskTransition(
                task_id=task.task_id,
                reference_task_name=task.reference_task_name,
                task_type=task.task_type,
                status=task.status,
                previous_status=old.status if old else None,
                retry_count=task.retry_count,
                poll_count=task.poll_count,
                worker_id=task.worker_id,
                reason_for_incompletion=task.reason_for_incompletion if task.status.is_terminal else None,
            )
        )
    ended = after.status.is_terminal and (before is None or before.status != after.status)
    return HistoryEntry(
        workflow_id=after.workflow_id,
        time=now,
        cause=cause,
        status=after.status,
        previous_status=before.status if before else None,
        tasks=changed,
        reason_for_incompletion=after.reason_for_incompletion if ended else None,
        run_count=after.run_count,
        event_seq=event_seq,
    )
