"""Conductor's Workflow and Task JSON (``partita.schemas.conductor``): every field Conductor's mapper writes."""

from __future__ import annotations

import msgspec

from partita.schemas import Task, TaskStatus, Workflow, WorkflowDef, WorkflowStatus
from partita.schemas.conductor import conductor_task, conductor_workflow

# Conductor's common/.../tasks/Task.java, in declaration order, then its derived getters; null-valued String
# fields (retriedTaskId, workerId, ...) are left out, as Jackson's NON_NULL does.
TASK_KEYS_AT_DEFAULTS = [
    "taskType", "status", "inputData", "referenceTaskName", "retryCount", "seq", "pollCount", "taskDefName",
    "scheduledTime", "startTime", "endTime", "updateTime", "startDelayInSeconds", "retried", "executed",
    "callbackFromWorker", "responseTimeoutSeconds", "workflowInstanceId", "workflowType", "taskId",
    "callbackAfterSeconds", "outputData", "workflowTask", "rateLimitPerFrequency", "rateLimitFrequencyInSeconds",
    "workflowPriority", "iteration", "subworkflowChanged", "firstStartTime", "executionMetadata", "taskDefinition",
    "queueWaitTime", "loopOverTask",
]  # fmt: skip
WORKFLOW_KEYS_AT_DEFAULTS = [
    "createTime", "updateTime", "status", "endTime", "workflowId", "tasks", "input", "output", "taskToDomain",
    "failedReferenceTaskNames", "workflowDefinition", "priority", "variables", "lastRetriedTime",
    "failedTaskNames", "history", "rateLimited", "startTime", "workflowName", "workflowVersion",
]  # fmt: skip

DEFINITION = msgspec.json.decode(
    b'{"name": "flow", "tasks": [{"name": "work", "taskReferenceName": "w"},'
    b' {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopCondition": "false",'
    b'  "loopOver": [{"name": "step", "taskReferenceName": "step"}]}]}',
    type=WorkflowDef,
)


def _task(**changes: object) -> Task:
    task = Task(
        task_id="t-1",
        task_type="work",
        task_def_name="work",
        reference_task_name="w",
        workflow_instance_id="wf-1",
        workflow_type="flow",
        status=TaskStatus.SCHEDULED,
        seq=1,
        scheduled_time=1000,
        update_time=1000,
    )
    return msgspec.structs.replace(task, **changes)


def _workflow(*tasks: Task) -> Workflow:
    return Workflow(
        workflow_id="wf-1",
        workflow_name="flow",
        workflow_version=1,
        status=WorkflowStatus.RUNNING,
        workflow_definition=DEFINITION,
        tasks=tasks,
        create_time=900,
        update_time=1000,
    )


def test_a_just_scheduled_task_carries_every_field_conductor_writes_at_its_default() -> None:
    task = _task()
    rendered = conductor_task(task, _workflow(task))
    assert list(rendered) == TASK_KEYS_AT_DEFAULTS
    assert (rendered["retryCount"], rendered["pollCount"], rendered["startTime"]) == (0, 0, 0)
    assert (rendered["inputData"], rendered["outputData"]) == ({}, {})
    assert (rendered["retried"], rendered["executed"], rendered["callbackFromWorker"]) == (False, False, True)
    assert rendered["taskDefinition"] is None  # an empty Optional: written as null, not left out
    workflow_task = rendered["workflowTask"]
    assert workflow_task == _full_workflow_task(DEFINITION.tasks[0])
    assert isinstance(workflow_task, dict)
    assert (workflow_task["type"], workflow_task["optional"], workflow_task["startDelay"]) == ("SIMPLE", False, 0)
    assert "runtimeMetadata" not in rendered  # NON_EMPTY in Conductor


def _full_workflow_task(task: object) -> dict[str, object]:
    fields = msgspec.structs.fields(task)  # type: ignore[arg-type]
    values = {f.encode_name: getattr(task, f.name) for f in fields}
    return {name: msgspec.to_builtins(value) for name, value in values.items() if value is not None}


def test_derived_task_fields_follow_conductors_getters() -> None:
    started = _task(status=TaskStatus.COMPLETED, start_time=1250, end_time=1300, output_data={"k": None})
    rendered = conductor_task(started, _workflow(started))
    assert rendered["queueWaitTime"] == 250
    assert rendered["executed"] is True
    assert rendered["outputData"] == {"k": None}  # null values inside maps are kept
    looped = _task(reference_task_name="step__2", iteration=2, task_type="step", task_def_name="step")
    rendered = conductor_task(looped, _workflow(looped))
    assert rendered["loopOverTask"] is True
    assert rendered["workflowTask"]["taskReferenceName"] == "step"  # type: ignore[index]


def test_a_task_the_definition_does_not_name_gets_a_workflow_task_from_its_names() -> None:
    forked = _task(reference_task_name="_dyn_0", task_type="dyn", task_def_name="dyn")
    rendered = conductor_task(forked, _workflow(forked))
    assert rendered["workflowTask"] == {"name": "dyn", "taskReferenceName": "_dyn_0"}


def test_a_workflow_carries_every_field_conductor_writes_at_its_default() -> None:
    task = _task()
    rendered = conductor_workflow(_workflow(task))
    assert list(rendered) == WORKFLOW_KEYS_AT_DEFAULTS
    assert (rendered["failedReferenceTaskNames"], rendered["failedTaskNames"], rendered["history"]) == ([], [], [])
    assert (rendered["startTime"], rendered["workflowName"], rendered["workflowVersion"]) == (900, "flow", 1)
    assert rendered["tasks"] == [conductor_task(task, _workflow(task))]
    assert conductor_workflow(_workflow(task), include_tasks=False)["tasks"] == []
