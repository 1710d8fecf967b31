"""Wire messages, the decider's effects, and the stored workflow record.

Messages that cross the process boundary to clients and workers are JSON (camelCase) so that any NATS client
in any language can speak them; ``docs/protocol.md`` documents each one. Messages that only nodes read (the
workflow record and its outbox) are MessagePack. Rules (msgspec schema evolution): new fields get defaults; a
``kind`` tag is never reused or renamed.
"""

from __future__ import annotations

import enum

import msgspec

from ._struct import Message
from .definitions import WorkflowDef
from .runtime import TaskStatus, Workflow, WorkflowStatus

# --- client -> node -------------------------------------------------------------------------------------


class StartWorkflow(Message, frozen=True, tag="StartWorkflow"):
    """Start a workflow (Conductor's ``StartWorkflowRequest`` plus the id the client chose).

    Published to ``<prefix>.wf.<partition>.start``. Starting is idempotent per ``workflowId``: a second start
    with the same id is ignored, so a client may safely re-send after a timeout.
    """

    workflow_id: str
    name: str
    version: int | None = None
    input: dict[str, object] = msgspec.field(default_factory=dict)
    correlation_id: str | None = None
    task_to_domain: dict[str, str] = msgspec.field(default_factory=dict)
    idempotency_key: str | None = None
    priority: int = 0
    # An inline (ephemeral) definition, as Conductor's StartWorkflowRequest.workflowDef allows.
    workflow_def: WorkflowDef | None = None
    created_by: str | None = None
    # The input is in the payloads object store at this path (Conductor's StartWorkflowRequest field).
    external_input_payload_storage_path: str | None = None
    # Set when a SUB_WORKFLOW task starts this workflow: it reports its end to that task.
    parent_workflow_id: str | None = None
    parent_workflow_task_id: str | None = None


# --- node -> worker ------------------------------------------------------------------------------------


class TaskMessage(Message, frozen=True, tag="Task"):
    """A task handed to a worker, on ``<prefix>.task.<type>.<domain>`` (Conductor ``Task`` JSON fields).

    The worker publishes its :class:`TaskResult` to ``resultSubject`` and acks only after that publish is
    acknowledged by JetStream.
    """

    task_id: str
    task_type: str
    task_def_name: str
    reference_task_name: str
    workflow_instance_id: str
    workflow_type: str
    result_subject: str
    input_data: dict[str, object] = msgspec.field(default_factory=dict)
    retry_count: int = 0
    poll_count: int = 0
    domain: str | None = None
    correlation_id: str | None = None
    scheduled_time: int = 0
    response_timeout_seconds: int = 0
    callback_after_seconds: int = 0
    workflow_version: int = 0
    # Set when the TaskDef has timeoutSeconds or pollTimeoutSeconds: publish a TaskStarted there when work
    # begins (timeouts count from the start, as in Conductor).
    started_subject: str | None = None
    # Conductor copies the TaskDef's rate limit onto the task; workers honour it (0 = none).
    rate_limit_per_frequency: int = 0
    rate_limit_frequency_in_seconds: int = 1
    # A large input is in the payloads object store at this path (``inputData`` is then empty).
    external_input_payload_storage_path: str | None = None


# --- worker -> node -----------------------------------------------------------------------------------


class WorkerAnnouncement(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A worker is alive for (``taskType``, ``domain``; None = no domain): published on core NATS to
    ``<prefix>.workers.<type>.<domain>`` every few seconds. Nodes read only the subject; the body names the
    same pair, and the worker. No ``kind``: nothing else is published there."""

    task_type: str
    domain: str | None
    worker_id: str


class TaskStarted(Message, frozen=True, tag="TaskStarted"):
    """A worker began a task whose ``reportStart`` was set (timeouts count from here). Published to
    ``<prefix>.wf.<partition>.started.<type>``."""

    workflow_instance_id: str
    task_id: str
    worker_id: str | None = None
    poll_count: int | None = None
    start_time: int = 0
    # Optional, as in a result: when present it must name the type of the subject it is published on.
    task_type: str | None = None


class TaskResultStatus(enum.StrEnum):
    """What a worker may report (Conductor ``TaskResult.Status``)."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FAILED_WITH_TERMINAL_ERROR = "FAILED_WITH_TERMINAL_ERROR"
    CANCELED = "CANCELED"
    # Not in Conductor's TaskResult: the SDK reports it for a task JetStream delivered again because its
    # previous delivery outlived responseTimeoutSeconds (the node marks it TIMED_OUT and retries it).
    TIMED_OUT = "TIMED_OUT"


class TaskResult(Message, frozen=True, tag="TaskResult"):
    """A worker's report: Conductor's ``TaskResult`` JSON plus ``taskType``, the worker's clock readings, and
    ``pollCount`` echoed from the task message (a report for an older delivery of the task is then ignored)."""

    workflow_instance_id: str
    task_id: str
    status: TaskResultStatus
    task_type: str | None = None
    output_data: dict[str, object] = msgspec.field(default_factory=dict)
    reason_for_incompletion: str | None = None
    callback_after_seconds: int = 0
    worker_id: str | None = None
    logs: list[object] = msgspec.field(default_factory=list)
    start_time: int = 0
    end_time: int = 0
    poll_count: int | None = None
    # A large output stored in the payloads object store (``outputData`` is then empty), as Conductor's.
    external_output_payload_storage_path: str | None = None


class UpdateTask(Message, frozen=True, tag="UpdateTask"):
    """Update the pending task with reference ``taskRefName`` from outside (Conductor's
    ``POST /tasks/{workflowId}/{taskRefName}/{status}``): completes WAIT and HUMAN tasks, or any other.

    Published to ``<prefix>.wf.<partition>.cmd``.
    """

    workflow_id: str
    task_ref_name: str
    status: TaskResultStatus
    output_data: dict[str, object] = msgspec.field(default_factory=dict)
    reason_for_incompletion: str | None = None
    worker_id: str | None = None
    command_id: str | None = None


class TerminateWorkflow(Message, frozen=True, tag="TerminateWorkflow"):
    """Terminate a running workflow (Conductor's ``DELETE /workflow/{id}``): TERMINATED, pending tasks
    CANCELED, sub-workflows terminated. Published to ``<prefix>.wf.<partition>.cmd``."""

    workflow_id: str
    reason: str | None = None
    command_id: str | None = None


class PauseWorkflow(Message, frozen=True, tag="PauseWorkflow"):
    """Pause a RUNNING workflow: running tasks finish, nothing new is scheduled until it is resumed."""

    workflow_id: str
    command_id: str | None = None


class ResumeWorkflow(Message, frozen=True, tag="ResumeWorkflow"):
    """Resume a PAUSED workflow: RUNNING again, and whatever is due is scheduled."""

    workflow_id: str
    command_id: str | None = None


class RetryWorkflow(Message, frozen=True, tag="RetryWorkflow"):
    """Retry an ended (not COMPLETED) workflow from where it failed: the last failed, timed-out or canceled
    instance of each task is scheduled again as a new instance (Conductor's ``POST /workflow/{id}/retry``)."""

    workflow_id: str
    command_id: str | None = None


class RestartWorkflow(Message, frozen=True, tag="RestartWorkflow"):
    """Run an ended workflow again from the start with the same id and input (Conductor's restart);
    ``useLatestDefinitions`` takes the latest registered definition instead of the snapshot."""

    workflow_id: str
    use_latest_definitions: bool = False
    command_id: str | None = None


class SkipTask(Message, frozen=True, tag="SkipTask"):
    """Skip a task of a RUNNING workflow that has not been scheduled yet: it is recorded SKIPPED with the given
    input and output, and the workflow moves past it (Conductor's ``PUT /workflow/{id}/skiptask/{ref}``)."""

    workflow_id: str
    task_ref_name: str
    task_input: dict[str, object] = msgspec.field(default_factory=dict)
    task_output: dict[str, object] = msgspec.field(default_factory=dict)
    command_id: str | None = None


class RerunWorkflow(Message, frozen=True, tag="RerunWorkflow"):
    """Run an ended workflow again from a task (or from the start), optionally with new input (Conductor's
    ``POST /workflow/{id}/rerun``): later tasks are dropped, the rerun task keeps its id."""

    workflow_id: str
    re_run_from_task_id: str | None = None
    workflow_input: dict[str, object] | None = None
    task_input: dict[str, object] | None = None
    command_id: str | None = None


class ChildFinished(Message, frozen=True, tag="ChildFinished"):
    """A sub-workflow ended; its parent's SUB_WORKFLOW task mirrors it. Published by nodes to the parent's
    ``<prefix>.wf.<partition>.cmd``."""

    workflow_id: str  # the parent
    task_id: str  # the parent's SUB_WORKFLOW task
    child_workflow_id: str
    status: WorkflowStatus
    output: dict[str, object] = msgspec.field(default_factory=dict)
    reason_for_incompletion: str | None = None
    external_output_payload_storage_path: str | None = None


class ReconcileWorkflow(Message, frozen=True, tag="ReconcileWorkflow"):
    """Re-drive a workflow the reconciler found stranded: running, quiet since ``observedUpdateTime``, and the
    durable message that should move each of ``taskIds`` (its task message, delayed dispatch or WAIT timer) gone.
    Published by nodes to ``<prefix>.wf.<partition>.cmd``; ignored if the workflow has moved since."""

    workflow_id: str
    observed_update_time: int
    task_ids: list[str] = msgspec.field(default_factory=list)


class TimerPurpose(enum.StrEnum):
    WAIT = "wait"  # a WAIT task's duration/until
    TASK_TIMEOUT = "task_timeout"  # timeoutSeconds since the task started
    POLL_TIMEOUT = "poll_timeout"  # pollTimeoutSeconds without the task starting
    WORKFLOW_TIMEOUT = "workflow_timeout"  # the workflow's timeoutSeconds
    TOTAL_TIMEOUT = "total_timeout"  # totalTimeoutSeconds across every attempt of a task


class TimerFired(Message, frozen=True, tag="TimerFired"):
    """A durable timer came due (published by a JetStream message schedule to ``<prefix>.wf.<p>.timer``)."""

    workflow_id: str
    task_id: str = ""
    purpose: TimerPurpose = TimerPurpose.WAIT
    # Which run of the workflow (restarts) or delivery of the task (pollCount) the timer was set for.
    generation: int = 0


# --- node-internal -------------------------------------------------------------------------------------


class WorkflowStartRequested(Message, frozen=True, tag="WorkflowStartRequested"):
    """The decider's view of a start: the request plus the definition the node resolved for it.

    ``problem`` is set when the start cannot run (unknown definition, unsupported task type, bad
    task-to-domain); the decider then records the workflow as FAILED with that reason, so the failure is
    durable and visible instead of a log line nobody reads.
    """

    request: StartWorkflow
    definition: WorkflowDef | None = None
    problem: str | None = None


class TaskStartedReceived(Message, frozen=True, tag="TaskStartedReceived"):
    started: TaskStarted
    subject_task_type: str
    subject_names_domain: bool = False
    subject_domain: str | None = None


class TaskResultReceived(Message, frozen=True, tag="TaskResultReceived"):
    """A worker result as the decider sees it: the result plus the task type (and, on current subjects, the
    domain; None = no domain) its subject named."""

    result: TaskResult
    subject_task_type: str
    subject_names_domain: bool = False
    subject_domain: str | None = None


class DispatchTask(Message, frozen=True, tag="DispatchTask"):
    """Effect: publish ``task`` to its (type, domain) subject, not before ``notBefore`` (epoch ms).

    ``dispatchId`` is the JetStream message id, so performing the effect twice is harmless.
    """

    dispatch_id: str
    task: TaskMessage
    not_before: int = 0
    report_start: bool = False


class ScheduleTimer(Message, frozen=True, tag="ScheduleTimer"):
    """Effect: have JetStream deliver ``event`` to the workflow at ``at`` (epoch ms), even across restarts.
    One schedule per ``timerId``: scheduling it again replaces the pending one."""

    timer_id: str
    at: int
    event: TimerFired
    repair: int = 0  # non-zero: a re-arm by the reconciler (epoch ms), so message-id dedupe does not drop it


class CancelDispatch(Message, frozen=True, tag="CancelDispatch"):
    """Effect: a task that was dispatched but not started was canceled or timed out: purge its queued message
    and any pending delayed dispatch, so no worker runs it (Conductor removes it from the queue)."""

    task_id: str
    task_type: str
    domain: str | None = None


class StartChild(Message, frozen=True, tag="StartChild"):
    """Effect: publish ``request`` as a start message (SUB_WORKFLOW and START_WORKFLOW tasks)."""

    request: StartWorkflow


class SendCommand(Message, frozen=True, tag="SendCommand"):
    """Effect: publish ``command`` to the ``cmd`` subject of the workflow it names, with message id ``sendId``."""

    send_id: str
    command: TerminateWorkflow | ChildFinished | ReconcileWorkflow


class WorkflowFinished(Message, frozen=True, tag="WorkflowFinished"):
    """Effect and notification: the workflow reached a terminal status (core NATS ``<prefix>.done.<id>``)."""

    workflow_id: str
    status: WorkflowStatus
    reason_for_incompletion: str | None = None


class TaskTransition(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One task's change in a :class:`HistoryEntry` (``previousStatus`` is absent for a new task)."""

    task_id: str
    reference_task_name: str
    task_type: str
    status: TaskStatus
    previous_status: TaskStatus | None = None
    retry_count: int = 0
    poll_count: int = 0
    worker_id: str | None = None
    reason_for_incompletion: str | None = None


class HistoryEntry(Message, frozen=True, tag="HistoryEntry"):
    """One transition of a workflow, kept in the history stream (``<prefix>.history.<workflowId>``): what
    caused it, the workflow's status before and after, and every task that appeared or changed status."""

    workflow_id: str
    time: int
    cause: str
    status: WorkflowStatus
    previous_status: WorkflowStatus | None = None
    tasks: list[TaskTransition] = msgspec.field(default_factory=list)
    reason_for_incompletion: str | None = None
    run_count: int = 0
    event_seq: int = 0


class RecordHistory(Message, frozen=True, tag="RecordHistory"):
    """Effect: append ``entry`` to the workflow's history (message id ``history:<workflowId>:<eventSeq>``)."""

    entry: HistoryEntry


Effect = DispatchTask | CancelDispatch | ScheduleTimer | StartChild | SendCommand | WorkflowFinished | RecordHistory
Operation = PauseWorkflow | ResumeWorkflow | RetryWorkflow | RestartWorkflow | SkipTask | RerunWorkflow
Command = UpdateTask | TerminateWorkflow | ChildFinished | ReconcileWorkflow | Operation
# What arrives on an events-stream subject (start, result, started, cmd, timer).
WireEvent = StartWorkflow | TaskResult | TaskStarted | Command | TimerFired


class RestartRequested(Message, frozen=True, tag="RestartRequested"):
    """The decider's view of a restart: the command plus the definition the node resolved when the latest
    one was asked for (``None``: keep the snapshot)."""

    command: RestartWorkflow
    definition: WorkflowDef | None = None


DeciderEvent = (
    WorkflowStartRequested
    | TaskResultReceived
    | TaskStartedReceived
    | UpdateTask
    | TerminateWorkflow
    | ChildFinished
    | ReconcileWorkflow
    | TimerFired
    | PauseWorkflow
    | ResumeWorkflow
    | RetryWorkflow
    | RestartRequested
    | SkipTask
    | RerunWorkflow
)


class CommandOutcome(enum.StrEnum):
    """How a node answered an operator's command (the REST API's status codes in brackets)."""

    DONE = "DONE"  # applied, or already so (pause of a PAUSED workflow) [200]
    NOT_FOUND = "NOT_FOUND"  # no such task to update [404]
    CONFLICT = "CONFLICT"  # the workflow's status does not allow it [409]
    INVALID = "INVALID"  # the command names something the workflow does not have [400]


class CommandAnswer(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A node's answer to a command carrying a ``commandId``, kept in the workflow's record (the last
    :data:`MAX_ANSWERS`), written in the same compare-and-set as the decision it reports."""

    command_id: str
    outcome: CommandOutcome
    message: str = ""
    status: WorkflowStatus | None = None  # the workflow's status after the command
    time: int = 0


MAX_ANSWERS = 16


class WorkflowRecord(Message, frozen=True, tag="WorkflowRecord"):
    """What the workflow KV bucket stores: the state, the effects that state owes (outbox), and the stream
    sequence of the event that produced it. The outbox is performed again if that event is redelivered, or if
    the record is loaded while that event is still unacknowledged in the stream (see docs/architecture.md)."""

    workflow: Workflow
    outbox: tuple[Effect, ...] = ()
    event_seq: int = 0
    answers: tuple[CommandAnswer, ...] = ()


TERMINAL_RESULT_STATUSES: dict[TaskResultStatus, TaskStatus] = {
    TaskResultStatus.COMPLETED: TaskStatus.COMPLETED,
    TaskResultStatus.FAILED: TaskStatus.FAILED,
    TaskResultStatus.FAILED_WITH_TERMINAL_ERROR: TaskStatus.FAILED_WITH_TERMINAL_ERROR,
    TaskResultStatus.CANCELED: TaskStatus.CANCELED,
    TaskResultStatus.TIMED_OUT: TaskStatus.TIMED_OUT,
}
