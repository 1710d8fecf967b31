"""Operator commands on a workflow (reference §6): pause, resume, retry, restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from msgspec import structs

from partita.schemas import (
    PauseWorkflow,
    RestartRequested,
    ResumeWorkflow,
    RetryWorkflow,
    TaskStatus,
    Workflow,
    WorkflowStatus,
)

from .state import Decision, DecisionState

Begin = Callable[[Workflow, int], DecisionState]
_RETRYABLE = (TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.TIMED_OUT, TaskStatus.CANCELED)
_REOPENED = ("JOIN", "EXCLUSIVE_JOIN", "DO_WHILE")  # CANCELED operators that go back to IN_PROGRESS on retry


def apply(
    state: Workflow | None,
    event: PauseWorkflow | ResumeWorkflow | RetryWorkflow | RestartRequested,
    begin: Begin,
    now: int,
) -> Decision:
    if state is None:
        return Decision(None, note=f"{type(event).__name__} for an unknown workflow")
    match event:
        case PauseWorkflow():
            if state.status is not WorkflowStatus.RUNNING:
                return Decision(None, note=f"cannot pause a {state.status} workflow")
            st = begin(structs.replace(state, status=WorkflowStatus.PAUSED), now)
            return st.decision()
        case ResumeWorkflow():
            if state.status is not WorkflowStatus.PAUSED:
                return Decision(None, note=f"cannot resume a {state.status} workflow (only PAUSED)")
            st = begin(structs.replace(state, status=WorkflowStatus.RUNNING), now)
            _arm_timeout(st)
            return _reconcile(st)
        case RetryWorkflow():
            return _retry(state, begin, now)
        case RestartRequested():
            return _restart(state, event, begin, now)
        case _:
            assert_never(event)


def _reconcile(st: DecisionState) -> Decision:
    from .decide import reconcile  # imported late: decide imports this module

    return reconcile(st)


def _arm_timeout(st: DecisionState) -> None:
    from .decide import workflow_timer  # imported late: decide imports this module

    workflow_timer(st)


def _reopened(state: Workflow) -> Workflow:
    return structs.replace(
        state,
        status=WorkflowStatus.RUNNING,
        reason_for_incompletion=None,
        end_time=0,
        failed_reference_task_names=[],
        failed_task_id=None,
    )


def _retry(state: Workflow, begin: Begin, now: int) -> Decision:
    """Conductor's retry: the last failed, timed-out or canceled instance of each reference runs again as a new
    instance; CANCELED JOIN/DO_WHILE go back to IN_PROGRESS; the rest of the workflow picks up from there."""
    if not state.status.is_terminal or state.status is WorkflowStatus.COMPLETED:
        return Decision(None, note=f"cannot retry a {state.status} workflow (only FAILED, TIMED_OUT, TERMINATED)")
    latest = {}
    for task in state.tasks:
        latest[task.reference_task_name] = task
    retryable = [task for task in latest.values() if task.status in _RETRYABLE]
    if not retryable and state.status is not WorkflowStatus.TIMED_OUT:
        return Decision(
            None,
            note="There are no retryable tasks! Use restart if you want to attempt entire workflow execution again.",
        )
    from .decide import schedule  # imported late: decide imports this module

    st = begin(_reopened(state), now)
    _arm_timeout(st)
    for task in retryable:
        workflow_task = st.workflow_task(task)
        if workflow_task.type in _REOPENED and task.status is TaskStatus.CANCELED:
            st.replace(structs.replace(task, status=TaskStatus.IN_PROGRESS, end_time=0))
            continue
        retried = structs.replace(task, retried=True)
        st.replace(retried)
        schedule(st, workflow_task, iteration=task.iteration, retry_of=retried, delay_ms=0)
    return _reconcile(st)


def _restart(state: Workflow, event: RestartRequested, begin: Begin, now: int) -> Decision:
    """Conductor's restart: same id and input, all tasks cleared, from the first task again."""
    if not state.status.is_terminal:
        return Decision(None, note=f"cannot restart a {state.status} workflow (only ended ones)")
    definition = event.definition or state.workflow_definition
    if definition is None:
        return Decision(None, note="cannot restart: the workflow has no definition")
    if state.status is WorkflowStatus.COMPLETED and not definition.restartable:
        return Decision(None, note="cannot restart: the definition says restartable=false")
    fresh = structs.replace(
        _reopened(state),
        tasks=(),
        output={},
        variables=dict(definition.variables),
        workflow_definition=definition,
        workflow_version=definition.version,
        create_time=now,
        start_time=now,
        restart_count=state.restart_count + 1,
    )
    st = begin(fresh, now)
    _arm_timeout(st)
    return _reconcile(st)
