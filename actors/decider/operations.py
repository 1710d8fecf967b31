"""Operator commands on a workflow (reference §6): pause, resume, retry, restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, assert_never

from msgspec import structs

from partita.schemas import (
    CommandOutcome,
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

from .state import Decision, DecisionState, no_such_workflow, refuse

Begin = Callable[[Workflow, int], DecisionState]
CONFLICT, INVALID = CommandOutcome.CONFLICT, CommandOutcome.INVALID
_RETRYABLE = (TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.TIMED_OUT, TaskStatus.CANCELED)
_REOPENED = ("JOIN", "EXCLUSIVE_JOIN", "DO_WHILE")  # CANCELED operators that go back to IN_PROGRESS on retry


def apply(
    state: Workflow | None,
    event: PauseWorkflow | ResumeWorkflow | RetryWorkflow | RestartRequested | SkipTask | RerunWorkflow,
    begin: Begin,
    now: int,
) -> Decision:
    if state is None:
        command = event.command if isinstance(event, RestartRequested) else event
        return no_such_workflow(command.workflow_id)
    match event:
        case PauseWorkflow():
            if state.status.is_terminal:
                return refuse(CONFLICT, f"Workflow {state.workflow_id} has ended, status cannot be updated.")
            if state.status is WorkflowStatus.PAUSED:
                return refuse(CommandOutcome.DONE, f"Workflow {state.workflow_id} is already PAUSED")
            st = begin(structs.replace(state, status=WorkflowStatus.PAUSED), now)
            return st.decision()
        case ResumeWorkflow():
            if state.status is not WorkflowStatus.PAUSED:
                return refuse(
                    CONFLICT,
                    f"The workflow {state.workflow_id} is not PAUSED so cannot resume. "
                    f"Current status is {state.status}",
                )
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
    if not state.status.is_terminal:
        return refuse(CONFLICT, f"Workflow is still running.  status={state.status}")
    if not state.tasks:
        return refuse(CONFLICT, "Workflow has not started yet")
    latest = {}
    for task in state.tasks:
        latest[task.reference_task_name] = task
    retryable = [task for task in latest.values() if task.status in _RETRYABLE]
    if not retryable and state.status is not WorkflowStatus.TIMED_OUT:
        return refuse(
            CONFLICT,
            "There are no retryable tasks! Use restart if you want to attempt entire workflow execution again.",
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
        return refuse(CONFLICT, f"Workflow: {state.workflow_id} is not in terminal state, unable to restart.")
    definition = event.definition or state.workflow_definition
    if definition is None:
        return refuse(CommandOutcome.NOT_FOUND, f"Unable to find definition for {state.workflow_id}")
    if state.status is WorkflowStatus.COMPLETED and not definition.restartable:
        return refuse(CommandOutcome.NOT_FOUND, f"Workflow: {state.workflow_id} is non-restartable")
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
    ref = event.task_ref_name
    if state.status is not WorkflowStatus.RUNNING:
        return refuse(
            CONFLICT,
            f"The workflow {state.workflow_id} is not running so the task referenced by {ref} cannot be skipped",
        )
    definition = state.workflow_definition
    known = {wt.task_reference_name: wt for wt in definition.iter_tasks()} if definition else {}
    workflow_task = known.get(ref)
    if workflow_task is None:
        return refuse(
            INVALID, f"The task referenced by {ref} does not exist in the WorkflowDefinition {state.workflow_name}"
        )
    if any(t.reference_task_name == ref for t in state.tasks):
        return refuse(CONFLICT, f"The task referenced {ref} has already been processed, cannot be skipped")
    from .decide import task_id_for  # imported late: decide imports this module

    st = begin(state, now)
    too_deep = _payload_problem(st, ("taskInput", event.task_input), ("taskOutput", event.task_output))
    if too_deep:
        return refuse(INVALID, f"skip refused: {too_deep}")
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
        return refuse(CONFLICT, f"Workflow: {state.workflow_id} is not in terminal state, unable to rerun.")
    too_deep = _payload_problem(
        begin(state, now), ("workflowInput", event.workflow_input or {}), ("taskInput", event.task_input or {})
    )
    if too_deep:
        return refuse(INVALID, f"rerun refused: {too_deep}")
    if event.workflow_input is not None:
        state = structs.replace(state, input=dict(event.workflow_input))
    if event.re_run_from_task_id is None:
        from_start = RestartRequested(command=RestartWorkflow(workflow_id=state.workflow_id))
        return _restart(state, from_start, begin, now)
    reopened = _reopened(state)
    task = state.task_by_id(event.re_run_from_task_id)
    if task is None:
        return refuse(INVALID, f"Task {event.re_run_from_task_id} not found")
    from .decide import dispatch
    from .operators import NODE_TASK_TYPES, SYSTEM_TASK_TYPES, execute

    kept = tuple(t for t in state.tasks if t.seq < task.seq)
    st = begin(structs.replace(reopened, tasks=kept), now)
    _arm_timeout(st)
    if task.task_type in SYSTEM_TASK_TYPES and task.task_type not in NODE_TASK_TYPES:
        if event.task_input is not None and task.task_type in _RERUN_WITH_INPUT:
            # Conductor's rerunWF: the same task, with the new input, executed again on the spot
            again = _scheduled_again(task, dict(event.task_input), task.poll_count, now)
            st.add(again)
            execute(st, st.workflow_task(again), again)
        return _reconcile(st)  # otherwise an operator or sync system task is simply scheduled again by the walk
    polls = task.poll_count + 1  # reports from the earlier run become stale
    again = _scheduled_again(task, dict(event.task_input) if event.task_input is not None else None, polls, now)
    st.add(again)
    st.effects.append(dispatch(st, again, f"{task.task_id}.rerun{polls}", 0))
    return _reconcile(st)


# Sync system tasks whose execution reads only their recorded input: a rerun with taskInput runs them on it.
_RERUN_WITH_INPUT: Final = frozenset({"INLINE", "LAMBDA", "JSON_JQ_TRANSFORM", "SET_VARIABLE", "TERMINATE", "NOOP"})


def _scheduled_again(task: Task, task_input: dict[str, object] | None, polls: int, now: int) -> Task:
    """``task`` as a rerun makes it again: same id, SCHEDULED, new input if given, nothing of its last run."""
    return structs.replace(
        task,
        status=TaskStatus.SCHEDULED,
        input_data=task_input if task_input is not None else task.input_data,
        output_data={},
        poll_count=polls,
        start_time=0,
        end_time=0,
        scheduled_time=now,
        reason_for_incompletion=None,
        retried=False,
    )
