"""The pure workflow decider: ``decide(state, event, now) -> Decision``.

No I/O, no clock reads, no randomness: ids derive from the workflow id and the task's sequence number, scripts
see a frozen clock, so deciding the same event twice yields the same result. The actor shell
(``workflow_actor.py``) persists the decision and performs its effects.

How a decision is made: the event updates the task it concerns (a worker result, a start), then the decider
*reconciles* the workflow with its definition: it walks the definition tree from the top, and for each
WorkflowTask either finds its latest task instance or schedules it. Operators are handled in
:mod:`.operators`: SWITCH/DECISION walk their selected case, FORK_JOIN walks every branch, JOIN waits for its
``joinOn`` tasks, DO_WHILE walks its body once per iteration. Sync system tasks (SWITCH, FORK, JOIN,
SET_VARIABLE, TERMINATE, NOOP, INLINE, LAMBDA, JSON_JQ_TRANSFORM, ...) complete inside the same decision;
worker tasks are dispatched as effects. Walking the whole tree on every event is what makes the decider
idempotent: whatever happened before, it schedules exactly what is missing.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import assert_never

from msgspec import structs

from partita.schemas import (
    CancelDispatch,
    ChildFinished,
    CommandOutcome,
    DeciderEvent,
    DispatchTask,
    Limits,
    PauseWorkflow,
    ReconcileWorkflow,
    RerunWorkflow,
    RestartRequested,
    ResumeWorkflow,
    RetryLogic,
    RetryWorkflow,
    ScheduleTimer,
    SendCommand,
    SkipTask,
    StartChild,
    StartWorkflow,
    Task,
    TaskDef,
    TaskMessage,
    TaskResultReceived,
    TaskResultStatus,
    TaskStartedReceived,
    TaskStatus,
    TaskTimeoutPolicy,
    TerminateWorkflow,
    TimerFired,
    TimerPurpose,
    UpdateTask,
    Workflow,
    WorkflowDef,
    WorkflowFinished,
    WorkflowStartRequested,
    WorkflowStatus,
    WorkflowTask,
    WorkflowTimeoutPolicy,
    configured_limits,
    unsupported_problems,
)
from partita.schemas.limits import name_problem
from partita.schemas.messages import TERMINAL_RESULT_STATUSES
from partita.schemas.validation import is_user_defined

from . import operations, operators
from .expressions import resolve
from .liveness import MoverKind, mover_kind
from .state import (
    Decision,
    DecisionState,
    DomainActive,
    loop_ref,
    no_active_domains,
    no_such_workflow,
    refuse,
    workflow_id_from,
)
from .waits import wait_deadline

__all__ = [
    "Decision",
    "decide",
    "domain_for",
    "fail_workflow",
    "retry_delay_ms",
    "snapshot_definition",
    "task_to_domain_problems",
]

_INT_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class _Context:
    """What a decision may know of the world besides the event: all passed in, never read."""

    domain_active: DomainActive
    environment: Mapping[str, str]
    limits: Limits
    id_key: bytes
    task_defs: Mapping[str, TaskDef]

    def begin(self, workflow: Workflow, now: int) -> DecisionState:
        return DecisionState(
            workflow, now, self.domain_active, self.environment, self.limits, self.id_key, self.task_defs
        )


NO_DOMAIN = "NO_DOMAIN"


def decide(
    state: Workflow | None,
    event: DeciderEvent,
    now: int,
    *,
    domain_active: DomainActive = no_active_domains,
    environment: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    id_key: bytes = b"",
    task_defs: Mapping[str, TaskDef] | None = None,
) -> Decision:
    """``domain_active(taskType, domain)`` says whether a worker of that domain announced itself recently (for
    comma-separated taskToDomain fallback lists); ``environment`` holds the allow-listed values expressions
    may read (``${workflow.env.NAME}``); ``limits`` what a workflow may grow to (default: this process's
    :func:`~partita.schemas.configured_limits`, read once at import, never here); ``id_key`` the nodes' key
    that seals the ids of the workflows a decision starts (:func:`.state.workflow_id_from`); ``task_defs`` the
    registered TaskDefs, for the tasks named only at run time (DYNAMIC, dynamically forked)."""
    active = _Context(domain_active, environment or {}, limits or configured_limits(), id_key, task_defs or {})
    match event:
        case WorkflowStartRequested():
            return _start(state, event, now, active)
        case TaskResultReceived():
            return _task_result(state, event, now, active)
        case TaskStartedReceived():
            return _task_started(state, event, now, active)
        case UpdateTask():
            return _update_task(state, event, now, active)
        case TimerFired():
            return _timer_fired(state, event, now, active)
        case TerminateWorkflow():
            return _terminate(state, event, now, active)
        case ChildFinished():
            return _child_finished(state, event, now, active)
        case ReconcileWorkflow():
            return _repair(state, event, now, active)
        case PauseWorkflow() | ResumeWorkflow() | RetryWorkflow() | RestartRequested() | SkipTask() | RerunWorkflow():
            return operations.apply(state, event, active.begin, now)
        case _:
            assert_never(event)


def fail_workflow(
    state: Workflow, reason: str, now: int, *, limits: Limits | None = None, id_key: bytes = b""
) -> Decision:
    """End ``state`` FAILED with ``reason``, as the engine ends a workflow it cannot go on with: pending tasks
    CANCELED (sub-workflows terminated), its parent told, its failure workflow started. Nothing is walked, so
    this works when deciding the workflow's events does not (a poison event)."""
    if state.status.is_terminal:
        return Decision(None, note=f"already {state.status}")
    st = _Context(no_active_domains, {}, limits or configured_limits(), id_key, {}).begin(state, now)
    st.end(WorkflowStatus.FAILED, reason)
    return _reconcile(st)


# --- definitions -------------------------------------------------------------------------------------


def snapshot_definition(definition: WorkflowDef, task_defs: Mapping[str, TaskDef]) -> WorkflowDef:
    """The definition a workflow runs with: every worker task carries its TaskDef (registered, inline, or
    Conductor's ad-hoc defaults), so later registrations do not change a running workflow."""

    def attach(task: WorkflowTask) -> WorkflowTask:
        changes: dict[str, object] = {}
        if task.task_definition is None and task.type == "SIMPLE":
            changes["task_definition"] = task_defs.get(task.name) or TaskDef(name=task.name)
        elif task.task_definition is None and task.name in task_defs:  # Conductor attaches it to every type
            changes["task_definition"] = task_defs[task.name]
        if task.decision_cases:
            changes["decision_cases"] = {k: [attach(t) for t in v] for k, v in task.decision_cases.items()}
        if task.default_case:
            changes["default_case"] = [attach(t) for t in task.default_case]
        if task.fork_tasks:
            changes["fork_tasks"] = [[attach(t) for t in branch] for branch in task.fork_tasks]
        if task.loop_over:
            changes["loop_over"] = [attach(t) for t in task.loop_over]
        return structs.replace(task, **changes) if changes else task

    return structs.replace(definition, tasks=[attach(t) for t in definition.tasks])


def task_to_domain_problems(task_to_domain: Mapping[str, str]) -> list[str]:
    problems = []
    for task_type, domains in task_to_domain.items():
        if not all(part.strip() for part in domains.split(",")):
            problems.append(f"taskToDomain[{task_type!r}] = {domains!r}: a domain must not be empty")
    return problems


def domain_for(
    task_to_domain: Mapping[str, str], task_type: str, domain_active: DomainActive = no_active_domains
) -> str | None:
    """The domain a worker task is routed to (reference §6): its own entry, else ``"*"``, else none. In a
    comma-separated list the first domain with an active worker wins; if none is active, the last entry
    (``NO_DOMAIN`` meaning no domain)."""
    entry = task_to_domain.get(task_type, task_to_domain.get("*"))
    if entry is None:
        return None
    domains = [part.strip() for part in entry.split(",")]
    for domain in domains[:-1]:
        if domain != NO_DOMAIN and domain_active(task_type, domain):
            return domain
    last = domains[-1]
    return None if last == NO_DOMAIN else last


# --- start -------------------------------------------------------------------------------------------


def _start(state: Workflow | None, event: WorkflowStartRequested, now: int, active: _Context) -> Decision:
    if state is not None:
        return Decision(None, note="duplicate start: the workflow already exists")
    request = event.request
    definition = event.definition
    problems: list[str] = []
    if event.problem:
        problems.append(event.problem)
    if definition is not None:
        problems.extend(unsupported_problems(definition))
    problems.extend(task_to_domain_problems(request.task_to_domain))
    workflow_input = dict(request.input)
    if definition is not None:
        for key, value in definition.input_template.items():
            workflow_input.setdefault(key, value)
        # A registered definition passed these at registration, but perhaps under other limits.
        too_many = active.limits.definition_tasks_problem(len(definition.iter_tasks()))
        if too_many:
            problems.append(too_many)
    too_deep = active.limits.payload_problem("workflow input", workflow_input)
    if too_deep:  # recorded FAILED without it: stored, it could be too deep to encode or read back
        problems.append(f"{too_deep}; the input was not kept")
        workflow_input = {}
    workflow = Workflow(
        workflow_id=request.workflow_id,
        workflow_name=request.name,
        workflow_version=definition.version if definition else (request.version or 0),
        status=WorkflowStatus.RUNNING,
        workflow_definition=definition,
        input=workflow_input,
        variables=dict(definition.variables) if definition else {},
        correlation_id=request.correlation_id,
        task_to_domain=dict(request.task_to_domain),
        priority=request.priority,
        idempotency_key=request.idempotency_key,
        created_by=request.created_by,
        parent_workflow_id=request.parent_workflow_id,
        parent_workflow_task_id=request.parent_workflow_task_id,
        create_time=now,
        start_time=now,
        update_time=now,
    )
    st = active.begin(workflow, now)
    if problems or definition is None:
        reason = "; ".join(problems) or f"workflow definition {request.name!r} not found"
        st.end(WorkflowStatus.FAILED, reason)
    else:
        workflow_timer(st)
    return _reconcile(st)


# --- task results ------------------------------------------------------------------------------------


def _task_result(state: Workflow | None, event: TaskResultReceived, now: int, active: _Context) -> Decision:
    result = event.result
    if state is None:
        return Decision(None, note="result for an unknown workflow")
    if state.status.is_terminal:
        return Decision(None, note=f"result for a {state.status} workflow")
    task = state.task_by_id(result.task_id)
    if task is None:
        return Decision(None, note="result for an unknown task")
    if event.subject_task_type != task.task_type:
        mismatch = f"result published for type {event.subject_task_type!r}, task is {task.task_type!r}"
        return Decision(None, note=mismatch, rejected=True)
    if event.subject_names_domain and event.subject_domain != task.domain:
        mismatch = f"result published for domain {event.subject_domain!r}, task is in {task.domain!r}"
        return Decision(None, note=mismatch, rejected=True)
    if task.status.is_terminal:
        return Decision(None, note=f"late or duplicate result: task is already {task.status}")
    if result.poll_count is not None and result.poll_count != task.poll_count:
        stale = f"stale result: it answers delivery {result.poll_count}, the task is at {task.poll_count}"
        return Decision(None, note=stale, rejected=True)

    st = active.begin(state, now)
    _apply_report(
        st,
        task,
        result.status,
        result.output_data,
        reason=result.reason_for_incompletion,
        worker_id=result.worker_id,
        callback_after=result.callback_after_seconds,
        start_time=result.start_time,
        end_time=result.end_time,
    )
    return _reconcile(st)


def _task_started(state: Workflow | None, event: TaskStartedReceived, now: int, active: _Context) -> Decision:
    """A worker began the task: IN_PROGRESS, and its ``timeoutSeconds`` clock starts (a durable timer)."""
    started = event.started
    task = state.task_by_id(started.task_id) if state is not None else None
    if state is None or task is None or state.status.is_terminal:
        return Decision(None, note="start report for an unknown task or an ended workflow")
    if event.subject_task_type != task.task_type:
        mismatch = f"start report published for type {event.subject_task_type!r}, task is {task.task_type!r}"
        return Decision(None, note=mismatch, rejected=True)
    if event.subject_names_domain and event.subject_domain != task.domain:
        mismatch = f"start report published for domain {event.subject_domain!r}, task is in {task.domain!r}"
        return Decision(None, note=mismatch, rejected=True)
    if task.status is not TaskStatus.SCHEDULED:
        return Decision(None, note=f"start report for a task that is {task.status}")
    if started.poll_count is not None and started.poll_count != task.poll_count:
        stale = f"stale start report: it answers delivery {started.poll_count}, the task is at {task.poll_count}"
        return Decision(None, note=stale, rejected=True)
    st = active.begin(state, now)
    start_time = started.start_time or now
    running = structs.replace(
        task, status=TaskStatus.IN_PROGRESS, start_time=task.start_time or start_time, worker_id=started.worker_id
    )
    st.replace(running)
    task_def = st.workflow_task(task).task_definition
    if task_def is not None and task_def.timeout_seconds > 0 and not task.start_time:  # from the first start
        fired = TimerFired(
            workflow_id=state.workflow_id, task_id=task.task_id, purpose=TimerPurpose.TASK_TIMEOUT,
            generation=task.poll_count,
        )  # fmt: skip
        at = start_time + task_def.timeout_seconds * 1000
        st.effects.append(ScheduleTimer(timer_id=f"{task.task_id}.timeout", at=at, event=fired))
    return st.decision()


def _update_task(state: Workflow | None, event: UpdateTask, now: int, active: _Context) -> Decision:
    """An update by reference name from outside (WAIT, HUMAN, or any pending task)."""
    if state is None:
        return no_such_workflow(event.workflow_id)
    pending = [t for t in state.tasks if t.reference_task_name == event.task_ref_name and not t.status.is_terminal]
    if state.status.is_terminal or not pending:  # Conductor's TaskResource.updateTask by reference name
        return refuse(
            CommandOutcome.NOT_FOUND,
            f"Found no running task {event.task_ref_name} of workflow {state.workflow_id} to update",
        )
    st = active.begin(state, now)
    _apply_report(
        st,
        pending[-1],
        event.status,
        event.output_data,
        reason=event.reason_for_incompletion,
        worker_id=event.worker_id,
    )
    return _reconcile(st)


def _terminate(state: Workflow | None, event: TerminateWorkflow, now: int, active: _Context) -> Decision:
    """Conductor's terminate: TERMINATED, pending tasks CANCELED (sub-workflows terminated with them)."""
    if state is None:
        return no_such_workflow(event.workflow_id)
    if state.status is WorkflowStatus.COMPLETED:
        return refuse(CommandOutcome.CONFLICT, "Cannot terminate a COMPLETED workflow.")
    if state.status is WorkflowStatus.TERMINATED:  # Conductor: nothing more to do, and no error
        return refuse(CommandOutcome.DONE, f"Workflow {state.workflow_id} is already TERMINATED")
    if state.status.is_terminal:
        # Conductor would re-terminate a FAILED or TIMED_OUT workflow (its status becomes TERMINATED); Partita
        # keeps how it ended (docs/conductor-differences.md).
        return refuse(CommandOutcome.CONFLICT, f"Workflow {state.workflow_id} has already ended: {state.status}")
    st = active.begin(state, now)
    st.end(WorkflowStatus.TERMINATED, event.reason or "terminated")
    st.by_operator = True  # Conductor's terminate API does not start the failure workflow
    return _reconcile(st)


_MIRRORED = {
    WorkflowStatus.COMPLETED: TaskStatus.COMPLETED,
    WorkflowStatus.FAILED: TaskStatus.FAILED,
    WorkflowStatus.TIMED_OUT: TaskStatus.TIMED_OUT,
    WorkflowStatus.TERMINATED: TaskStatus.CANCELED,
}


def _child_finished(state: Workflow | None, event: ChildFinished, now: int, active: _Context) -> Decision:
    """A SUB_WORKFLOW task mirrors its child: COMPLETED, FAILED, TIMED_OUT, TERMINATED → CANCELED."""
    task = state.task_by_id(event.task_id) if state is not None else None
    if state is None or task is None or state.status.is_terminal:
        return Decision(None, note="child result for an unknown task or an ended workflow")
    if task.status.is_terminal or task.sub_workflow_id != event.child_workflow_id:
        return Decision(None, note=f"child result for a task that is {task.status} or waits for another child")
    status = _MIRRORED.get(event.status)
    if status is None:
        return Decision(None, note=f"child reported non-terminal status {event.status}")
    st = active.begin(state, now)
    output, reason = event.output, event.reason_for_incompletion
    too_deep = st.limits.payload_problem("sub-workflow output", output)
    if too_deep:  # as a worker's output that is too deep: the same child would end the same way again
        status, output, reason = TaskStatus.FAILED_WITH_TERMINAL_ERROR, {}, too_deep
    finished = structs.replace(
        task,
        status=status,
        output_data={**task.output_data, **output},
        end_time=now,
        reason_for_incompletion=reason,
    )
    st.replace(finished)
    if not status.is_successful:
        task_failed(st, finished)
    return _reconcile(st)


def _repair(state: Workflow | None, event: ReconcileWorkflow, now: int, active: _Context) -> Decision:
    """The reconciler found this workflow stranded: publish again what should move each named task (a fresh
    dispatch id, a re-armed timer, the child's start), then walk the definition (a decision that left
    nothing behind is re-made). Ignored if the workflow has moved since the audit: then it was not stranded."""
    if state is None or state.status is not WorkflowStatus.RUNNING:
        return Decision(None, note="reconcile for an unknown, paused or ended workflow")
    if state.update_time != event.observed_update_time:
        return Decision(None, note="reconcile for a workflow that has moved since the audit")
    st = active.begin(state, now)
    for task_id in event.task_ids:
        task = state.task_by_id(task_id)
        kind = mover_kind(task) if task is not None and not task.status.is_terminal else None
        if task is None or kind is None:
            continue
        st.replace(task)  # its update time says when it was re-driven
        if kind is MoverKind.TASK_MESSAGE:
            st.effects.append(dispatch(st, task, f"{task.task_id}.{task.poll_count}.repair{now}", 0))
        elif kind is MoverKind.TIMER:
            at = wait_deadline(task.input_data, task.start_time)
            assert at is not None  # (mover_kind says it has one)
            fired = TimerFired(workflow_id=state.workflow_id, task_id=task.task_id)
            st.effects.append(ScheduleTimer(timer_id=task.task_id, at=at, event=fired, repair=now))
        else:  # the child never started (its start lost): start it again, under the same id
            operators.execute(st, st.workflow_task(task), task)
    return _reconcile(st)


def _timer_fired(state: Workflow | None, event: TimerFired, now: int, active: _Context) -> Decision:
    if state is None or state.status.is_terminal:
        return Decision(None, note="timer for an unknown or ended workflow")
    if event.purpose is TimerPurpose.WORKFLOW_TIMEOUT:
        return _workflow_timed_out(state, event, now, active)
    task = state.task_by_id(event.task_id)
    if task is not None and event.purpose is TimerPurpose.TOTAL_TIMEOUT:
        # The budget covers every attempt: look at the newest instance of the same reference.
        task = next((t for t in reversed(state.tasks) if t.reference_task_name == task.reference_task_name), task)
        event = structs.replace(event, generation=task.poll_count)
    if task is None or task.status.is_terminal:
        return Decision(None, note="timer for an unknown or finished task")
    st = active.begin(state, now)
    if event.purpose is TimerPurpose.WAIT:
        if task.status is not TaskStatus.IN_PROGRESS or task.task_type != "WAIT":
            return Decision(None, note=f"timer for a task that is {task.status}")
        _apply_report(st, task, TaskResultStatus.COMPLETED, {})
        return _reconcile(st)
    if event.purpose is TimerPurpose.POLL_TIMEOUT and task.poll_count != event.generation:
        return Decision(None, note="poll timeout for an older delivery of the task")
    if event.purpose is TimerPurpose.POLL_TIMEOUT and task.status is not TaskStatus.SCHEDULED:
        return Decision(None, note="poll timeout for a task that started")
    task_def = st.workflow_task(task).task_definition or TaskDef(name=task.task_def_name)
    which, seconds = {
        TimerPurpose.TASK_TIMEOUT: ("timeoutSeconds", task_def.timeout_seconds),
        TimerPurpose.POLL_TIMEOUT: ("pollTimeoutSeconds", task_def.poll_timeout_seconds),
        TimerPurpose.TOTAL_TIMEOUT: ("totalTimeoutSeconds", task_def.total_timeout_seconds),
    }[event.purpose]
    if task_def.timeout_policy is TaskTimeoutPolicy.ALERT_ONLY:
        return Decision(None, note=f"task {task.reference_task_name} passed its {which} ({seconds} s): ALERT_ONLY")
    reason = f"Task timed out after {seconds} seconds ({which})"
    timed_out = structs.replace(task, status=TaskStatus.TIMED_OUT, end_time=now, reason_for_incompletion=reason)
    st.replace(timed_out)
    cancel_dispatch(st, task)
    if task_def.timeout_policy is TaskTimeoutPolicy.TIME_OUT_WF:
        st.failed_task = timed_out
        st.end(WorkflowStatus.TIMED_OUT, f"Task {task.reference_task_name} ({task.task_id}): {reason}")
    else:  # RETRY: the ordinary retry path, as for a failure
        task_failed(st, timed_out)
    return _reconcile(st)


def _workflow_timed_out(state: Workflow, event: TimerFired, now: int, active: _Context) -> Decision:
    definition = state.workflow_definition
    if definition is None or event.generation != state.run_count:
        return Decision(None, note="workflow timeout of an earlier run")
    if state.status is WorkflowStatus.PAUSED:  # Conductor: a paused workflow is off the clock; resume re-arms it
        return Decision(None, note="workflow timeout while PAUSED: ignored")
    if definition.timeout_policy is WorkflowTimeoutPolicy.ALERT_ONLY:
        return Decision(None, note=f"workflow passed its timeoutSeconds ({definition.timeout_seconds} s): ALERT_ONLY")
    st = active.begin(state, now)
    st.end(WorkflowStatus.TIMED_OUT, f"Workflow timed out after {definition.timeout_seconds} seconds (timeoutSeconds)")
    return _reconcile(st)


def _start_failure_workflow(st: DecisionState, status: WorkflowStatus, reason: str | None) -> None:
    """Conductor's ``failureWorkflow``: started with the original input plus ``workflowId``, ``reason``,
    ``failureStatus``, ``failureTaskId`` and ``failedWorkflow``; its id lands in the failed workflow's output
    under ``conductor.failure_workflow``. ``"$workflow.input.<key>"`` names it from the input."""
    workflow = st.workflow
    definition = workflow.workflow_definition
    name = definition.failure_workflow if definition else None
    if name and name.startswith("$workflow.input."):
        found = workflow.input.get(name.removeprefix("$workflow.input."))
        name = found if isinstance(found, str) else None
    if not name:
        return
    failure_id = workflow_id_from(st, _TASK_ID_NAMESPACE, f"{workflow.workflow_id}/failure/{workflow.run_count}")
    # A compact summary, not the whole record (which may be close to the size limit already).
    failed = {
        "workflowId": workflow.workflow_id,
        "workflowName": workflow.workflow_name,
        "workflowVersion": workflow.workflow_version,
        "status": str(status),
        "reasonForIncompletion": reason,
        "correlationId": workflow.correlation_id,
        "tasks": [
            {"referenceTaskName": t.reference_task_name, "taskId": t.task_id, "status": str(t.status)} for t in st.tasks
        ],
    }
    failure_input: dict[str, object] = {
        **workflow.input,
        "workflowId": workflow.workflow_id,
        "reason": reason,
        "failureStatus": str(status),
    }
    if st.failed_task is not None:  # Conductor adds the key only when there is a failed task
        failure_input["failureTaskId"] = st.failed_task.task_id
    failure_input["failedWorkflow"] = failed
    request = StartWorkflow(
        workflow_id=failure_id,
        name=name,
        version=definition.failure_workflow_version if definition else None,
        input=failure_input,
        correlation_id=workflow.correlation_id,
        task_to_domain=dict(workflow.task_to_domain),
    )
    st.effects.append(StartChild(request=request))
    st.workflow = structs.replace(workflow, output={**workflow.output, "conductor.failure_workflow": failure_id})


def workflow_timer(st: DecisionState) -> None:
    """(Re)arm the workflow's own timeout: from now, on start, resume, retry and restart (Conductor measures
    from createTime or lastRetriedTime)."""
    definition = st.workflow.workflow_definition
    if definition is not None and definition.timeout_seconds > 0:
        fired = TimerFired(
            workflow_id=st.workflow.workflow_id,
            purpose=TimerPurpose.WORKFLOW_TIMEOUT,
            generation=st.workflow.run_count,
        )
        at = st.now + definition.timeout_seconds * 1000
        st.effects.append(ScheduleTimer(timer_id=f"{st.workflow.workflow_id}.timeout", at=at, event=fired))


def _apply_report(
    st: DecisionState,
    task: Task,
    status: TaskResultStatus,
    output_data: dict[str, object],
    *,
    reason: str | None = None,
    worker_id: str | None = None,
    callback_after: int = 0,
    start_time: int = 0,
    end_time: int = 0,
) -> None:
    """Apply a worker's or an operator's report to ``task``.

    An output nested deeper than the limit is not kept: the task fails with FAILED_WITH_TERMINAL_ERROR and
    the reason, whatever the report said. Terminal, as Conductor fails a task whose output is over its hard
    payload limit: a worker that produced it will almost always produce it again, and a retry only repeats the
    failure (an optional task still just completes with errors)."""
    too_deep = st.limits.payload_problem("task output", output_data)
    if too_deep:
        status, output_data, reason = TaskResultStatus.FAILED_WITH_TERMINAL_ERROR, {}, too_deep
    output = {**task.output_data, **output_data}
    started = task.start_time or start_time or task.scheduled_time
    if status is TaskResultStatus.IN_PROGRESS:
        if task.task_type in operators.SYSTEM_TASK_TYPES | operators.NODE_TASK_TYPES:
            # WAIT, HUMAN, an asyncComplete HTTP/EVENT: stays IN_PROGRESS until completed from outside.
            st.replace(structs.replace(task, status=TaskStatus.IN_PROGRESS, output_data=output, start_time=started))
            return
        # Conductor: a worker task reporting progress goes back to SCHEDULED, and the same task (same id) is
        # delivered again after callbackAfterSeconds.
        polls = task.poll_count + 1
        updated = structs.replace(
            task,
            status=TaskStatus.SCHEDULED,
            output_data=output,
            poll_count=polls,
            worker_id=worker_id or task.worker_id,
            start_time=started,
            callback_after_seconds=callback_after,
        )
        st.replace(updated)
        delay_ms = max(0, callback_after) * 1000
        st.effects.append(dispatch(st, updated, f"{task.task_id}.{polls}", st.now + delay_ms if delay_ms else 0))
        return
    # A TIMED_OUT comes from the worker that got the redelivery; the task keeps the one that went silent.
    timed_out = status is TaskResultStatus.TIMED_OUT
    finished = structs.replace(
        task,
        status=TERMINAL_RESULT_STATUSES[status],
        output_data=output,
        poll_count=task.poll_count + 1,
        worker_id=task.worker_id if timed_out else worker_id or task.worker_id,
        start_time=started,
        end_time=end_time or st.now,
        reason_for_incompletion=reason,
    )
    st.replace(finished)
    if not finished.status.is_successful:
        task_failed(st, finished)


def task_failed(st: DecisionState, task: Task) -> None:
    """A task ended unsuccessfully: retry it (worker tasks with retries left), tolerate it (optional), or end
    the workflow as Conductor does (TIMED_OUT → TIMED_OUT, CANCELED → TERMINATED, else FAILED)."""
    workflow_task = st.workflow_task(task)
    # Without a TaskDef: Conductor's ad-hoc defaults, which retry worker tasks (3) but not system tasks (0).
    worker = task.task_type not in operators.SYSTEM_TASK_TYPES | operators.NODE_TASK_TYPES
    task_def = workflow_task.task_definition or TaskDef(name=task.task_def_name, retry_count=3 if worker else 0)
    allowed = workflow_task.retry_count if workflow_task.retry_count is not None else task_def.retry_count
    budget = task_def.total_timeout_seconds * 1000
    over_budget = budget > 0 and st.now - (task.first_scheduled_time or task.scheduled_time) >= budget
    retriable = task.status.is_retriable and not over_budget  # totalTimeoutSeconds also blocks further retries
    if retriable and task.retry_count < allowed and workflow_task.type not in operators.BUILT_IN:
        delay_ms = retry_delay_ms(task_def, task.retry_count, task.task_id)
        retried = structs.replace(task, retried=True)
        st.replace(retried)
        schedule(st, workflow_task, iteration=task.iteration, retry_of=retried, delay_ms=delay_ms)
        return
    if workflow_task.optional:
        st.replace(structs.replace(task, status=TaskStatus.COMPLETED_WITH_ERRORS))
        return
    if workflow_task.permissive:
        return  # stays FAILED; its branch and JOIN go on, and the workflow fails when everything is done
    status = {TaskStatus.TIMED_OUT: WorkflowStatus.TIMED_OUT, TaskStatus.CANCELED: WorkflowStatus.TERMINATED}.get(
        task.status, WorkflowStatus.FAILED
    )
    st.failed_task = task
    st.end(status, failure_reason(task, status))


def retry_delay_ms(task_def: TaskDef, attempt: int, task_id: str) -> int:
    """Conductor's retry delay for the attempt numbered ``attempt`` (0 = first), in milliseconds.

    Jitter is derived from the task id, not drawn at random, so the decider stays deterministic.
    """
    base = task_def.retry_delay_seconds
    if task_def.retry_logic is RetryLogic.LINEAR_BACKOFF:
        seconds = base * task_def.backoff_scale_factor * (attempt + 1)
    elif task_def.retry_logic is RetryLogic.EXPONENTIAL_BACKOFF:
        seconds = base * 2**attempt
    else:
        seconds = base
    seconds = min(seconds, _INT_MAX)
    if task_def.max_retry_delay_seconds > 0:
        seconds = min(seconds, task_def.max_retry_delay_seconds)
    jitter = zlib.crc32(task_id.encode()) % (task_def.backoff_jitter_ms + 1) if task_def.backoff_jitter_ms else 0
    return seconds * 1000 + jitter


# --- reconciling -------------------------------------------------------------------------------------


def reconcile(st: DecisionState) -> Decision:
    return _reconcile(st)


def _failed_permissive_tasks(st: DecisionState) -> list[Task]:
    """The permissive tasks whose latest attempt (highest retryCount per reference) ended unsuccessfully."""
    latest: dict[str, Task] = {}
    for task in st.tasks:
        seen = latest.get(task.reference_task_name)
        if seen is None or task.retry_count > seen.retry_count:
            latest[task.reference_task_name] = task
    return [
        task
        for task in latest.values()
        if task.status.is_terminal and not task.status.is_successful and st.workflow_task(task).permissive
    ]


def _reconcile(st: DecisionState) -> Decision:
    """Walk the definition, schedule what is missing, and end the workflow when everything is done."""
    definition = st.workflow.workflow_definition
    running = st.workflow.status is WorkflowStatus.RUNNING  # a PAUSED workflow schedules nothing new
    done = st.ending is None and running and definition is not None and walk(st, definition.tasks, iteration=0)
    # Conductor completes a workflow only when every task is terminal: a fork branch its JOIN does not wait
    # for still has to finish.
    if done and all(task.status.is_terminal for task in st.tasks):
        permissive = _failed_permissive_tasks(st)
        if permissive:
            st.failed_task = permissive[0]
            st.end(WorkflowStatus.FAILED, ". ".join(failure_reason(t, t.status) for t in permissive))
        else:
            st.end(WorkflowStatus.COMPLETED, None)
    if st.ending is not None:
        _finish(st)
    return st.decision()


def walk(st: DecisionState, workflow_tasks: list[WorkflowTask], *, iteration: int) -> bool:
    """Advance one list of tasks; True when every task in it has finished successfully."""
    for index, workflow_task in enumerate(workflow_tasks):
        if st.ending is not None:
            return False
        reference = loop_ref(workflow_task.task_reference_name, iteration)
        task = st.latest(reference)
        if task is None:
            schedule_head(st, workflow_tasks[index:], iteration)
            task = st.latest(reference)
            if st.ending is not None or task is None:
                return False
        done = operators.progress(st, workflow_task, task, iteration=iteration)
        if not done:
            return False
    return True


def schedule_head(st: DecisionState, tasks: list[WorkflowTask], iteration: int, *, mapping: bool = False) -> None:
    """Schedule the first of ``tasks`` as Conductor's mappers do (``DeciderService.getTasksToBeScheduled``): a
    fork comes with the first task of every branch and then its JOIN, in that order, however far a branch
    could go on at once; a SWITCH/DECISION with the first task of the case it chose. Everything after that is
    the walk's, so task lists are ordered as on Conductor (a branch's second task after the JOIN).

    ``mapping``: part of a fork's mapping, which Conductor completes before it executes any of it, so a branch
    head that ends the workflow (TERMINATE) still leaves the other heads and the JOIN behind (then CANCELED)."""
    first = tasks[0]
    if st.ending is not None and not mapping:
        return
    if st.latest(loop_ref(first.task_reference_name, iteration)) is not None:
        return
    task = schedule(st, first, iteration=iteration, retry_of=None, delay_ms=None)
    if task.status is not TaskStatus.COMPLETED or st.latest(task.reference_task_name) is None:
        return  # still running, or never recorded (the workflow ended while mapping it)
    if first.type == "FORK_JOIN":
        for branch in first.fork_tasks:
            if branch:
                schedule_head(st, branch, iteration, mapping=True)
    elif first.type == "FORK_JOIN_DYNAMIC":
        forked = st.fork_branches(task)
        for branch_task in forked:
            schedule_head(st, [branch_task], iteration, mapping=True)
        st.dynamic_join_on = [b.task_reference_name for b in forked]
    elif first.type in ("SWITCH", "DECISION"):
        case = operators.selected_case(first, task)
        if case:
            schedule_head(st, case, iteration, mapping=mapping)
        return
    else:
        return
    following = tasks[1] if len(tasks) > 1 else None
    if following is not None and following.type == "JOIN":
        schedule_head(st, tasks[1:], iteration, mapping=True)


def schedule(
    st: DecisionState,
    workflow_task: WorkflowTask,
    *,
    iteration: int,
    retry_of: Task | None,
    delay_ms: int | None,
) -> Task:
    """Create the next task instance of ``workflow_task``: a worker task is dispatched, an operator or sync
    system task is executed on the spot (see :mod:`.operators`)."""
    task_def = workflow_task.task_definition
    seq = st.next_seq()
    task_id = task_id_for(st.workflow, seq)
    parameters = dict(workflow_task.input_parameters)
    template = task_def.input_template if task_def else {}
    for key, value in template.items():
        parameters.setdefault(key, value)
    resolved = resolve(parameters, st.document(), task_id=task_id)
    assert isinstance(resolved, dict)
    for key, value in template.items():
        if resolved.get(key) is None:
            resolved[key] = value
    # Measured here, where payloads combine: a task's input can nest another's (even its own previous
    # iteration's), so depth could otherwise grow by a level per task without bound.
    unfit = st.limits.payload_problem("task input", resolved, depth=st.payload_depth(resolved))
    if delay_ms is None:
        delay_ms = workflow_task.start_delay * 1000
    task_type, task_name = operators.task_type_and_name(workflow_task, resolved)
    if workflow_task.type == "DYNAMIC" and task_type != "DYNAMIC":  # the TaskDef of the name it resolved to
        task_def = st.dynamic_task_def(workflow_task, task_name)
    if task_def is None and is_user_defined(workflow_task.type):  # Conductor's UserDefinedTaskMapper
        st.end(
            WorkflowStatus.FAILED,
            f"Invalid task specified. Cannot find task by name {workflow_task.name} in the task definitions",
        )
        return Task(
            task_id=task_id, task_type=task_type, task_def_name=task_name,
            reference_task_name=workflow_task.task_reference_name, workflow_instance_id=st.workflow.workflow_id,
            workflow_type=st.workflow.workflow_name, status=TaskStatus.SCHEDULED, seq=seq,
        )  # fmt: skip
    is_worker_task = task_type not in operators.SYSTEM_TASK_TYPES
    if is_worker_task and not unfit:  # a DYNAMIC name comes from input: it must still fit a subject
        unfit = name_problem("task type", task_type)
    if task_type in operators.NODE_TASK_TYPES:
        # What the node's executor needs from the definition travels in the input, as Conductor reads it.
        if workflow_task.async_complete:
            resolved.setdefault("asyncComplete", True)
        if task_type == "EVENT" and workflow_task.sink:
            resolved["sink"] = resolve(workflow_task.sink, st.document(), task_id=task_id)
    routed = is_worker_task and task_type not in operators.NODE_TASK_TYPES  # system tasks have no domain
    task = Task(
        task_id=task_id,
        task_type=task_type,
        task_def_name=task_name,
        reference_task_name=loop_ref(workflow_task.task_reference_name, iteration),
        workflow_instance_id=st.workflow.workflow_id,
        workflow_type=st.workflow.workflow_name,
        status=TaskStatus.SCHEDULED,
        seq=seq,
        input_data={} if unfit else operators.recorded_input(st, workflow_task, resolved),  # unfit: too deep to keep
        retry_count=retry_of.retry_count + 1 if retry_of else 0,
        retried_task_id=retry_of.task_id if retry_of else None,
        domain=domain_for(st.workflow.task_to_domain, task_name, st.domain_active) if routed else None,
        correlation_id=st.workflow.correlation_id,
        scheduled_time=st.now,
        first_scheduled_time=retry_of.first_scheduled_time if retry_of else st.now,
        update_time=st.now,
        start_delay_in_seconds=delay_ms // 1000,
        callback_after_seconds=delay_ms // 1000,
        response_timeout_seconds=(task_def or TaskDef(name=task_name)).response_timeout_seconds,
        reason_for_incompletion=retry_of.reason_for_incompletion if retry_of else None,
        iteration=iteration,
    )
    refused = st.limits.workflow_tasks_problem(len(st.tasks), task.reference_task_name)
    if refused:
        st.end(WorkflowStatus.FAILED, refused)
        return task  # never added: the workflow ends in this decision, before the task could run
    st.add(task)
    if unfit:
        return operators.fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, unfit, {})
    if is_worker_task:
        st.effects.append(dispatch(st, task, task_id, st.now + delay_ms if delay_ms else 0))
        if task_def is not None and task_def.total_timeout_seconds > 0 and retry_of is None:
            fired = TimerFired(workflow_id=st.workflow.workflow_id, task_id=task_id, purpose=TimerPurpose.TOTAL_TIMEOUT)
            at = st.now + task_def.total_timeout_seconds * 1000
            st.effects.append(ScheduleTimer(timer_id=f"{task_id}.total", at=at, event=fired))
        if task_def is not None and task_def.poll_timeout_seconds:
            fired = TimerFired(
                workflow_id=st.workflow.workflow_id, task_id=task_id, purpose=TimerPurpose.POLL_TIMEOUT, generation=0
            )
            at = st.now + delay_ms + task_def.poll_timeout_seconds * 1000
            st.effects.append(ScheduleTimer(timer_id=f"{task_id}.poll", at=at, event=fired))
        return task
    return operators.execute(st, workflow_task, task)


def cancel_dispatch(st: DecisionState, task: Task) -> None:
    """A dispatched worker (or HTTP/EVENT) task that never started must not run any more: purge it."""
    if task.status is TaskStatus.SCHEDULED and task.task_type not in operators.SYSTEM_TASK_TYPES:
        st.effects.append(CancelDispatch(task_id=task.task_id, task_type=task.task_type, domain=task.domain))


def dispatch(st: DecisionState, task: Task, dispatch_id: str, not_before: int) -> DispatchTask:
    message = TaskMessage(
        task_id=task.task_id,
        task_type=task.task_type,
        task_def_name=task.task_def_name,
        reference_task_name=task.reference_task_name,
        workflow_instance_id=task.workflow_instance_id,
        workflow_type=task.workflow_type,
        result_subject="",  # filled in by the shell, which knows the subject layout
        input_data=task.input_data,
        retry_count=task.retry_count,
        poll_count=task.poll_count,
        domain=task.domain,
        correlation_id=st.workflow.correlation_id,
        scheduled_time=task.scheduled_time,
        response_timeout_seconds=task.response_timeout_seconds,
        callback_after_seconds=task.callback_after_seconds,
        workflow_version=st.workflow.workflow_version,
    )
    task_def = st.workflow_task(task).task_definition
    report_start = task_def is not None and (task_def.timeout_seconds > 0 or bool(task_def.poll_timeout_seconds))
    if task_def is not None and task_def.rate_limit_per_frequency:
        message = structs.replace(
            message,
            rate_limit_per_frequency=task_def.rate_limit_per_frequency,
            rate_limit_frequency_in_seconds=task_def.rate_limit_frequency_in_seconds or 1,
        )
    return DispatchTask(dispatch_id=dispatch_id, task=message, not_before=not_before, report_start=report_start)


def _finish(st: DecisionState) -> None:
    """End the workflow: cancel what still runs (Conductor does on every non-successful end), set the output
    (``outputParameters``, else the TERMINATE task's or the last task's output) and notify waiters."""
    assert st.ending is not None
    status, reason, output = st.ending
    canceled = set()
    for task in list(st.tasks):
        if not task.status.is_terminal:
            st.replace(structs.replace(task, status=TaskStatus.CANCELED, end_time=st.now, update_time=st.now))
            canceled.add(task.task_id)
            cancel_dispatch(st, task)
            if task.sub_workflow_id:  # cancelling a SUB_WORKFLOW task terminates its child (Conductor's words)
                why = f"with reason: {reason}" if reason else f"with status {status}"
                terminate = TerminateWorkflow(
                    workflow_id=task.sub_workflow_id, reason=f"Parent workflow has been terminated {why}"
                )
                send_id = f"terminate:{task.sub_workflow_id}:{st.workflow.run_count}"
                st.effects.append(SendCommand(send_id=send_id, command=terminate))
    # A task canceled in the decision that dispatched it need not reach a worker at all.
    st.effects = [e for e in st.effects if not (isinstance(e, DispatchTask) and e.task.task_id in canceled)]
    if output is None:
        output = workflow_output(st)
    too_deep = st.limits.payload_problem("workflow output", output)
    if too_deep and status is WorkflowStatus.COMPLETED:  # outputParameters can nest outputs each within the limit
        status, reason, output = WorkflowStatus.FAILED, too_deep, {}
    elif too_deep:
        output = {}
    failed_refs, failed_names = failed_task_names(st)
    changes: dict[str, object] = {
        "status": status,
        "reason_for_incompletion": reason,
        "end_time": st.now,
        "output": output,
        "failed_reference_task_names": failed_refs,
        "failed_task_names": failed_names,
    }
    if st.failed_task is not None:
        changes["failed_task_id"] = st.failed_task.task_id
    st.workflow = structs.replace(st.workflow, **changes)
    st.effects.append(
        WorkflowFinished(workflow_id=st.workflow.workflow_id, status=status, reason_for_incompletion=reason)
    )
    if status in (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WorkflowStatus.TERMINATED) and not st.by_operator:
        _start_failure_workflow(st, status, reason)
    parent_id, parent_task_id = st.workflow.parent_workflow_id, st.workflow.parent_workflow_task_id
    if parent_id and parent_task_id:
        report = ChildFinished(
            workflow_id=parent_id,
            task_id=parent_task_id,
            child_workflow_id=st.workflow.workflow_id,
            status=status,
            output=output,
            reason_for_incompletion=reason,
        )
        send_id = f"child:{st.workflow.workflow_id}:{st.workflow.run_count}"  # each run reports its own end
        st.effects.append(SendCommand(send_id=send_id, command=report))


def workflow_output(st: DecisionState) -> dict[str, object]:
    """Conductor's ``updateWorkflowOutput``, for every way a workflow ends (a TERMINATE task's output is passed
    in by the caller and wins): ``outputParameters`` if the definition has any, else the output of the last task
    in the workflow's task list, else (no tasks at all) the output as it was."""
    definition = st.workflow.workflow_definition
    if definition is not None and definition.output_parameters:
        resolved = resolve(definition.output_parameters, st.document())
        assert isinstance(resolved, dict)
        return resolved
    if st.tasks:
        return dict(st.tasks[-1].output_data)
    return dict(st.workflow.output)


def failed_task_names(st: DecisionState) -> tuple[list[str], list[str]]:
    """``failedReferenceTaskNames`` and ``failedTaskNames`` as Conductor keeps them when a workflow ends: those
    already recorded, plus every FAILED or FAILED_WITH_TERMINAL_ERROR task's reference and definition name,
    retried attempts included (so a workflow that COMPLETED after a retried failure still names it)."""
    refs = dict.fromkeys(st.workflow.failed_reference_task_names)
    names = dict.fromkeys(st.workflow.failed_task_names)
    for task in st.tasks:
        if task.status in (TaskStatus.FAILED, TaskStatus.FAILED_WITH_TERMINAL_ERROR):
            refs[task.reference_task_name] = None
            names[task.task_def_name or task.task_type] = None
    return list(refs), list(names)


def failure_reason(task: Task, status: WorkflowStatus | TaskStatus) -> str:
    """Conductor's words for a task that ends its workflow (``DeciderService.retry``): the task's id, the
    workflow's resulting status (the task's, for a permissive task) and the task's reason (``null`` if none)."""
    reason = task.reason_for_incompletion if task.reason_for_incompletion is not None else "null"
    return f"Task {task.task_id} failed with status: {status} and reason: '{reason}'"


_TASK_ID_NAMESPACE = uuid.UUID("6f1c2b1e-5d0a-4f7e-9b57-9f0c1f2a7a11")


def task_id_for(workflow: Workflow, seq: int) -> str:
    """Deterministic task ids; a restarted run gets fresh ones (message-id dedupe must not drop them)."""
    run = f"/{workflow.run_count}" if workflow.run_count else ""
    return str(uuid.uuid5(_TASK_ID_NAMESPACE, f"{workflow.workflow_id}{run}/{seq}"))
