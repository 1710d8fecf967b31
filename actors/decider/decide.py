"""The pure workflow decider: ``decide(state, event, now) -> Decision``.

No I/O, no clock reads, no randomness: ids derive from the workflow id and the task's sequence number, so
deciding the same event twice yields the same result. The actor shell (``workflow_actor.py``) persists the
decision and performs its effects.

Semantics implemented here (reference §1, §3 SIMPLE, §5): SIMPLE tasks in sequence; task inputs and workflow
outputs through expressions; retries as new task instances per the TaskDef's retry policy; optional tasks;
FAILED_WITH_TERMINAL_ERROR never retried; task-to-domain with explicit domains, ``"*"`` and ``NO_DOMAIN``.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import assert_never

from msgspec import structs

from partita.schemas import (
    DeciderEvent,
    DispatchTask,
    Effect,
    RetryLogic,
    Task,
    TaskDef,
    TaskMessage,
    TaskResultReceived,
    TaskResultStatus,
    TaskStatus,
    Workflow,
    WorkflowDef,
    WorkflowFinished,
    WorkflowStartRequested,
    WorkflowStatus,
    WorkflowTask,
    unsupported_problems,
)
from partita.schemas.messages import TERMINAL_RESULT_STATUSES

from .expressions import resolve

_TASK_ID_NAMESPACE = uuid.UUID("6f1c2b1e-5d0a-4f7e-9b57-9f0c1f2a7a11")
_INT_MAX = 2**31 - 1
NO_DOMAIN = "NO_DOMAIN"


@dataclass(frozen=True, slots=True)
class Decision:
    """``workflow`` is the new state, or ``None`` when the event changes nothing (``note`` says why)."""

    workflow: Workflow | None
    effects: tuple[Effect, ...] = ()
    note: str | None = None


def decide(state: Workflow | None, event: DeciderEvent, now: int) -> Decision:
    match event:
        case WorkflowStartRequested():
            return _start(state, event, now)
        case TaskResultReceived():
            return _task_result(state, event, now)
        case _:
            assert_never(event)


# --- definitions -------------------------------------------------------------------------------------


def snapshot_definition(definition: WorkflowDef, task_defs: Mapping[str, TaskDef]) -> WorkflowDef:
    """The definition a workflow runs with: every task carries its TaskDef (registered, inline, or
    Conductor's ad-hoc defaults), so later registrations do not change a running workflow."""

    def attach(task: WorkflowTask) -> WorkflowTask:
        changes: dict[str, object] = {}
        if task.task_definition is None and task.type == "SIMPLE":
            changes["task_definition"] = task_defs.get(task.name) or TaskDef(name=task.name)
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
        if "," in domains:
            problems.append(
                f"taskToDomain[{task_type!r}] = {domains!r}: comma-separated domain fallback lists are not "
                "supported yet by Partita; give a single domain or NO_DOMAIN"
            )
        elif not domains.strip():
            problems.append(f"taskToDomain[{task_type!r}]: domain must not be empty")
    return problems


def domain_for(task_to_domain: Mapping[str, str], task_type: str) -> str | None:
    """The domain a worker task is routed to: its own entry, else ``"*"``, else none."""
    domain = task_to_domain.get(task_type, task_to_domain.get("*"))
    if domain is None or domain.strip() == NO_DOMAIN:
        return None
    return domain.strip()


# --- start -------------------------------------------------------------------------------------------


def _start(state: Workflow | None, event: WorkflowStartRequested, now: int) -> Decision:
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
        create_time=now,
        start_time=now,
        update_time=now,
    )
    if problems or definition is None:
        reason = "; ".join(problems) or f"workflow definition {request.name!r} not found"
        return _finish(workflow, WorkflowStatus.FAILED, now, reason=reason)
    return _advance(workflow, now)


# --- task results ------------------------------------------------------------------------------------


def _task_result(state: Workflow | None, event: TaskResultReceived, now: int) -> Decision:
    result = event.result
    if state is None:
        return Decision(None, note="result for an unknown workflow")
    if state.status.is_terminal:
        return Decision(None, note=f"result for a {state.status} workflow")
    task = state.task_by_id(result.task_id)
    if task is None:
        return Decision(None, note="result for an unknown task")
    if event.subject_task_type != task.task_type:
        return Decision(None, note=f"result published for type {event.subject_task_type!r}, task is {task.task_type!r}")
    if task.status.is_terminal:
        return Decision(None, note=f"late or duplicate result: task is already {task.status}")
    if result.poll_count is not None and result.poll_count != task.poll_count:
        return Decision(
            None, note=f"stale result: it answers delivery {result.poll_count}, task is at {task.poll_count}"
        )

    output = {**task.output_data, **result.output_data}
    start_time = task.start_time or result.start_time or task.scheduled_time
    if result.status is TaskResultStatus.IN_PROGRESS:
        # Conductor: a worker task reporting progress goes back to SCHEDULED, and the same task (same id) is
        # delivered again after callbackAfterSeconds.
        polls = task.poll_count + 1
        updated = structs.replace(
            task,
            status=TaskStatus.SCHEDULED,
            output_data=output,
            poll_count=polls,
            worker_id=result.worker_id or task.worker_id,
            start_time=start_time,
            update_time=now,
            callback_after_seconds=result.callback_after_seconds,
        )
        workflow = _replace_task(state, updated, now)
        delay_ms = max(0, result.callback_after_seconds) * 1000
        dispatch = _dispatch(workflow, updated, f"{task.task_id}.{polls}", now + delay_ms if delay_ms else 0)
        return Decision(workflow, (dispatch,))

    status = TERMINAL_RESULT_STATUSES[result.status]
    finished = structs.replace(
        task,
        status=status,
        output_data=output,
        poll_count=task.poll_count + 1,
        worker_id=result.worker_id or task.worker_id,
        start_time=start_time,
        end_time=result.end_time or now,
        update_time=now,
        reason_for_incompletion=result.reason_for_incompletion,
    )
    workflow = _replace_task(state, finished, now)
    if status.is_successful:
        return _advance(workflow, now)
    return _task_failed(workflow, finished, now)


def _task_failed(workflow: Workflow, task: Task, now: int) -> Decision:
    workflow_task = _workflow_task(workflow, task.reference_task_name)
    task_def = workflow_task.task_definition or TaskDef(name=workflow_task.name)
    allowed = workflow_task.retry_count if workflow_task.retry_count is not None else task_def.retry_count
    if task.status.is_retriable and task.retry_count < allowed:
        delay_ms = retry_delay_ms(task_def, task.retry_count, task.task_id)
        retried = structs.replace(task, retried=True)
        workflow = _replace_task(workflow, retried, now)
        return _schedule(workflow, workflow_task, now, retry_of=retried, delay_ms=delay_ms)
    if workflow_task.optional:
        tolerated = structs.replace(task, status=TaskStatus.COMPLETED_WITH_ERRORS)
        return _advance(_replace_task(workflow, tolerated, now), now)
    reason = (
        f"Task {task.reference_task_name} ({task.task_id}) failed with status: {task.status} "
        f"and reason: '{task.reason_for_incompletion or ''}'"
    )
    workflow = structs.replace(
        workflow, failed_reference_task_names=[task.reference_task_name], failed_task_id=task.task_id
    )
    # Conductor: a TIMED_OUT task times the workflow out, a CANCELED one terminates it, anything else fails it.
    status = {TaskStatus.TIMED_OUT: WorkflowStatus.TIMED_OUT, TaskStatus.CANCELED: WorkflowStatus.TERMINATED}.get(
        task.status, WorkflowStatus.FAILED
    )
    return _finish(workflow, status, now, reason=reason)


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


# --- scheduling --------------------------------------------------------------------------------------


def _advance(workflow: Workflow, now: int) -> Decision:
    """Schedule the next task of the sequence, or complete the workflow when none is left."""
    definition = workflow.workflow_definition
    assert definition is not None  # a RUNNING workflow always has its snapshot
    latest = _latest_by_ref(workflow)
    for workflow_task in definition.tasks:
        task = latest.get(workflow_task.task_reference_name)
        if task is None:
            return _schedule(workflow, workflow_task, now, retry_of=None, delay_ms=workflow_task.start_delay * 1000)
        if not task.status.is_terminal:
            return Decision(workflow)
        if not task.status.is_successful:  # a failure handled elsewhere; nothing more to schedule
            return Decision(workflow)
    return _complete(workflow, now)


def _schedule(
    workflow: Workflow, workflow_task: WorkflowTask, now: int, *, retry_of: Task | None, delay_ms: int
) -> Decision:
    task_def = workflow_task.task_definition or TaskDef(name=workflow_task.name)
    seq = len(workflow.tasks) + 1
    task_id = str(uuid.uuid5(_TASK_ID_NAMESPACE, f"{workflow.workflow_id}/{seq}"))
    parameters = dict(workflow_task.input_parameters)
    for key, value in task_def.input_template.items():
        parameters.setdefault(key, value)
    resolved = resolve(parameters, expression_document(workflow), task_id=task_id)
    assert isinstance(resolved, dict)
    for key, value in task_def.input_template.items():
        if resolved.get(key) is None:
            resolved[key] = value
    task = Task(
        task_id=task_id,
        task_type=workflow_task.name,
        task_def_name=workflow_task.name,
        reference_task_name=workflow_task.task_reference_name,
        workflow_instance_id=workflow.workflow_id,
        workflow_type=workflow.workflow_name,
        status=TaskStatus.SCHEDULED,
        seq=seq,
        input_data=resolved,
        retry_count=retry_of.retry_count + 1 if retry_of else 0,
        retried_task_id=retry_of.task_id if retry_of else None,
        domain=domain_for(workflow.task_to_domain, workflow_task.name),
        correlation_id=workflow.correlation_id,
        scheduled_time=now,
        update_time=now,
        start_delay_in_seconds=delay_ms // 1000,
        callback_after_seconds=delay_ms // 1000,
        response_timeout_seconds=task_def.response_timeout_seconds,
        reason_for_incompletion=retry_of.reason_for_incompletion if retry_of else None,
    )
    workflow = structs.replace(workflow, tasks=(*workflow.tasks, task), update_time=now)
    return Decision(workflow, (_dispatch(workflow, task, task_id, now + delay_ms if delay_ms else 0),))


def _dispatch(workflow: Workflow, task: Task, dispatch_id: str, not_before: int) -> DispatchTask:
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
        correlation_id=workflow.correlation_id,
        scheduled_time=task.scheduled_time,
        response_timeout_seconds=task.response_timeout_seconds,
        callback_after_seconds=task.callback_after_seconds,
    )
    return DispatchTask(dispatch_id=dispatch_id, task=message, not_before=not_before)


def _complete(workflow: Workflow, now: int) -> Decision:
    definition = workflow.workflow_definition
    assert definition is not None
    if definition.output_parameters:
        output = resolve(definition.output_parameters, expression_document(workflow))
        assert isinstance(output, dict)
    else:
        finished = [task for task in workflow.tasks if task.status.is_terminal]
        output = dict(finished[-1].output_data) if finished else {}
    return _finish(structs.replace(workflow, output=output), WorkflowStatus.COMPLETED, now, reason=None)


def _finish(workflow: Workflow, status: WorkflowStatus, now: int, *, reason: str | None) -> Decision:
    workflow = structs.replace(workflow, status=status, reason_for_incompletion=reason, end_time=now, update_time=now)
    notice = WorkflowFinished(workflow_id=workflow.workflow_id, status=status, reason_for_incompletion=reason)
    return Decision(workflow, (notice,))


# --- helpers -----------------------------------------------------------------------------------------


def _replace_task(workflow: Workflow, task: Task, now: int) -> Workflow:
    tasks = tuple(task if existing.task_id == task.task_id else existing for existing in workflow.tasks)
    return structs.replace(workflow, tasks=tasks, update_time=now)


def _latest_by_ref(workflow: Workflow) -> dict[str, Task]:
    latest: dict[str, Task] = {}
    for task in workflow.tasks:  # in seq order, so the newest attempt wins
        latest[task.reference_task_name] = task
    return latest


def _workflow_task(workflow: Workflow, reference: str) -> WorkflowTask:
    definition = workflow.workflow_definition
    assert definition is not None
    for workflow_task in definition.iter_tasks():
        if workflow_task.task_reference_name == reference:
            return workflow_task
    raise KeyError(reference)  # unreachable: tasks are only created from the snapshot


def expression_document(workflow: Workflow) -> dict[str, object]:
    """The document ``${...}`` paths are evaluated against (reference §4)."""
    definition = workflow.workflow_definition
    doc: dict[str, object] = {
        "workflow": {
            "input": workflow.input,
            "output": workflow.output,
            "status": str(workflow.status),
            "workflowId": workflow.workflow_id,
            "parentWorkflowId": workflow.parent_workflow_id,
            "parentWorkflowTaskId": workflow.parent_workflow_task_id,
            "workflowType": workflow.workflow_name,
            "version": workflow.workflow_version,
            "correlationId": workflow.correlation_id,
            "reasonForIncompletion": workflow.reason_for_incompletion,
            "schemaVersion": definition.schema_version if definition else 2,
            "variables": workflow.variables,
            "taskToDomain": workflow.task_to_domain,
            "createTime": workflow.create_time,
        }
    }
    for ref, task in _latest_by_ref(workflow).items():
        doc[ref] = {
            "input": task.input_data,
            "output": task.output_data,
            "taskType": task.task_type,
            "status": str(task.status),
            "referenceTaskName": task.reference_task_name,
            "retryCount": task.retry_count,
            "correlationId": task.correlation_id,
            "pollCount": task.poll_count,
            "taskDefName": task.task_def_name,
            "scheduledTime": task.scheduled_time,
            "startTime": task.start_time,
            "endTime": task.end_time,
            "workflowInstanceId": task.workflow_instance_id,
            "taskId": task.task_id,
            "reasonForIncompletion": task.reason_for_incompletion,
            "callbackAfterSeconds": task.callback_after_seconds,
            "workerId": task.worker_id,
            "iteration": task.iteration,
            "domain": task.domain,
        }
    return doc
