"""The reconciler: each node audits the running workflows of the partitions it owns, and re-drives the stranded.

The invariant it enforces (``decider/liveness.py``): every workflow that has not ended has something durable
that will move it. Normally the outbox and JetStream's redelivery guarantee that by construction; the
reconciler is the second line, for what construction cannot rule out: a message deleted by an operator or lost
with a stream, a bug in a decision.

How, at a bounded cost:

* The *running index* (stream ``<PREFIX>_RUNNING``, one subject per workflow under its partition) holds only
  workflows that have not ended: the actor adds a workflow when it starts (or runs again) and replaces it with an
  expiring marker when it ends, in the same batch of publishes as the event's effects. Listing a partition's
  running workflows is one stream-info request; ended workflows cost nothing.
* A pass walks the owned partitions and reads at most ``rate`` records a second. A workflow is audited only
  when it has been quiet for ``quiet_seconds`` (its last update is that old) and the event that produced its
  state has been acknowledged (otherwise that event, redelivered, will move it).
* An audited workflow's movers (:func:`~partita.actors.decider.liveness.audit`) are looked up by subject, one
  direct get each. If one is missing, or a running workflow owes nothing at all, the node publishes a durable
  ``ReconcileWorkflow`` to the workflow's partition (message id ``reconcile:<id>:<updateTime>``, so two audits
  of the same state send one). The workflow's actor decides it like any event: ignored if the workflow moved
  since the audit, otherwise it publishes again what is missing and walks the definition; it logs
  ``workflow_repaired`` and counts it. A sub-workflow that ended without its parent hearing of it gets its
  ``ChildFinished`` sent again.

Everything the reconciler does is idempotent and harmless to a healthy workflow: the worst a false alarm can
cause is one extra delivery of a task, which workers already must tolerate (at-least-once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final, final

import anyio
import structlog

from partita.schemas import ChildFinished, ReconcileWorkflow, SendCommand, Workflow, WorkflowRecord
from partita.transport import Connection, KvBucket, Layout, TransportError
from partita.transport.codec import decode_record
from partita.transport.connection import Publication

from .decider.liveness import Mover, MoverKind, audit
from .effects import EffectPerformer, now_ms

log = structlog.get_logger(__name__)

RECONCILE_AFTER_SECONDS: Final = 30.0  # a workflow whose state is this old is audited
RECONCILE_RATE: Final = 200.0  # records audited per second per node, at most
MIN_PASS_SECONDS: Final = 1.0  # passes over few workflows do not spin
ENDED_MARKER_GRACE_MS: Final = 60_000  # an ended workflow's marker expires within seconds; one older was missed


@dataclass(slots=True)
class ReconcilerCounters:
    audited: int = 0  # running workflows whose movers were checked
    stranded: int = 0  # found with a mover missing (a ReconcileWorkflow sent)
    children_reported: int = 0  # ended sub-workflows whose ChildFinished was sent again
    passes: int = 0


@final
class Reconciler:
    def __init__(
        self,
        conn: Connection,
        layout: Layout,
        workflows: KvBucket,
        effects: EffectPerformer,
        owned: Callable[[], Collection[int]],
        *,
        quiet_seconds: float = RECONCILE_AFTER_SECONDS,
        rate: float = RECONCILE_RATE,
    ) -> None:
        if quiet_seconds <= 0 or rate <= 0:
            raise ValueError(f"quiet_seconds and rate must be > 0, got {quiet_seconds} and {rate}")
        self._conn = conn
        self._layout = layout
        self._workflows = workflows
        self._effects = effects
        self._owned = owned
        self._quiet_ms = int(quiet_seconds * 1000)
        self._pause = 1.0 / rate
        self._pass_seconds = max(MIN_PASS_SECONDS, quiet_seconds / 2)
        self.counters = ReconcilerCounters()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Audit pass after audit pass, each at most every ``quiet_seconds / 2``, until cancelled."""
        task_status.started()
        while True:
            began = time.monotonic()
            try:
                await self.audit_pass()
            except TransportError as exc:  # an outage: the next pass tries again
                log.warning("reconcile_pass_failed", error=str(exc))
            self.counters.passes += 1
            await anyio.sleep(max(0.0, self._pass_seconds - (time.monotonic() - began)))

    async def audit_pass(self) -> None:
        for partition in sorted(self._owned()):
            if partition not in self._owned():
                continue  # handed over meanwhile: its new owner audits it
            subjects = await self._conn.subjects(self._layout.running_stream, self._layout.running_filter(partition))
            for subject in subjects:
                workflow_id = self._layout.parse_running_subject(subject)
                if workflow_id is None:
                    continue
                await anyio.sleep(self._pause)  # the rate bound: pacing, not waiting for anything
                try:
                    await self.audit_workflow(workflow_id)
                except TransportError as exc:
                    log.warning("reconcile_audit_failed", workflow_id=workflow_id, error=str(exc))

    async def audit_workflow(self, workflow_id: str) -> bool:
        """Audit one workflow of the index; True when it was found stranded (and re-driven)."""
        entry = await self._workflows.get(self._layout.workflow_key(workflow_id))
        record = decode_record(entry.value) if entry is not None else None
        if record is None or record.workflow.status.is_terminal:
            # Removed, or ended: the entry is an expiring marker, unless the index missed the end (drop it then;
            # re-publishing a fresh marker would only keep it from expiring).
            if record is None or now_ms() - record.workflow.update_time > ENDED_MARKER_GRACE_MS:
                await self._publish_all([self._effects.index_publication(workflow_id, running=False)])
            return False
        workflow = record.workflow
        if now_ms() - workflow.update_time < self._quiet_ms or await self._event_pending(record):
            return False
        self.counters.audited += 1
        found = audit(workflow)
        missing = [mover.task.task_id for mover in found.movers if not await self._present(workflow, mover)]
        if not missing and not found.owes_nothing:
            return False
        self.counters.stranded += 1
        log.warning("workflow_stranded", workflow_id=workflow_id, task_ids=missing, owes_nothing=found.owes_nothing,
                    quiet_ms=now_ms() - workflow.update_time)  # fmt: skip
        await self._redrive(workflow, missing)
        return True

    async def _event_pending(self, record: WorkflowRecord) -> bool:
        stream = self._layout.events_stream
        return bool(record.event_seq) and await self._conn.stream_has_message(stream, record.event_seq)

    async def _present(self, workflow: Workflow, mover: Mover) -> bool:
        task, layout, has = mover.task, self._layout, self._conn.subject_has_message
        match mover.kind:
            case MoverKind.TASK_MESSAGE:
                queued = layout.task_message_subject(task.task_type, task.domain, task.task_id)
                delayed = layout.task_schedule_subject(task.task_id)
                return await has(layout.tasks_stream, queued) or await has(layout.tasks_stream, delayed)
            case MoverKind.TIMER:
                sealed = self._effects.timer_schedule_subject(task.task_id)
                if await has(layout.timers_stream, sealed):
                    return True
                # Armed by an older version, in the events stream: sealed, or before sealing.
                older = (layout.legacy_timer_schedule_subject(self._effects.sealed(task.task_id)),
                         layout.legacy_timer_schedule_subject(task.task_id))  # fmt: skip
                return any([await has(layout.events_stream, subject) for subject in older])
            case MoverKind.CHILD:
                assert task.sub_workflow_id is not None
                return await self._child_moves(workflow, task.task_id, task.sub_workflow_id)

    async def _child_moves(self, parent: Workflow, task_id: str, child_id: str) -> bool:
        """True while the child runs; for a child that has ended, its end is reported to the parent again (its
        ``ChildFinished`` may be what was lost) and that is the mover. False only for a child never started."""
        entry = await self._workflows.get(self._layout.workflow_key(child_id))
        if entry is None:
            return False
        child = decode_record(entry.value).workflow
        if not child.status.is_terminal:
            return True
        report = ChildFinished(
            workflow_id=parent.workflow_id,
            task_id=task_id,
            child_workflow_id=child_id,
            status=child.status,
            output=child.output,
            reason_for_incompletion=child.reason_for_incompletion,
            external_output_payload_storage_path=child.external_output_payload_storage_path,
        )
        send_id = f"child:{child_id}:{child.run_count}:reconciled:{parent.update_time}"
        await self._effects.perform([SendCommand(send_id=send_id, command=report)])
        self.counters.children_reported += 1
        log.warning("child_end_reported_again", workflow_id=parent.workflow_id, child_workflow_id=child_id)
        return True

    async def _redrive(self, workflow: Workflow, missing: list[str]) -> None:
        """Wake the workflow's actor; it decides again on fresh state (the audit only says whom to wake)."""
        command = ReconcileWorkflow(
            workflow_id=workflow.workflow_id, observed_update_time=workflow.update_time, task_ids=missing
        )
        send_id = f"reconcile:{workflow.workflow_id}:{workflow.update_time}"
        await self._effects.perform([SendCommand(send_id=send_id, command=command)])

    async def _publish_all(self, publications: Sequence[Publication]) -> None:
        for error in await self._conn.publish_all(publications):
            if error is not None:
                raise error
