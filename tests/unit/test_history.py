"""A workflow's history entries, built from the record before and after an event (pure)."""

from __future__ import annotations

import msgspec

from partita.actors.history import describe, history_entry
from partita.schemas import (
    Task,
    TaskResult,
    TaskResultStatus,
    TaskStatus,
    TimerFired,
    TimerPurpose,
    Workflow,
    WorkflowStatus,
)


def test_a_history_entry_lists_new_and_changed_tasks_and_the_end_reason() -> None:
    def task(task_id: str, status: TaskStatus, polls: int = 0) -> Task:
        return Task(
            task_id=task_id, task_type="work", task_def_name="work", reference_task_name=f"r{task_id}",
            workflow_instance_id="wf", workflow_type="w", status=status, poll_count=polls, seq=int(task_id),
            reason_for_incompletion="boom",
        )  # fmt: skip

    before = Workflow(
        workflow_id="wf", workflow_name="w", workflow_version=1, status=WorkflowStatus.RUNNING,
        tasks=[task("1", TaskStatus.COMPLETED), task("2", TaskStatus.SCHEDULED), task("3", TaskStatus.SCHEDULED)],
    )  # fmt: skip
    after = msgspec.structs.replace(
        before,
        status=WorkflowStatus.FAILED,
        reason_for_incompletion="task r2 failed",
        tasks=[
            task("1", TaskStatus.COMPLETED),  # unchanged: not listed
            task("2", TaskStatus.FAILED),
            task("3", TaskStatus.SCHEDULED, polls=1),  # delivered again (IN_PROGRESS callback)
            task("4", TaskStatus.SCHEDULED),
        ],
    )
    result = TaskResult(workflow_instance_id="wf", task_id="2", status=TaskResultStatus.FAILED, worker_id="w-1")
    entry = history_entry(before, after, describe(result), 1234, 99)
    assert (entry.cause, entry.time, entry.event_seq) == ("result FAILED from w-1", 1234, 99)
    assert (entry.previous_status, entry.status) == (WorkflowStatus.RUNNING, WorkflowStatus.FAILED)
    assert entry.reason_for_incompletion == "task r2 failed"
    changes = [(t.task_id, t.previous_status, t.status, t.poll_count) for t in entry.tasks]
    assert changes == [
        ("2", TaskStatus.SCHEDULED, TaskStatus.FAILED, 0),
        ("3", TaskStatus.SCHEDULED, TaskStatus.SCHEDULED, 1),
        ("4", None, TaskStatus.SCHEDULED, 0),
    ]
    assert [t.reason_for_incompletion for t in entry.tasks] == ["boom", None, None]  # only for ended tasks
    started = history_entry(None, before, describe(TimerFired(workflow_id="wf", purpose=TimerPurpose.WAIT)), 1, 1)
    assert started.previous_status is None
    assert started.reason_for_incompletion is None
    assert len(started.tasks) == 3
    assert started.cause == "timer wait"
