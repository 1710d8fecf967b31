"""Timeouts as durable timers, in the pure decider (reference §1 "Timeouts")."""

from __future__ import annotations

import msgspec

from partita.actors.decider import decide, snapshot_definition
from partita.schemas import (
    DispatchTask,
    ScheduleTimer,
    StartWorkflow,
    TaskDef,
    TaskResult,
    TaskResultReceived,
    TaskResultStatus,
    TaskStarted,
    TaskStartedReceived,
    TaskStatus,
    TaskTimeoutPolicy,
    TimerFired,
    TimerPurpose,
    Workflow,
    WorkflowDef,
    WorkflowStartRequested,
    WorkflowStatus,
)

NOW = 1_700_000_000_000


def begin(task_def: TaskDef, **workflow_fields: object) -> tuple[Workflow, list[object]]:
    raw = {"name": "t", "tasks": [{"name": "work", "taskReferenceName": "w"}], **workflow_fields}
    snapshot = snapshot_definition(msgspec.convert(raw, WorkflowDef), {"work": task_def})
    decision = decide(
        None, WorkflowStartRequested(request=StartWorkflow(workflow_id="wf", name="t"), definition=snapshot), NOW
    )
    assert decision.workflow is not None
    return decision.workflow, list(decision.effects)


def started(workflow: Workflow, at: int) -> tuple[Workflow, list[object]]:
    task = workflow.tasks[0]
    report = TaskStarted(workflow_instance_id="wf", task_id=task.task_id, worker_id="w1", poll_count=0, start_time=at)
    decision = decide(workflow, TaskStartedReceived(started=report, subject_task_type="work"), at)
    assert decision.workflow is not None
    return decision.workflow, list(decision.effects)


def fire(workflow: Workflow, purpose: TimerPurpose, at: int) -> Workflow | None:
    event = TimerFired(workflow_id="wf", task_id=workflow.tasks[0].task_id, purpose=purpose)
    return decide(workflow, event, at).workflow


def test_a_task_with_a_timeout_asks_to_report_its_start_and_its_clock_starts_then() -> None:
    workflow, effects = begin(TaskDef(name="work", timeout_seconds=10, response_timeout_seconds=5))
    (dispatch,) = effects
    assert isinstance(dispatch, DispatchTask)
    assert dispatch.report_start
    running, timers = started(workflow, NOW + 3000)
    assert running.tasks[0].status is TaskStatus.IN_PROGRESS
    assert running.tasks[0].start_time == NOW + 3000
    (timer,) = timers
    assert isinstance(timer, ScheduleTimer)
    assert (timer.at, timer.event.purpose) == (NOW + 13_000, TimerPurpose.TASK_TIMEOUT)


def test_timeout_policies_time_out_the_workflow_retry_or_only_alert() -> None:
    for policy, expected in (("TIME_OUT_WF", WorkflowStatus.TIMED_OUT), ("RETRY", WorkflowStatus.RUNNING)):
        task_def = msgspec.convert(
            {"name": "work", "timeoutSeconds": 10, "responseTimeoutSeconds": 5, "timeoutPolicy": policy,
             "retryCount": 1, "retryDelaySeconds": 0}, TaskDef)  # fmt: skip
        workflow, _ = begin(task_def)
        running, _ = started(workflow, NOW)
        after = fire(running, TimerPurpose.TASK_TIMEOUT, NOW + 10_000)
        assert after is not None
        assert after.status is expected, policy
        assert after.tasks[0].status is TaskStatus.TIMED_OUT
        assert "timed out after 10 seconds (timeoutSeconds)" in (after.tasks[0].reason_for_incompletion or "")
    if expected is WorkflowStatus.RUNNING:
        assert [t.status for t in after.tasks] == [TaskStatus.TIMED_OUT, TaskStatus.SCHEDULED]  # retried
    alert = msgspec.convert({"name": "work", "timeoutSeconds": 10, "responseTimeoutSeconds": 5,
                             "timeoutPolicy": "ALERT_ONLY"}, TaskDef)  # fmt: skip
    workflow, _ = begin(alert)
    running, _ = started(workflow, NOW)
    assert fire(running, TimerPurpose.TASK_TIMEOUT, NOW + 10_000) is None  # logged, nothing changes


def test_a_poll_timeout_fires_only_for_a_task_no_worker_started() -> None:
    workflow, effects = begin(TaskDef(name="work", poll_timeout_seconds=30, retry_count=0))
    poll = [e for e in effects if isinstance(e, ScheduleTimer)]
    assert [(t.at, t.event.purpose) for t in poll] == [(NOW + 30_000, TimerPurpose.POLL_TIMEOUT)]
    timed_out = fire(workflow, TimerPurpose.POLL_TIMEOUT, NOW + 30_000)
    assert timed_out is not None
    assert timed_out.status is WorkflowStatus.TIMED_OUT  # TIME_OUT_WF is the TaskDef default
    running, _ = started(workflow, NOW + 1000)
    assert fire(running, TimerPurpose.POLL_TIMEOUT, NOW + 30_000) is None


def test_the_workflow_timeout_is_a_timer_armed_at_start() -> None:
    workflow, effects = begin(TaskDef(name="work"), timeoutSeconds=60, timeoutPolicy="TIME_OUT_WF")
    timers = [e for e in effects if isinstance(e, ScheduleTimer)]
    assert [(t.at, t.event.purpose) for t in timers] == [(NOW + 60_000, TimerPurpose.WORKFLOW_TIMEOUT)]
    decision = decide(workflow, timers[0].event, NOW + 60_000)
    assert decision.workflow is not None
    assert decision.workflow.status is WorkflowStatus.TIMED_OUT
    assert decision.workflow.tasks[0].status is TaskStatus.CANCELED
    lenient, effects = begin(TaskDef(name="work"), timeoutSeconds=60)  # ALERT_ONLY is the code default
    timer = next(e for e in effects if isinstance(e, ScheduleTimer))
    assert decide(lenient, timer.event, NOW + 60_000).workflow is None


def test_a_failure_workflow_starts_with_conductors_input_when_the_engine_fails_a_workflow() -> None:
    from partita.schemas import StartChild, TaskResult, TaskResultReceived, TaskResultStatus, TerminateWorkflow

    workflow, _ = begin(TaskDef(name="work", retry_count=0), failureWorkflow="cleanup", inputParameters=["x"])
    task = workflow.tasks[0]
    result = TaskResult(workflow_instance_id="wf", task_id=task.task_id, status=TaskResultStatus.FAILED,
                        reason_for_incompletion="boom")  # fmt: skip
    decision = decide(workflow, TaskResultReceived(result=result, subject_task_type="work"), NOW + 5)
    assert decision.workflow is not None
    assert decision.workflow.status is WorkflowStatus.FAILED
    (start,) = [e for e in decision.effects if isinstance(e, StartChild)]
    assert start.request.name == "cleanup"
    assert start.request.input["workflowId"] == "wf"
    assert start.request.input["failureStatus"] == "FAILED"
    assert start.request.input["failureTaskId"] == task.task_id
    assert "boom" in str(start.request.input["reason"])
    assert start.request.input["failedWorkflow"]["workflowId"] == "wf"  # type: ignore[index]
    assert decision.workflow.output["conductor.failure_workflow"] == start.request.workflow_id
    terminated = decide(workflow, TerminateWorkflow(workflow_id="wf", reason="operator"), NOW + 5)
    assert not [e for e in terminated.effects if isinstance(e, StartChild)]  # the terminate API does not


def test_total_timeout_covers_every_attempt_and_blocks_further_retries() -> None:
    from partita.schemas import TaskResult, TaskResultReceived, TaskResultStatus

    task_def = TaskDef(name="work", total_timeout_seconds=60, retry_count=5, retry_delay_seconds=0,
                       timeout_policy="TIME_OUT_WF")  # type: ignore[arg-type]  # fmt: skip
    workflow, effects = begin(task_def)
    (total,) = [e for e in effects if isinstance(e, ScheduleTimer)]
    assert (total.at, total.event.purpose) == (NOW + 60_000, TimerPurpose.TOTAL_TIMEOUT)

    def fail(current: Workflow, at: int) -> Workflow:
        task = current.tasks[-1]
        result = TaskResult(workflow_instance_id="wf", task_id=task.task_id, status=TaskResultStatus.FAILED)
        decision = decide(current, TaskResultReceived(result=result, subject_task_type="work"), at)
        assert decision.workflow is not None
        return decision.workflow

    retried = fail(workflow, NOW + 10_000)
    assert [t.status for t in retried.tasks] == [TaskStatus.FAILED, TaskStatus.SCHEDULED]
    assert retried.tasks[-1].first_scheduled_time == NOW
    over = fail(retried, NOW + 61_000)  # past the budget: no more retries
    assert over.status is WorkflowStatus.FAILED
    timed_out = decide(retried, total.event, NOW + 60_000).workflow  # the timer hits the newest attempt
    assert timed_out is not None
    assert timed_out.status is WorkflowStatus.TIMED_OUT
    assert timed_out.tasks[-1].status is TaskStatus.TIMED_OUT
    assert "totalTimeoutSeconds" in (timed_out.tasks[-1].reason_for_incompletion or "")


def timed_out_report(workflow: Workflow, at: int) -> Workflow | None:
    task = workflow.tasks[-1]
    result = TaskResult(
        workflow_instance_id="wf",
        task_id=task.task_id,
        status=TaskResultStatus.TIMED_OUT,
        reason_for_incompletion="Task timed out after 5 seconds (responseTimeoutSeconds)",
        poll_count=task.poll_count,
    )
    return decide(workflow, TaskResultReceived(result=result, subject_task_type="work"), at).workflow


def test_a_response_timeout_retries_the_task_whatever_its_timeout_policy() -> None:
    for policy in TaskTimeoutPolicy:
        task_def = TaskDef(
            name="work", response_timeout_seconds=5, retry_count=1, retry_delay_seconds=0, timeout_policy=policy
        )
        workflow, _ = begin(task_def)
        after = timed_out_report(workflow, NOW + 6000)
        assert after is not None
        assert after.status is WorkflowStatus.RUNNING, policy
        assert [(t.status, t.retry_count) for t in after.tasks] == [
            (TaskStatus.TIMED_OUT, 0),
            (TaskStatus.SCHEDULED, 1),
        ]
        assert "responseTimeoutSeconds" in (after.tasks[0].reason_for_incompletion or "")
        # Out of retries, the workflow ends TIMED_OUT (Conductor: the task's status decides the workflow's).
        final = timed_out_report(after, NOW + 12_000)
        assert final is not None
        assert final.status is WorkflowStatus.TIMED_OUT, policy


def test_a_response_timeout_keeps_the_worker_that_went_silent() -> None:
    workflow, _ = begin(TaskDef(name="work", response_timeout_seconds=5, retry_count=1, retry_delay_seconds=0))
    running, _ = started(workflow, NOW + 1000)  # taken by w1
    task = running.tasks[0]
    report = TaskResult(
        workflow_instance_id="wf", task_id=task.task_id, status=TaskResultStatus.TIMED_OUT, worker_id="w2",
        poll_count=task.poll_count,
    )  # fmt: skip
    after = decide(running, TaskResultReceived(result=report, subject_task_type="work"), NOW + 7000).workflow
    assert after is not None
    assert (after.tasks[0].status, after.tasks[0].worker_id) == (TaskStatus.TIMED_OUT, "w1")
