"""Operator commands on a workflow (reference §6): pause, resume, retry, restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from msgspec import structs

from partita.schemas import (
    PauseWorkflow,
    RerunWorkflow,
    RestartRequested,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SkipTask,
    Task,
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
    event: PauseWorkflow | ResumeWorkflow | RetryWorkflow | RestartRequested | SkipTask | RerunWorkflow,
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
            st = begin(structs.replace(state, status=WorkflowStatus.RUNNING, last_retried_time=now), now)
            _arm_timeout(st)
            return _reconcile(st)
        case RetryWorkflow():
            return _retry(state, begin, now)
        case RestartRequested():
            return _restart(state, event, begin, now)
        case SkipTask():
            return _skip(state, event, begin, now)
        case RerunWorkflow():
            return _rerun(state, event, begin, now)
        case _:
            assert_never(event)


def _reconcile(st: DecisionState) -> Decision:
    from .decide import reconcile  # imported late: decide imports this module

    return reconcile(st)


def _arm_timeout(st: DecisionState) -> None:
    from .decide import workflow_timer  # imported late: decide imports this module

    workflow_timer(st)


def _reopened(state: Workflow) -> Workflow:
    """RUNNING again, as a new run (fresh ids from here on)."""
    return structs.replace(
        state,
        run_count=state.run_count + 1,
        status=WorkflowStatus.RUNNING,
        reason_for_incompletion=None,
        end_time=0,
        failed_reference_task_names=[],
        failed_task_names=[],
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

    st = begin(structs.replace(_reopened(state), last_retried_time=now), now)
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
    )
    st = begin(fresh, now)
    _arm_timeout(st)
    return _reconcile(st)


def _skip(state: Workflow, event: SkipTask, begin: Begin, now: int) -> Decision:
    """Only a RUNNING workflow, only a reference of its definition, only before that task is scheduled."""
    if state.status is not WorkflowStatus.RUNNING:
        return Decision(None, note=f"cannot skip a task of a {state.status} workflow")
    definition = state.workflow_definition
    known = {wt.task_reference_name: wt for wt in definition.iter_tasks()} if definition else {}
    workflow_task = known.get(event.task_ref_name)
    if workflow_task is None:
        return Decision(None, note=f"no task {event.task_ref_name!r} in the definition")
    if any(t.reference_task_name == event.task_ref_name for t in state.tasks):
        return Decision(None, note=f"task {event.task_ref_name!r} is already scheduled; only future tasks skip")
    from .decide import task_id_for  # imported late: decide imports this module

    st = begin(state, now)
    too_deep = _payload_problem(st, ("taskInput", event.task_input), ("taskOutput", event.task_output))
    if too_deep:
        return Decision(None, note=f"skip refused: {too_deep}")
    seq = st.next_seq()
    st.add(
        Task(
            task_id=task_id_for(state, seq),
            task_type=workflow_task.name if workflow_task.type == "SIMPLE" else workflow_task.type,
            task_def_name=workflow_task.name,
            reference_task_name=event.task_ref_name,
            workflow_instance_id=state.workflow_id,
            workflow_type=state.workflow_name,
            status=TaskStatus.SKIPPED,
            seq=seq,
            input_data=dict(event.task_input),
            output_data=dict(event.task_output),
            scheduled_time=now,
            start_time=now,
            end_time=now,
            update_time=now,
        )
    )
    return _reconcile(st)


def _payload_problem(st: DecisionState, *payloads: tuple[str, dict[str, object]]) -> str | None:
    """Why one of the named payloads an operator sent is nested too deeply (the command is then refused)."""
    for what, payload in payloads:
        too_deep = st.limits.payload_problem(what, payload)
        if too_deep:
            return too_deep
    return None


def _rerun(state: Workflow, event: RerunWorkflow, begin: Begin, now: int) -> Decision:
    """From the start (new input optional) like a restart; or from a task: later tasks are dropped and the task
    runs again with its id (a worker task is dispatched again; an operator is simply scheduled anew)."""
    if not state.status.is_terminal:
        return Decision(None, note=f"cannot rerun a {state.status} workflow (only ended ones)")
    too_deep = _payload_problem(
        begin(state, now), ("workflowInput", event.workflow_input or {}), ("taskInput", event.task_input or {})
    )
    if too_deep:
        return Decision(None, note=f"rerun refused: {too_deep}")
    if event.workflow_input is not None:
        state = structs.replace(state, input=dict(event.workflow_input))
    if event.re_run_from_task_id is None:
        from_start = RestartRequested(command=RestartWorkflow(workflow_id=state.workflow_id))
        return _restart(state, from_start, begin, now)
    reopened = _reopened(state)
    task = state.task_by_id(event.re_run_from_task_id)
    if task is None:
        return Decision(None, note=f"no task {event.re_run_from_task_id!r} in the workflow")
    from .decide import dispatch
    from .operators import NODE_TASK_TYPES, SYSTEM_TASK_TYPES

    kept = tuple(t for t in state.tasks if t.seq < task.seq)
    st = begin(structs.replace(reopened, tasks=kept), now)
    _arm_timeout(st)
    if task.task_type in SYSTEM_TASK_TYPES and task.task_type not in NODE_TASK_TYPES:
        return _reconcile(st)  # an operator or sync system task is simply scheduled again by the walk
    polls = task.poll_count + 1  # reports from the earlier run become stale
    again = structs.replace(
        task,
        status=TaskStatus.SCHEDULED,
        input_data=dict(event.task_input) if event.task_input is not None else task.input_data,
        output_data={},
        poll_count=polls,
        start_time=0,
        end_time=0,
        scheduled_time=now,
        reason_for_incompletion=None,
        retried=False,
    )
    st.add(again)
    st.effects.append(dispatch(st, again, f"{task.task_id}.rerun{polls}", 0))
    return _reconcile(st)
