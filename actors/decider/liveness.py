"""The liveness invariant, as a pure function: what durable message should move each part of a workflow.

*Every workflow that has not ended has, at every moment, something durable that will move it.* For a running
workflow that is not in the middle of an event (its producing event acknowledged), that means, task by task:

* a task for a worker (or for a node: HTTP, EVENT) that is SCHEDULED, or IN_PROGRESS at a worker, has its task
  message in the tasks stream (a worker holds it unacknowledged while it runs, so the stream redelivers it after
  ``responseTimeoutSeconds``) or a delayed dispatch waiting to publish it (a retry delay, ``callbackAfterSeconds``);
* a WAIT with ``duration`` or ``until`` has its timer scheduled in the events stream;
* a SUB_WORKFLOW in progress has a child that has not ended (which obeys the invariant itself), or the child's
  ``ChildFinished`` on its way;
* everything else is either *parked* by design, waiting for someone outside (a PAUSED workflow, a HUMAN task, a
  WAIT without a time, an ``asyncComplete`` HTTP or EVENT task in progress), or waits on the tasks above (JOIN,
  DO_WHILE, a fork). A running workflow with none of these has been left behind by a decision.

:func:`audit` lists what the invariant expects; the reconciler (``actors/reconciler.py``) checks each against
JetStream and re-drives a workflow whose movers are gone (``ReconcileWorkflow``, see ``decide.repair``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from partita.schemas import Task, TaskStatus, Workflow, WorkflowStatus

from .operators import NODE_TASK_TYPES, SYSTEM_TASK_TYPES
from .waits import wait_deadline


class MoverKind(StrEnum):
    TASK_MESSAGE = "task_message"  # in the tasks stream: the task message or its delayed dispatch
    TIMER = "timer"  # in the events stream: the WAIT task's schedule
    CHILD = "child"  # the sub-workflow: not ended, or its end reported to the parent


@dataclass(frozen=True, slots=True)
class Mover:
    """What should move one task: ``task`` (its id, type and domain name the subjects to look at)."""

    kind: MoverKind
    task: Task


@dataclass(frozen=True, slots=True)
class Audit:
    movers: tuple[Mover, ...] = ()
    parked: bool = False  # PAUSED, or at least one task waits for someone outside
    owes_nothing: bool = False  # running, yet no task would move it and none is parked: only a walk can


def audit(workflow: Workflow) -> Audit:
    """What should move ``workflow`` (see the module docstring); no movers for an ended or PAUSED one."""
    if workflow.status is WorkflowStatus.PAUSED:
        return Audit(parked=True)
    if workflow.status is not WorkflowStatus.RUNNING:
        return Audit()
    movers: list[Mover] = []
    parked = False
    for task in workflow.tasks:
        if task.status.is_terminal:
            continue
        kind = mover_kind(task)
        if kind is not None:
            movers.append(Mover(kind, task))
        elif is_parked(task):
            parked = True
    return Audit(movers=tuple(movers), parked=parked, owes_nothing=not movers and not parked)


def mover_kind(task: Task) -> MoverKind | None:
    """What kind of durable message moves ``task`` (not ended), or None when nothing of its own should."""
    if task.task_type not in SYSTEM_TASK_TYPES:  # a worker's, or a node's (HTTP, EVENT)
        if task.status is TaskStatus.IN_PROGRESS and task.task_type in NODE_TASK_TYPES:
            return None  # asyncComplete: waits to be completed from outside
        return MoverKind.TASK_MESSAGE
    if task.task_type == "WAIT" and task.status is TaskStatus.IN_PROGRESS and _has_deadline(task):
        return MoverKind.TIMER
    if task.task_type == "SUB_WORKFLOW" and task.sub_workflow_id:
        return MoverKind.CHILD
    return None


def is_parked(task: Task) -> bool:
    """A task (not ended) that waits for someone outside the engine, by design."""
    if task.task_type == "HUMAN":
        return True
    if task.task_type == "WAIT":
        return not _has_deadline(task)
    return task.task_type in NODE_TASK_TYPES and task.status is TaskStatus.IN_PROGRESS


def _has_deadline(task: Task) -> bool:
    try:
        return wait_deadline(task.input_data, task.start_time) is not None
    except ValueError:
        return False  # a WAIT with a bad time fails when it starts: it is never IN_PROGRESS with one
