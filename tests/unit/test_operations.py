"""Operator commands in the pure decider: pause, resume, retry, restart (reference §6)."""

from __future__ import annotations

from partita.actors.decider import decide
from partita.schemas import (
    PauseWorkflow,
    RestartRequested,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    TaskResultStatus,
    TaskStatus,
    WorkflowStatus,
)

from .test_operators import NOW, complete, pending, run, simple, trail

SEQ = {"name": "seq", "tasks": [simple("a"), simple("b", retryCount=0)]}


def test_pause_stops_scheduling_and_resume_schedules_what_is_due() -> None:
    workflow = run(SEQ)
    paused = decide(workflow, PauseWorkflow(workflow_id="wf"), NOW)
    assert paused.workflow is not None
    assert paused.workflow.status is WorkflowStatus.PAUSED
    still = complete(paused.workflow, "a")  # the running task may finish
    assert still.status is WorkflowStatus.PAUSED
    assert pending(still) == []  # but nothing new is scheduled
    resumed = decide(still, ResumeWorkflow(workflow_id="wf"), NOW + 2)
    assert resumed.workflow is not None
    assert resumed.workflow.status is WorkflowStatus.RUNNING
    assert pending(resumed.workflow) == ["b"]
    assert decide(resumed.workflow, ResumeWorkflow(workflow_id="wf"), NOW).workflow is None  # not PAUSED


def test_retry_runs_the_failed_task_again_as_a_new_instance() -> None:
    failed = complete(complete(run(SEQ), "a"), "b", status=TaskResultStatus.FAILED)
    assert failed.status is WorkflowStatus.FAILED
    retried = decide(failed, RetryWorkflow(workflow_id="wf"), NOW + 5)
    assert retried.workflow is not None
    assert retried.workflow.status is WorkflowStatus.RUNNING
    assert retried.workflow.reason_for_incompletion is None
    assert trail(retried.workflow) == [("a", "COMPLETED"), ("b", "FAILED"), ("b", "SCHEDULED")]
    assert retried.workflow.tasks[-1].retried_task_id == failed.tasks[-1].task_id
    assert complete(retried.workflow, "b").status is WorkflowStatus.COMPLETED
    done = complete(retried.workflow, "b")
    nothing = decide(done, RetryWorkflow(workflow_id="wf"), NOW)
    assert nothing.workflow is None  # a COMPLETED workflow cannot be retried


def test_restart_runs_everything_again_with_fresh_task_ids() -> None:
    done = complete(complete(run(SEQ), "a"), "b")
    restarted = decide(done, RestartRequested(command=RestartWorkflow(workflow_id="wf")), NOW + 9)
    workflow = restarted.workflow
    assert workflow is not None
    assert workflow.status is WorkflowStatus.RUNNING
    assert trail(workflow) == [("a", "SCHEDULED")]
    assert workflow.tasks[0].task_id not in {t.task_id for t in done.tasks}  # dedupe must not drop it
    assert workflow.restart_count == 1
    running = decide(workflow, RestartRequested(command=RestartWorkflow(workflow_id="wf")), NOW)
    assert running.workflow is None  # only ended workflows restart
    assert workflow.tasks[0].status is TaskStatus.SCHEDULED
