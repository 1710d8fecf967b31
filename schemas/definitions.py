"""Conductor definitions: ``TaskDef``, ``WorkflowDef``, ``WorkflowTask``, ``SubWorkflowParams``.

The JSON is Conductor's, field for field (camelCase, Conductor's code defaults, unknown fields tolerated), so a
definition written for Conductor loads unchanged. Defaults follow Conductor's *code*, not its docs, where the two
disagree (``responseTimeoutSeconds`` 3600, workflow ``timeoutPolicy`` ALERT_ONLY).
"""

from __future__ import annotations

import enum

import msgspec

from ._struct import Definition


class RetryLogic(enum.StrEnum):
    FIXED = "FIXED"
    EXPONENTIAL_BACKOFF = "EXPONENTIAL_BACKOFF"
    LINEAR_BACKOFF = "LINEAR_BACKOFF"


class TaskTimeoutPolicy(enum.StrEnum):
    RETRY = "RETRY"
    TIME_OUT_WF = "TIME_OUT_WF"
    ALERT_ONLY = "ALERT_ONLY"


class WorkflowTimeoutPolicy(enum.StrEnum):
    TIME_OUT_WF = "TIME_OUT_WF"
    ALERT_ONLY = "ALERT_ONLY"


class TaskDef(Definition, frozen=True):
    """A task type: its retry, timeout and rate-limit policy (Conductor ``TaskDef``)."""

    name: str
    description: str | None = None
    retry_count: int = 3
    retry_logic: RetryLogic = RetryLogic.FIXED
    retry_delay_seconds: int = 60
    backoff_scale_factor: int = 1
    max_retry_delay_seconds: int = 0
    backoff_jitter_ms: int = 0
    timeout_seconds: int = 0
    timeout_policy: TaskTimeoutPolicy = TaskTimeoutPolicy.TIME_OUT_WF
    response_timeout_seconds: int = 3600
    poll_timeout_seconds: int | None = None
    total_timeout_seconds: int = 0
    concurrent_exec_limit: int | None = None
    rate_limit_per_frequency: int | None = None
    rate_limit_frequency_in_seconds: int | None = None
    input_keys: list[str] = msgspec.field(default_factory=list)
    output_keys: list[str] = msgspec.field(default_factory=list)
    input_template: dict[str, object] = msgspec.field(default_factory=dict)
    owner_email: str | None = None
    isolation_group_id: str | None = None
    execution_name_space: str | None = None
    runtime_metadata: list[str] = msgspec.field(default_factory=list)
    task_status_listener_enabled: bool = True
    input_schema: dict[str, object] | None = None
    output_schema: dict[str, object] | None = None
    enforce_schema: bool = False
    base_type: str | None = None
    owner_app: str | None = None
    create_time: int | None = None
    update_time: int | None = None
    created_by: str | None = None
    updated_by: str | None = None


class SubWorkflowParams(Definition, frozen=True):
    """``subWorkflowParam`` of a SUB_WORKFLOW task."""

    name: str | None = None
    version: int | None = None
    task_to_domain: dict[str, str] = msgspec.field(default_factory=dict)
    # An inline definition, or a ``${...}`` expression that yields one.
    workflow_definition: WorkflowDef | str | None = None
    idempotency_key: str | None = None
    idempotency_strategy: str | None = None
    priority: int | str | None = None


class WorkflowTask(Definition, frozen=True):
    """One task of a workflow definition (Conductor ``WorkflowTask``)."""

    name: str
    task_reference_name: str
    description: str | None = None
    input_parameters: dict[str, object] = msgspec.field(default_factory=dict)
    type: str = "SIMPLE"
    dynamic_task_name_param: str | None = None
    case_value_param: str | None = None
    case_expression: str | None = None
    script_expression: str | None = None
    decision_cases: dict[str, list[WorkflowTask]] = msgspec.field(default_factory=dict)
    default_case: list[WorkflowTask] = msgspec.field(default_factory=list)
    dynamic_fork_tasks_param: str | None = None
    dynamic_fork_tasks_input_param_name: str | None = None
    dynamic_fork_join_tasks_param: str | None = None
    fork_tasks: list[list[WorkflowTask]] = msgspec.field(default_factory=list)
    start_delay: int = 0
    sub_workflow_param: SubWorkflowParams | None = None
    join_on: list[str] = msgspec.field(default_factory=list)
    sink: str | None = None
    optional: bool = False
    task_definition: TaskDef | None = None
    rate_limited: bool | None = None
    default_exclusive_join_task: list[str] = msgspec.field(default_factory=list)
    async_complete: bool = False
    loop_condition: str | None = None
    loop_over: list[WorkflowTask] = msgspec.field(default_factory=list)
    items: object = None
    retry_count: int | None = None
    evaluator_type: str | None = None
    expression: str | None = None
    on_state_change: dict[str, object] = msgspec.field(default_factory=dict)
    join_status: str | None = None
    cache_config: dict[str, object] | None = None
    permissive: bool = False
    join_mode: str | None = None
    metadata: dict[str, object] = msgspec.field(default_factory=dict)


class WorkflowDef(Definition, frozen=True):
    """A workflow definition (Conductor ``WorkflowDef``)."""

    name: str
    tasks: list[WorkflowTask]
    description: str | None = None
    version: int = 1
    input_parameters: list[str] = msgspec.field(default_factory=list)
    output_parameters: dict[str, object] = msgspec.field(default_factory=dict)
    input_template: dict[str, object] = msgspec.field(default_factory=dict)
    failure_workflow: str | None = None
    failure_workflow_version: int | None = None
    schema_version: int = 2
    restartable: bool = True
    workflow_status_listener_enabled: bool = False
    workflow_status_listener_sink: str | None = None
    owner_email: str | None = None
    timeout_policy: WorkflowTimeoutPolicy = WorkflowTimeoutPolicy.ALERT_ONLY
    timeout_seconds: int = 0
    variables: dict[str, object] = msgspec.field(default_factory=dict)
    rate_limit_config: dict[str, object] | None = None
    input_schema: dict[str, object] | None = None
    output_schema: dict[str, object] | None = None
    enforce_schema: bool = True
    metadata: dict[str, object] = msgspec.field(default_factory=dict)
    cache_config: dict[str, object] | None = None
    masked_fields: list[str] = msgspec.field(default_factory=list)
    owner_app: str | None = None
    create_time: int | None = None
    update_time: int | None = None
    created_by: str | None = None
    updated_by: str | None = None

    def iter_tasks(self) -> list[WorkflowTask]:
        """Every task of the definition, nested ones included, in definition order."""
        return iter_workflow_tasks(self.tasks)


def iter_workflow_tasks(tasks: list[WorkflowTask]) -> list[WorkflowTask]:
    """``tasks`` and every task nested in them (cases, branches, loop bodies), in definition order."""
    found: list[WorkflowTask] = []
    _collect(tasks, found)
    return found


def _collect(tasks: list[WorkflowTask], found: list[WorkflowTask]) -> None:
    for task in tasks:
        found.append(task)
        for case in task.decision_cases.values():
            _collect(case, found)
        _collect(task.default_case, found)
        for branch in task.fork_tasks:
            _collect(branch, found)
        _collect(task.loop_over, found)
