"""The working state of one decision: the workflow's tasks as they change, the effects so far, how it ends.

Mutable inside a single ``decide`` call only; ``decide`` starts from the frozen record it was given and hands
back a new frozen record, so the caller's state is never touched.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
from msgspec import structs

from partita.schemas import (
    CommandOutcome,
    Effect,
    Limits,
    Task,
    TaskDef,
    Workflow,
    WorkflowStatus,
    WorkflowTask,
    configured_limits,
    json_depth,
)
from partita.schemas.definitions import iter_workflow_tasks

from .expressions import ENVIRONMENT_KEY


def loop_ref(reference: str, iteration: int) -> str:
    """The reference name of a task instance: DO_WHILE body tasks get Conductor's ``__<iteration>`` suffix."""
    return f"{reference}__{iteration}" if iteration else reference


def definition_ref(task: Task) -> str:
    """The reference name as written in the definition (without a loop suffix)."""
    suffix = f"__{task.iteration}"
    if task.iteration and task.reference_task_name.endswith(suffix):
        return task.reference_task_name[: -len(suffix)]
    return task.reference_task_name


DomainActive = Callable[[str, str], bool]


def no_active_domains(task_type: str, domain: str) -> bool:
    del task_type, domain
    return False


@dataclass(frozen=True, slots=True)
class Decision:
    """``workflow`` is the new state, or ``None`` when the event changes nothing (``note`` says why).

    ``rejected`` marks an event ignored because it cannot be what it claims (a worker report published under
    another task type's subject, or answering a delivery the task is past), as opposed to ordinary
    at-least-once noise such as a late duplicate: the shell logs it as a warning and counts it.
    """

    workflow: Workflow | None
    effects: tuple[Effect, ...] = ()
    note: str | None = None
    rejected: bool = False
    # For an operator's command that changes nothing: how it is answered (``note`` is the message).
    outcome: CommandOutcome | None = None


def refuse(outcome: CommandOutcome, message: str) -> Decision:
    """An operator's command that changes nothing, answered ``outcome`` with Conductor's ``message``."""
    return Decision(None, note=message, outcome=outcome)


def no_such_workflow(workflow_id: str) -> Decision:
    return refuse(CommandOutcome.NOT_FOUND, f"No such workflow found by id: {workflow_id}")


class DecisionState:
    def __init__(
        self,
        workflow: Workflow,
        now: int,
        domain_active: DomainActive = no_active_domains,
        environment: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        id_key: bytes = b"",
        task_defs: Mapping[str, TaskDef] | None = None,
    ) -> None:
        self.workflow = workflow
        self.now = now
        self.domain_active = domain_active
        self.environment = environment or {}
        self.limits = limits or configured_limits()
        self.id_key = id_key  # seals the ids of the workflows a decision starts (see workflow_id_from)
        # The registered TaskDefs, for tasks whose name is known only at run time (DYNAMIC, dynamic forks).
        self.task_defs: Mapping[str, TaskDef] = task_defs or {}
        self._dynamic: dict[tuple[str, str], WorkflowTask] = {}
        self.tasks: list[Task] = list(workflow.tasks)
        self.effects: list[Effect] = []
        self.ending: tuple[WorkflowStatus, str | None, dict[str, object] | None] | None = None
        self.failed_task: Task | None = None
        self.by_operator = False  # ended by the terminate command, not by the engine
        self._positions = {task.task_id: index for index, task in enumerate(self.tasks)}
        self._latest = {task.reference_task_name: index for index, task in enumerate(self.tasks)}
        self._document: dict[str, object] | None = None
        self._definitions: dict[str, WorkflowTask] | None = None
        # FORK_JOIN_DYNAMIC task id -> (its input map, what it forked by reference): decoding a fork's
        # definitions once per decision, not once per lookup (a JOIN on 100 branches looks up 100 tasks).
        self._forks: dict[str, tuple[dict[str, object], list[WorkflowTask], dict[str, WorkflowTask]]] = {}
        # The references a FORK_JOIN_DYNAMIC forked, for the JOIN that follows it in the same walk.
        self.dynamic_join_on: list[str] | None = None
        # id -> (value, its json_depth): see payload_depth. The value is kept so that its id stays its own.
        self._depths: dict[int, tuple[object, int]] = {}

    # --- tasks -------------------------------------------------------------------------------------

    def latest(self, reference: str) -> Task | None:
        """The newest instance (highest seq) with this exact reference name."""
        index = self._latest.get(reference)
        return None if index is None else self.tasks[index]

    def latest_output(self, reference: str) -> dict[str, object] | None:
        """The output of the newest instance of a definition reference, whatever its loop iteration."""
        for task in reversed(self.tasks):
            if definition_ref(task) == reference:
                return task.output_data
        return None

    def next_seq(self) -> int:
        return max((task.seq for task in self.tasks), default=0) + 1

    def add(self, task: Task) -> None:
        self._positions[task.task_id] = len(self.tasks)
        self._latest[task.reference_task_name] = len(self.tasks)
        self.tasks.append(task)
        self._document = None

    def replace(self, task: Task) -> None:
        self.tasks[self._positions[task.task_id]] = structs.replace(task, update_time=self.now)
        self._document = None

    def remove(self, doomed: set[str]) -> None:
        """Drop task instances by id (DO_WHILE ``keepLastN``)."""
        self.tasks = [task for task in self.tasks if task.task_id not in doomed]
        self._positions = {task.task_id: index for index, task in enumerate(self.tasks)}
        self._latest = {task.reference_task_name: index for index, task in enumerate(self.tasks)}
        self._document = None

    def workflow_task(self, task: Task) -> WorkflowTask:
        """The definition entry a task instance was scheduled from: the static definition, else (a task a
        FORK_JOIN_DYNAMIC created, or one nested in it) the newest dynamic fork of the same loop iteration."""
        reference = definition_ref(task)
        if self._definitions is None:
            definition = self.workflow.workflow_definition
            assert definition is not None  # a task exists only in a workflow that has its definition
            self._definitions = {wt.task_reference_name: wt for wt in definition.iter_tasks()}
        found = self._definitions.get(reference)
        if found is not None and found.type == "DYNAMIC" and task.task_type != "DYNAMIC":
            return self._resolved_dynamic(found, task.task_def_name)
        if found is not None:
            return found
        for fork in reversed(self.tasks):
            if is_dynamic_fork(fork) and fork.iteration == task.iteration:
                found = self._fork(fork)[2].get(reference)
                if found is not None:
                    return found
        raise KeyError(f"no definition for task {task.reference_task_name!r}")

    def _resolved_dynamic(self, placeholder: WorkflowTask, name: str) -> WorkflowTask:
        """A DYNAMIC task's definition entry with the TaskDef registered for the name it resolved to (as
        Conductor's DynamicTaskMapper looks it up), else the entry's own."""
        key = (placeholder.task_reference_name, name)
        cached = self._dynamic.get(key)
        if cached is None:
            registered = self.task_defs.get(name)
            cached = placeholder if registered is None else structs.replace(placeholder, task_definition=registered)
            self._dynamic[key] = cached
        return cached

    def dynamic_task_def(self, placeholder: WorkflowTask, name: str) -> TaskDef | None:
        return self._resolved_dynamic(placeholder, name).task_definition

    def fork_branches(self, fork: Task) -> list[WorkflowTask]:
        """The tasks a FORK_JOIN_DYNAMIC forked (see :func:`dynamic_branches`), decoded once per decision."""
        return self._fork(fork)[1]

    def _fork(self, fork: Task) -> tuple[dict[str, object], list[WorkflowTask], dict[str, WorkflowTask]]:
        cached = self._forks.get(fork.task_id)
        if cached is None or cached[0] is not fork.input_data:
            branches = dynamic_branches(fork)
            by_reference = {wt.task_reference_name: wt for wt in iter_workflow_tasks(branches)}
            cached = self._forks[fork.task_id] = (fork.input_data, branches, by_reference)
        return cached

    def payload_depth(self, payload: dict[str, object]) -> int:
        """``json_depth(payload)``, remembering the depth of each value by identity for the rest of the
        decision: resolved inputs share their values (``${workflow.input}`` in every branch of a fork), and a
        large one is then measured once, not once per task."""
        deepest = 0
        for value in payload.values():
            if not isinstance(value, dict | list):
                deepest = max(deepest, json_depth(value))  # a scalar (0), or a rare tuple or Struct
                continue
            known = self._depths.get(id(value))
            if known is None or known[0] is not value:
                known = self._depths[id(value)] = (value, json_depth(value))
            deepest = max(deepest, known[1])
        return deepest + 1

    # --- workflow ----------------------------------------------------------------------------------

    def set_variables(self, variables: dict[str, object]) -> None:
        self.workflow = structs.replace(self.workflow, variables=variables)
        self._document = None

    def end(self, status: WorkflowStatus, reason: str | None, output: dict[str, object] | None = None) -> None:
        """End the workflow (the first ending of a decision wins)."""
        if self.ending is None:
            self.ending = (status, reason, output)

    def decision(self) -> Decision:
        workflow = structs.replace(self.workflow, tasks=tuple(self.tasks), update_time=self.now)
        return Decision(workflow, tuple(self.effects))

    def document(self) -> dict[str, object]:
        """The document ``${...}`` paths are evaluated against (reference §4). DO_WHILE body tasks are keyed
        by their reference without the iteration suffix, the latest iteration winning, as in Conductor."""
        if self._document is None:
            self._document = build_document(self.workflow, self.tasks, self.environment)
        return self._document


def is_dynamic_fork(task: Task) -> bool:
    """A FORK_JOIN_DYNAMIC's instance (recorded as ``FORK``, as Conductor does; older records say
    ``FORK_JOIN_DYNAMIC``)."""
    return task.task_type == "FORK_JOIN_DYNAMIC" or (task.task_type == "FORK" and "forkedTaskDefs" in task.input_data)


def dynamic_branches(fork: Task) -> list[WorkflowTask]:
    """The tasks a FORK_JOIN_DYNAMIC forked, as recorded in its input (``forkedTaskDefs``, Conductor's
    ForkJoinDynamicTaskMapper); records from before that keep them in the output."""
    defs = fork.input_data.get("forkedTaskDefs", fork.output_data.get("forkedTaskDefs"))
    return msgspec.convert(defs, list[WorkflowTask]) if isinstance(defs, list) else []


def build_document(
    workflow: Workflow, tasks: list[Task] | tuple[Task, ...], environment: Mapping[str, str] | None = None
) -> dict[str, object]:
    definition = workflow.workflow_definition
    doc: dict[str, object] = {
        ENVIRONMENT_KEY: dict(environment or {}),
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
            "env": dict(environment or {}),
        },
    }
    for task in tasks:  # in seq order, so the newest instance of a reference wins
        doc[definition_ref(task)] = {
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


def workflow_id_from(st: DecisionState, namespace: uuid.UUID, name: str) -> str:
    """The id of a workflow this decision starts (a child, a failure workflow): deterministic, so a replayed
    decision starts the same one and the start is deduplicated, and with the nodes' key (``id_key``) one nobody
    else can compute. A client or worker that may start workflows could otherwise start one with the child's id
    first, and its workflow would then stand in for the child (the real start is ignored as a duplicate)."""
    if st.id_key:
        name = f"{name}/{hmac.new(st.id_key, name.encode(), hashlib.sha256).hexdigest()}"
    return str(uuid.uuid5(namespace, name))
