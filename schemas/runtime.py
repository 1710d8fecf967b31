"""Runtime records, shaped like Conductor's ``Workflow`` and ``Task`` JSON, and the status enums (reference §5).

Times are epoch milliseconds, as in Conductor; 0 means "not yet".
"""

from __future__ import annotations

import enum

import msgspec

from ._struct import Record
from .definitions import WorkflowDef


class TaskStatus(enum.StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    FAILED_WITH_TERMINAL_ERROR = "FAILED_WITH_TERMINAL_ERROR"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    SCHEDULED = "SCHEDULED"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self not in (TaskStatus.IN_PROGRESS, TaskStatus.SCHEDULED)

    @property
    def is_successful(self) -> bool:
        return self not in (
            TaskStatus.CANCELED,
            TaskStatus.FAILED,
            TaskStatus.FAILED_WITH_TERMINAL_ERROR,
            TaskStatus.TIMED_OUT,
        )

    @property
    def is_retriable(self) -> bool:
        return self not in (TaskStatus.CANCELED, TaskStatus.FAILED_WITH_TERMINAL_ERROR, TaskStatus.SKIPPED)


class WorkflowStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    TERMINATED = "TERMINATED"
    PAUSED = "PAUSED"

    @property
    def is_terminal(self) -> bool:
        return self not in (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)

    @property
    def is_successful(self) -> bool:
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.PAUSED)


class Task(Record, frozen=True):
    """One execution attempt of a task. A retry is a new ``Task`` with a new ``taskId``."""

    task_id: str
    task_type: str
    task_def_name: str
    reference_task_name: str
    workflow_instance_id: str
    workflow_type: str
    status: TaskStatus
    seq: int
    input_data: dict[str, object] = msgspec.field(default_factory=dict)
    output_data: dict[str, object] = msgspec.field(default_factory=dict)
    retry_count: int = 0
    retried: bool = False
    retried_task_id: str | None = None
    poll_count: int = 0
    worker_id: str | None = None
    domain: str | None = None
    correlation_id: str | None = None
    scheduled_time: int = 0
    first_scheduled_time: int = 0
    start_time: int = 0
    end_time: int = 0
    update_time: int = 0
    start_delay_in_seconds: int = 0
    callback_after_seconds: int = 0
    response_timeout_seconds: int = 0
    reason_for_incompletion: str | None = None
    iteration: int = 0
    sub_workflow_id: str | None = None
    # Conductor's external payload storage: the input/output lives in the payloads object store at this path
    # (and the map here is empty in the stored record).
    external_input_payload_storage_path: str | None = None
    external_output_payload_storage_path: str | None = None


class Workflow(Record, frozen=True):
    """One workflow execution, with the definition snapshot it started with."""

    workflow_id: str
    workflow_name: str
    workflow_version: int
    status: WorkflowStatus
    workflow_definition: WorkflowDef | None = None
    input: dict[str, object] = msgspec.field(default_factory=dict)
    output: dict[str, object] = msgspec.field(default_factory=dict)
    variables: dict[str, object] = msgspec.field(default_factory=dict)
    tasks: tuple[Task, ...] = ()
    correlation_id: str | None = None
    task_to_domain: dict[str, str] = msgspec.field(default_factory=dict)
    reason_for_incompletion: str | None = None
    failed_reference_task_names: list[str] = msgspec.field(default_factory=list)
    # The taskDefName of every FAILED / FAILED_WITH_TERMINAL_ERROR task, as Conductor keeps it beside the refs.
    failed_task_names: list[str] = msgspec.field(default_factory=list)
    failed_task_id: str | None = None
    parent_workflow_id: str | None = None
    parent_workflow_task_id: str | None = None
    priority: int = 0
    idempotency_key: str | None = None
    create_time: int = 0
    start_time: int = 0
    update_time: int = 0
    end_time: int = 0
    last_retried_time: int = 0  # when it was last retried or resumed (Conductor's lastRetriedTime)
    created_by: str | None = None
    schema_version: int = 2
    # Partita: how often this workflow was run again (restart, rerun, retry): each run gets fresh task, child
    # and failure-workflow ids, so message-id dedupe never mistakes a new run's messages for old ones.
    run_count: int = 0
    external_input_payload_storage_path: str | None = None
    external_output_payload_storage_path: str | None = None

    def task_by_id(self, task_id: str) -> Task | None:
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        return None
