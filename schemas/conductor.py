"""Conductor JSON: a :class:`Workflow` or :class:`Task` exactly as Conductor's REST API serializes its own.

Partita's records omit fields at their defaults (they are stored and sent compactly). Conductor's object mapper
writes every property that is not null (``JsonInclude.Include.NON_NULL``): primitives at zero, ``false``, empty
maps and lists are all present, null values inside maps are kept, and a few derived getters are written too
(``Task.queueWaitTime``, ``loopOverTask``, ``taskDefinition``; ``Workflow.startTime``, ``workflowName``,
``workflowVersion``). A client reading ``task["retryCount"]`` must find it. This module renders that shape, key
for key in Conductor's declaration order (``common/.../tasks/Task.java``, ``common/.../run/Workflow.java``);
docs/research/issue-15-conductor-models-and-specs.md lists each field with its source line.

Definitions nested in the output (``workflowDefinition``, ``workflowTask``) follow the same rule: every field of
Partita's definition structs that is not null.
"""

from __future__ import annotations

import enum

import msgspec

from .definitions import WorkflowDef, WorkflowTask, iter_workflow_tasks
from .runtime import Task, Workflow

# ExecutionMetadata with nothing recorded, as Conductor's lazily created one serializes.
_EMPTY_EXECUTION_METADATA: dict[str, object] = {"additionalContext": {}, "additionalContextMap": {}, "empty": True}


def non_null(value: object) -> object:
    """``value`` as Conductor's mapper writes it: Structs as objects of every field that is not None (defaults
    included), enums as their names, maps and lists recursively, with None kept inside maps and lists."""
    if isinstance(value, msgspec.Struct):
        fields: dict[str, object] = {}
        for field in msgspec.structs.fields(value):
            item = getattr(value, field.name)
            if item is not None:
                fields[field.encode_name] = non_null(item)
        return fields
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {key: non_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [non_null(item) for item in value]
    return value


def workflow_task_of(definition: WorkflowDef | None, task: Task) -> WorkflowTask | None:
    """The definition's WorkflowTask behind ``task`` (by reference name, without a DO_WHILE ``__<n>`` suffix);
    None for a task the definition does not name (a dynamically forked branch)."""
    if definition is None:
        return None
    reference = task.reference_task_name
    suffix = f"__{task.iteration}"
    if task.iteration and reference.endswith(suffix):
        reference = reference[: -len(suffix)]
    for candidate in iter_workflow_tasks(definition.tasks):
        if candidate.task_reference_name == reference:
            return candidate
    return None


def _queue_wait_time(task: Task) -> int:
    """Conductor's ``Task.getQueueWaitTime`` without its wall-clock branch (a callback's remaining wait is not
    a fact of the record): start - scheduled once both are set, else 0."""
    if task.start_time > 0 and task.scheduled_time > 0:
        return task.start_time - task.scheduled_time
    return 0


def conductor_task(task: Task, workflow: Workflow) -> dict[str, object]:
    """One task as Conductor's ``Task`` JSON (``GET /api/tasks/{taskId}``, and each of ``Workflow.tasks``)."""
    definition = workflow.workflow_definition
    workflow_task = workflow_task_of(definition, task)
    # Conductor's TaskModel.toTask never leaves workflowTask null: it makes one from the task's names.
    task_json: dict[str, object] = non_null(workflow_task) if workflow_task is not None else {}  # type: ignore[assignment]
    task_json.setdefault("name", task.task_def_name or task.task_type)
    task_json.setdefault("taskReferenceName", task.reference_task_name)
    inline = workflow_task.task_definition if workflow_task is not None else None
    out: dict[str, object] = {
        "taskType": task.task_type,
        "status": task.status.value,
        "inputData": non_null(task.input_data),
        "referenceTaskName": task.reference_task_name,
        "retryCount": task.retry_count,
        "seq": task.seq,
        "correlationId": task.correlation_id,
        "pollCount": task.poll_count,
        "taskDefName": task.task_def_name or task.task_type,
        "scheduledTime": task.scheduled_time,
        "startTime": task.start_time,
        "endTime": task.end_time,
        "updateTime": task.update_time,
        "startDelayInSeconds": task.start_delay_in_seconds,
        "retriedTaskId": task.retried_task_id,
        "retried": task.retried,
        # Conductor's decider marks a task executed once it has acted on its terminal status.
        "executed": task.status.is_terminal,
        "callbackFromWorker": True,
        "responseTimeoutSeconds": task.response_timeout_seconds,
        "workflowInstanceId": task.workflow_instance_id,
        "workflowType": task.workflow_type,
        "taskId": task.task_id,
        "reasonForIncompletion": task.reason_for_incompletion,
        "callbackAfterSeconds": task.callback_after_seconds,
        "workerId": task.worker_id,
        "outputData": non_null(task.output_data),
        "workflowTask": task_json,
        "domain": task.domain,
        "rateLimitPerFrequency": (inline.rate_limit_per_frequency or 0) if inline is not None else 0,
        "rateLimitFrequencyInSeconds": (inline.rate_limit_frequency_in_seconds or 0) if inline is not None else 0,
        "externalInputPayloadStoragePath": task.external_input_payload_storage_path,
        "externalOutputPayloadStoragePath": task.external_output_payload_storage_path,
        "workflowPriority": workflow.priority,
        "executionNameSpace": inline.execution_name_space if inline is not None else None,
        "isolationGroupId": inline.isolation_group_id if inline is not None else None,
        "iteration": task.iteration,
        "subWorkflowId": task.sub_workflow_id or _sub_workflow_id(task),
        "subworkflowChanged": False,
        "firstStartTime": 0,
        "executionMetadata": dict(_EMPTY_EXECUTION_METADATA),
        "taskDefinition": non_null(inline) if inline is not None else None,
        "queueWaitTime": _queue_wait_time(task),
        "loopOverTask": task.iteration > 0,
    }
    # NON_NULL, except the Optional-valued taskDefinition, which Jackson writes as null when empty.
    return {key: value for key, value in out.items() if value is not None or key == "taskDefinition"}


def _sub_workflow_id(task: Task) -> str | None:
    """Conductor's ``Task.getSubWorkflowId``: the field, else ``outputData.subWorkflowId``, else the input's."""
    for data in (task.output_data, task.input_data):
        value = data.get("subWorkflowId")
        if isinstance(value, str) and value:
            return value
    return None


def conductor_workflow(workflow: Workflow, *, include_tasks: bool = True) -> dict[str, object]:
    """One workflow as Conductor's ``Workflow`` JSON (``GET /api/workflow/{id}``); ``include_tasks=False`` gives
    ``tasks: []`` as Conductor's ``includeTasks=false`` does."""
    definition = workflow.workflow_definition
    out: dict[str, object] = {
        "createTime": workflow.create_time,
        "updateTime": workflow.update_time,
        "createdBy": workflow.created_by,
        "status": workflow.status.value,
        "endTime": workflow.end_time,
        "workflowId": workflow.workflow_id,
        "parentWorkflowId": workflow.parent_workflow_id,
        "parentWorkflowTaskId": workflow.parent_workflow_task_id,
        "tasks": [conductor_task(task, workflow) for task in workflow.tasks] if include_tasks else [],
        "input": non_null(workflow.input),
        "output": non_null(workflow.output),
        "correlationId": workflow.correlation_id,
        "reRunFromWorkflowId": None,
        "reasonForIncompletion": workflow.reason_for_incompletion,
        "taskToDomain": dict(workflow.task_to_domain),
        "failedReferenceTaskNames": list(workflow.failed_reference_task_names),
        "workflowDefinition": non_null(definition) if definition is not None else None,
        "externalInputPayloadStoragePath": workflow.external_input_payload_storage_path,
        "externalOutputPayloadStoragePath": workflow.external_output_payload_storage_path,
        "priority": workflow.priority,
        "variables": non_null(workflow.variables),
        "lastRetriedTime": workflow.last_retried_time,
        "failedTaskNames": list(workflow.failed_task_names),
        "history": [],
        "idempotencyKey": workflow.idempotency_key,
        "rateLimited": False,
        "startTime": workflow.create_time,
        "workflowName": workflow.workflow_name,
        "workflowVersion": workflow.workflow_version,
    }
    return {key: value for key, value in out.items() if value is not None}
