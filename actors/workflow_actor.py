"""The workflow actor: the shell around the pure decider, one per active workflow on a node.

Per event: load state (cached, with its KV revision) -> decide -> CAS-write the new state together with the
effects it owes (the outbox) -> perform the effects with deterministic message ids -> ack the event.

* A CAS conflict (another node wrote first) drops the cache, reloads and decides again.
* If the node dies between the write and the ack, the event is redelivered; the record says which event
  produced it (``eventSeq``), so the actor performs that outbox again instead of deciding twice.
* A record loaded from KV whose producing event is still unacknowledged in the stream may owe its effects
  (its writer may have died before performing them): they are performed before anything else. Message-id
  dedupe makes the repeat harmless.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final, assert_never, final

import anyio
import anyio.to_thread
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream
from msgspec import structs

from partita.schemas import (
    MAX_ANSWERS,
    ChildFinished,
    CommandAnswer,
    CommandOutcome,
    DeciderEvent,
    DispatchTask,
    Effect,
    PauseWorkflow,
    PayloadError,
    ReconcileWorkflow,
    RecordHistory,
    RerunWorkflow,
    RestartRequested,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SendCommand,
    SkipTask,
    StartWorkflow,
    TaskResult,
    TaskResultReceived,
    TaskStarted,
    TaskStartedReceived,
    TerminateWorkflow,
    TimerFired,
    UpdateTask,
    Workflow,
    WorkflowDef,
    WorkflowFinished,
    WorkflowRecord,
    WorkflowStartRequested,
    WorkflowStatus,
)
from partita.schemas.validation import workflow_def_problems
from partita.transport import (
    CasConflict,
    Connection,
    Delivery,
    KvBucket,
    Layout,
    TransportError,
    keep_dead_letter,
)
from partita.transport.codec import (
    decode_record,
    encode_record,
)
from partita.transport.payloads import PayloadStore
from partita.transport.provision import EVENTS_ACK_WAIT_SECONDS

from .decider import Decision, decide, fail_workflow, snapshot_definition, uses_scripts
from .definition_cache import DefinitionCache
from .effects import EffectPerformer, now_ms
from .events import Envelope, clip
from .history import describe, history_entry
from .offload import Offloader
from .presence import WorkerPresence

log = structlog.get_logger(__name__)

# How much larger JSON can be than msgpack for the same data: a control character is 1 byte in msgpack and 6
# (``\u0001``) in JSON; everything else grows less.
JSON_EXPANSION: Final = 6

MAX_CAS_ATTEMPTS: Final = 16
RETRY_LATER_SECONDS: Final = 2.0
MAX_RETRY_LATER_SECONDS: Final = 60.0
ACK_WAIT_MARGIN_SECONDS: Final = 1.0  # an event held this close to its AckWait is checked before acting on
UNKNOWN_WORKFLOW_DELIVERIES: Final = 5  # an event for a workflow not (yet) started is retried this often


@dataclass(slots=True)
class ActorCounters:
    """Node-wide counts the actors keep (``Node.statistics()``); one event loop, so plain ints suffice."""

    results_rejected: int = 0  # worker reports for another task type, or for a delivery the task is past
    events_dead_lettered: int = 0  # events whose decision failed `decision_attempts` times (poison)
    workflows_repaired: int = 0  # stranded workflows re-driven by a ReconcileWorkflow (see reconciler.py)
    events_taken_over: int = 0  # held past the AckWait (a frozen node) and meanwhile handled by another node


@dataclass(frozen=True, slots=True)
class ActorContext:
    conn: Connection
    layout: Layout
    workflows: KvBucket
    definitions: DefinitionCache
    effects: EffectPerformer
    idle_seconds: float
    script_threads: anyio.CapacityLimiter
    presence: WorkerPresence
    environment: Mapping[str, str]
    payloads: PayloadStore
    history: bool = True  # record every transition in the history stream
    decision_attempts: int = 5  # deciding an event that raises is tried this often, then it is poison
    counters: ActorCounters = field(default_factory=ActorCounters)


@final
class WorkflowActor:
    """Serialises the events of one workflow. Exits when idle, or at once when its workflow has ended."""

    def __init__(self, workflow_id: str, context: ActorContext, mailbox: MemoryObjectReceiveStream[Envelope]) -> None:
        self.workflow_id = workflow_id
        self._ctx = context
        self._mailbox = mailbox
        self._key = context.layout.workflow_key(workflow_id)
        self._loaded = False
        self._record: WorkflowRecord | None = None
        self._revision = 0
        self._log = log.bind(workflow_id=workflow_id)
        self._offloader = Offloader(context.payloads, workflow_id)

    async def run(self) -> None:
        async with self._mailbox:
            while (envelope := await self._next()) is not None:
                try:
                    await self._handle(envelope)
                except BaseException:
                    # Cancelled (node shutting down past its grace): hand the event back for another node.
                    await self._retry_later(envelope.delivery, 0)
                    raise
                finally:
                    envelope.release()

    async def _next(self) -> Envelope | None:
        """The next event, or None when the actor should retire: mailbox closed, workflow ended, or idle.

        Retiring is decided with the mailbox empty and no await before the caller closes it, so an event
        can never be left behind in a retiring actor's mailbox.
        """
        try:
            return self._mailbox.receive_nowait()
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            return None
        if self._finished:
            return None  # the state lives in KV; a late event starts a fresh actor
        with anyio.move_on_after(self._ctx.idle_seconds):
            try:
                return await self._mailbox.receive()
            except anyio.EndOfStream:
                return None
        try:
            return self._mailbox.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return None

    @property
    def _finished(self) -> bool:
        return self._record is not None and self._record.workflow.status.is_terminal

    async def _handle(self, envelope: Envelope) -> None:
        delivery = envelope.delivery
        try:
            await self._apply(envelope)
        except TransportError as exc:
            # JetStream is unavailable or slow: forget the cache, let the event come back, keep the node up.
            self._loaded = False
            self._log.warning("event_deferred", error=str(exc), stream_seq=delivery.stream_seq)
            await self._retry_later(delivery, RETRY_LATER_SECONDS)
        except Exception as exc:
            # A bug, not an outage. Neither crash the node nor spin: decide again after a growing delay (a
            # passing cause, or a fix deployed meanwhile), and after `decision_attempts` give up on the event:
            # keep it in the dead-letter stream and end its workflow FAILED, saying why.
            self._loaded = False
            attempts = delivery.num_delivered
            if attempts >= self._ctx.decision_attempts:
                self._log.exception("event_failed", stream_seq=delivery.stream_seq, deliveries=attempts)
                await self._give_up(envelope, exc)
                return
            delay = min(MAX_RETRY_LATER_SECONDS, RETRY_LATER_SECONDS * 2 ** (attempts - 1))
            self._log.exception("event_failed", stream_seq=delivery.stream_seq, deliveries=attempts, retry_in=delay)
            await self._retry_later(delivery, delay)

    async def _give_up(self, envelope: Envelope, exc: Exception) -> None:
        """A poison event: dead-letter it with the exception, fail its workflow with a reason that names both,
        then terminate the event. If any step cannot be done now, the event comes back and this runs again
        (the dead letter is deduplicated, the failed record written once)."""
        delivery = envelope.delivery
        kind = type(envelope.event).__name__
        reason = (
            f"the engine could not decide event {kind} (stream sequence {delivery.stream_seq}) after "
            f"{delivery.num_delivered} attempts: {type(exc).__name__}: {clip(str(exc), 400)}"
        )
        try:
            await keep_dead_letter(self._ctx.conn, self._ctx.layout, delivery, reason, seal=self._ctx.effects.sealed)
            failed = await self._fail(envelope, reason)
            await delivery.term(reason)
        except TransportError as error:
            self._loaded = False
            self._log.warning("poison_event_deferred", error=str(error), stream_seq=delivery.stream_seq)
            await self._retry_later(delivery, RETRY_LATER_SECONDS)
            return
        self._ctx.counters.events_dead_lettered += 1
        self._log.error("poison_event_dead_lettered", stream_seq=delivery.stream_seq, event_kind=kind,
                        workflow_failed=failed, reason=reason)  # fmt: skip

    async def _fail(self, envelope: Envelope, reason: str) -> bool:
        """End the workflow FAILED with ``reason`` (compare-and-set, like any decision); False if it has
        already ended or does not exist (then only the dead letter remains)."""
        delivery = envelope.delivery
        for _ in range(MAX_CAS_ATTEMPTS):
            await self._load(delivery.stream_seq)
            record = self._record
            now = now_ms()
            if record is None:
                if not isinstance(envelope.event, StartWorkflow):
                    return False
                # A start that cannot be decided: recorded FAILED with the reason, as a start that cannot run.
                requested = WorkflowStartRequested(request=envelope.event, problem=reason)
                decision = decide(None, requested, now, id_key=self._ctx.effects.message_id_key)
            else:
                workflow = await self._offloader.hydrate(record.workflow)
                assert workflow is not None
                try:
                    decision = fail_workflow(workflow, reason, now, id_key=self._ctx.effects.message_id_key)
                except Exception:  # the decider fails even at this: keep the state, only the status changes
                    self._log.exception("workflow_fail_decision_failed")
                    failed = await self._failed_record(reason, delivery.stream_seq, workflow)
                    decision = Decision(failed.workflow, tuple(failed.outbox))
            if decision.workflow is None:
                return False
            try:
                await self._commit(decision, delivery.stream_seq, f"poison event {type(envelope.event).__name__}")
            except CasConflict:
                continue
            assert self._record is not None
            await self._ctx.effects.perform(self._record.outbox, index=self._record.workflow)
            self._log_transition(record.workflow if record else None, self._record.workflow)
            return True
        raise TransportError(f"workflow {self.workflow_id}: contended while failing it")

    @staticmethod
    async def _retry_later(delivery: Delivery, delay: float) -> None:
        # If even the nak fails, the server redelivers after AckWait anyway.
        with anyio.CancelScope(shield=True), anyio.move_on_after(5), contextlib.suppress(TransportError):
            await delivery.nak(delay)

    async def _still_ours(self, delivery: Delivery) -> bool:
        """Whether this node may still act on ``delivery``. Normally yes without asking: its AckWait was restarted
        recently. Past it (this process was frozen, a GC pause, a partition) the event may have been redelivered
        to another node, decided and acknowledged there: then acting now would repeat what that node did, past
        message-id dedupe if the freeze was long (a task dispatched twice). So ask the stream."""
        if time.monotonic() - delivery.refreshed < EVENTS_ACK_WAIT_SECONDS - ACK_WAIT_MARGIN_SECONDS:
            return True
        if await self._ctx.conn.stream_has_message(self._ctx.layout.events_stream, delivery.stream_seq):
            return True
        self._loaded = False  # another node moved the workflow on: never decide on what we cached
        self._ctx.counters.events_taken_over += 1
        self._log.warning("event_taken_over", stream_seq=delivery.stream_seq,
                          held_seconds=round(time.monotonic() - delivery.refreshed, 1))  # fmt: skip
        return False

    async def _apply(self, envelope: Envelope) -> None:
        delivery = envelope.delivery
        for attempt in range(MAX_CAS_ATTEMPTS):
            if not await self._still_ours(delivery):
                return
            fresh = not self._loaded
            if fresh:
                if attempt == 0 and isinstance(envelope.event, StartWorkflow):
                    # A start almost always creates the workflow: skip the read and let kv.create's
                    # compare-and-set tell us otherwise (a duplicate start then reloads and is ignored).
                    self._record, self._revision, self._loaded = None, 0, True
                else:
                    await self._load(delivery.stream_seq)
            record = self._record
            if record is not None and record.event_seq == delivery.stream_seq:
                # Redelivery of the event that produced the current state: only its effects may be missing.
                if not await self._still_ours(delivery):
                    return
                await self._ctx.effects.perform(record.outbox, index=record.workflow)
                await delivery.ack()
                self._log.info("event_replayed", stream_seq=delivery.stream_seq, effects=len(record.outbox))
                return
            event = await self._decider_event(envelope)
            decision = await self._decide(await self._offloader.hydrate(record.workflow if record else None), event)
            if decision.workflow is None:
                if not fresh:
                    # Decided on cached state, which another node may have moved on (a result for a task it
                    # scheduled looks "unknown" here). Only a fresh read may make us drop an event.
                    self._loaded = False
                    continue
                overtaken = record is None and not isinstance(envelope.event, StartWorkflow)
                if overtaken and delivery.num_delivered < UNKNOWN_WORKFLOW_DELIVERIES:
                    # With several nodes, an update can overtake the start it follows: retry it shortly.
                    await self._retry_later(delivery, RETRY_LATER_SECONDS / 2)
                    return
                if decision.rejected:
                    self._reject(envelope, decision.note)
                else:
                    self._log.info("event_ignored", reason=decision.note, event_kind=type(envelope.event).__name__)
                if record is not None and (answer := self._answer(envelope, decision, record.workflow)) is not None:
                    try:
                        await self._commit_answer(answer, delivery.stream_seq)
                    except CasConflict:
                        self._loaded = False
                        continue
                await delivery.ack()
                return
            try:
                answer = self._answer(envelope, decision, decision.workflow)
                await self._commit(decision, delivery.stream_seq, describe(envelope.event), answer)
            except CasConflict:
                self._loaded = False
                self._log.debug("cas_conflict", stream_seq=delivery.stream_seq)
                continue
            assert self._record is not None
            before, after = (record.workflow if record else None), self._record.workflow
            if not await self._still_ours(delivery):
                return  # frozen after our write: the node that took the event over performed its outbox
            began_or_ended = before is None or before.status.is_terminal != after.status.is_terminal
            await self._ctx.effects.perform(self._record.outbox, index=after if began_or_ended else None)
            await delivery.ack()
            if isinstance(envelope.event, ReconcileWorkflow):
                self._ctx.counters.workflows_repaired += 1
                self._log.warning("workflow_repaired", task_ids=envelope.event.task_ids,
                                  effects=len(self._record.outbox), status=after.status)  # fmt: skip
            self._log_transition(before, after)
            return
        self._loaded = False
        self._log.warning("event_contended", attempts=MAX_CAS_ATTEMPTS, stream_seq=delivery.stream_seq)
        await delivery.nak(RETRY_LATER_SECONDS)

    @staticmethod
    def _answer(envelope: Envelope, decision: Decision, workflow: Workflow) -> CommandAnswer | None:
        """The answer to an operator's command that asked for one (``commandId``): DONE when the decision
        changed the workflow, else the decider's refusal (or no-op) in its words."""
        command_id = getattr(envelope.event, "command_id", None)
        if not isinstance(command_id, str) or not command_id:
            return None
        if decision.workflow is not None:
            outcome, message = CommandOutcome.DONE, ""
        else:
            outcome, message = decision.outcome or CommandOutcome.CONFLICT, decision.note or ""
        return CommandAnswer(
            command_id=command_id, outcome=outcome, message=message, status=workflow.status, time=now_ms()
        )

    def _answers(self, answer: CommandAnswer | None) -> tuple[CommandAnswer, ...]:
        kept = self._record.answers if self._record is not None else ()
        return kept if answer is None else (*kept, answer)[-MAX_ANSWERS:]

    async def _commit_answer(self, answer: CommandAnswer, event_seq: int) -> None:
        """Record the answer to a command that changed nothing. The outbox is empty: this actor loaded the
        record fresh before deciding, and a pending outbox is performed on load (``_load``)."""
        assert self._record is not None
        record = WorkflowRecord(
            workflow=self._record.workflow, outbox=(), event_seq=event_seq, answers=self._answers(answer)
        )
        revision = await self._ctx.workflows.update(self._key, encode_record(record), self._revision)
        self._record, self._revision = record, revision

    def _reject(self, envelope: Envelope, reason: str | None) -> None:
        """A worker report that cannot be what it claims: a forgery, or a worker bug. Acked (redelivery cannot
        change the verdict), but loud and counted, unlike at-least-once noise."""
        self._ctx.counters.results_rejected += 1
        event = envelope.event
        task_id = event.task_id if isinstance(event, TaskResult | TaskStarted) else None
        worker_id = event.worker_id if isinstance(event, TaskResult | TaskStarted) else None
        self._log.warning(
            "result_rejected",
            reason=reason,
            task_id=task_id,
            subject_task_type=envelope.subject_task_type,
            worker_id=worker_id,
            event_kind=type(event).__name__,
            stream_seq=envelope.delivery.stream_seq,
        )

    async def _decide(self, state: Workflow | None, event: DeciderEvent) -> Decision:
        definition = state.workflow_definition if state else None
        if isinstance(event, WorkflowStartRequested):
            definition = event.definition
        decide_now = partial(
            decide,
            state,
            event,
            now_ms(),
            domain_active=self._ctx.presence.is_active,
            environment=self._ctx.environment,
            id_key=self._ctx.effects.message_id_key,
            task_defs=self._ctx.definitions.registered_task_defs,
        )
        if uses_scripts(definition):
            # A script may run up to its time limit: never on the event loop, and only a few at a time.
            return await anyio.to_thread.run_sync(decide_now, limiter=self._ctx.script_threads)
        return decide_now()

    async def _load(self, current_seq: int) -> None:
        entry = await self._ctx.workflows.get(self._key)
        if entry is None:
            self._record, self._revision = None, 0
        else:
            self._record, self._revision = decode_record(entry.value), entry.revision
            producer = self._record.event_seq
            if (
                # Even a history-only outbox: performing it before deciding keeps the history in order.
                self._record.outbox
                and producer != current_seq
                and await self._ctx.conn.stream_has_message(self._ctx.layout.events_stream, producer)
            ):
                self._log.info("outbox_recovered", producer_seq=producer, effects=len(self._record.outbox))
                await self._ctx.effects.perform(self._record.outbox, index=self._record.workflow)
        self._loaded = True

    async def _commit(
        self, decision: Decision, event_seq: int, cause: str, answer: CommandAnswer | None = None
    ) -> None:
        assert decision.workflow is not None
        before = self._record.workflow if self._record else None
        answers = self._answers(answer)

        def with_history(workflow: Workflow, effects: tuple[Effect, ...]) -> WorkflowRecord:
            if self._ctx.history:
                entry = history_entry(before, workflow, cause, now_ms(), event_seq)
                effects = (*effects, RecordHistory(entry=entry))
            return WorkflowRecord(workflow=workflow, outbox=effects, event_seq=event_seq, answers=answers)

        problem: str | None
        try:
            workflow, effects = await self._offloader.offload(decision.workflow, decision.effects)
        except PayloadError as exc:  # a payload over the maximum size: fail the workflow, saying which
            problem = str(exc)
        else:
            record = with_history(workflow, effects)
            data = encode_record(record)
            problem = self._size_problem(record, len(data))
        if problem is not None:
            failed = await self._failed_record(problem, event_seq, decision.workflow)
            record = with_history(failed.workflow, failed.outbox)
            data = encode_record(record)
            self._log.error("workflow_failed_oversized", reason=problem)
        if self._record is None:
            revision = await self._ctx.workflows.create(self._key, data)
        else:
            revision = await self._ctx.workflows.update(self._key, data, self._revision)
        self._record, self._revision = record, revision

    def _size_problem(self, record: WorkflowRecord, size: int) -> str | None:
        limit = self._ctx.conn.payload_limit
        if size > limit:
            return f"workflow state would grow to {size} bytes; the limit is {limit} bytes (server max_payload)"
        if size * JSON_EXPANSION + 4096 <= limit:
            # Every dispatch is in the record's outbox (msgpack); as JSON it is at most JSON_EXPANSION times
            # larger, plus its subjects: too small to exceed the limit, so skip encoding each one twice.
            return None
        for effect in record.outbox:
            if isinstance(effect, DispatchTask):
                task_size = len(self._ctx.effects.encode_dispatch(effect))
                if task_size > limit:
                    return (
                        f"task {effect.task.reference_task_name}: input is {task_size} bytes; "
                        f"the limit is {limit} bytes (server max_payload)"
                    )
        return None

    async def _failed_record(self, reason: str, event_seq: int, decided: Workflow) -> WorkflowRecord:
        """The previous state, FAILED with ``reason``: never lose the workflow itself. A workflow that could not
        even be recorded once keeps its identity and input (stored apart if large), without its tasks."""
        now = now_ms()
        previous = self._record.workflow if self._record else None
        base = previous or structs.replace(decided, tasks=(), output={}, variables={})
        if previous is None:
            try:
                path = await self._ctx.payloads.offload(self.workflow_id, base.input, "workflow input")
            except PayloadError:  # over the maximum size: the reason says why the workflow failed
                base, path = structs.replace(base, input={}), None
            if path is not None:
                base = structs.replace(base, input={}, external_input_payload_storage_path=path)
        failed = structs.replace(
            base, status=WorkflowStatus.FAILED, reason_for_incompletion=reason, end_time=now, update_time=now
        )
        notice = WorkflowFinished(workflow_id=self.workflow_id, status=failed.status, reason_for_incompletion=reason)
        outbox: tuple[Effect, ...] = (notice,)
        if failed.parent_workflow_id and failed.parent_workflow_task_id:  # a parent must not wait forever
            report = ChildFinished(
                workflow_id=failed.parent_workflow_id,
                task_id=failed.parent_workflow_task_id,
                child_workflow_id=self.workflow_id,
                status=failed.status,
                reason_for_incompletion=reason,
            )
            outbox = (notice, SendCommand(send_id=f"child:{self.workflow_id}:{failed.run_count}", command=report))
        return WorkflowRecord(workflow=failed, outbox=outbox, event_seq=event_seq)

    async def _decider_event(self, envelope: Envelope) -> DeciderEvent:
        try:
            event = await self._offloader.hydrate_event(envelope.event)
        except PayloadError as exc:  # only a start's input can fail this way: record the workflow FAILED
            assert isinstance(envelope.event, StartWorkflow)
            return WorkflowStartRequested(request=envelope.event, problem=f"workflow input: {exc}")
        match event:
            case StartWorkflow():
                if envelope.problem:
                    return WorkflowStartRequested(request=event, problem=envelope.problem)
                return await self._start_requested(event)
            case TaskResult():
                named, domain = (True, envelope.subject_domain[0]) if envelope.subject_domain else (False, None)
                return TaskResultReceived(
                    result=event,
                    subject_task_type=envelope.subject_task_type or "",
                    subject_names_domain=named,
                    subject_domain=domain,
                )
            case TaskStarted():
                named, domain = (True, envelope.subject_domain[0]) if envelope.subject_domain else (False, None)
                return TaskStartedReceived(
                    started=event,
                    subject_task_type=envelope.subject_task_type or "",
                    subject_names_domain=named,
                    subject_domain=domain,
                )
            case RestartWorkflow():
                return await self._restart_requested(event)
            case (
                UpdateTask()
                | TerminateWorkflow()
                | ChildFinished()
                | ReconcileWorkflow()
                | TimerFired()
                | PauseWorkflow()
                | ResumeWorkflow()
                | RetryWorkflow()
                | SkipTask()
                | RerunWorkflow()
            ):
                return event
            case _:
                assert_never(event)

    async def _restart_requested(self, command: RestartWorkflow) -> RestartRequested:
        """With ``useLatestDefinitions``, the latest registered definition (snapshotted like a start's)."""
        record = self._record
        if not command.use_latest_definitions or record is None:
            return RestartRequested(command=command)
        name = record.workflow.workflow_name
        found = await self._ctx.definitions.workflow_def(name, None)
        if found is None:
            return RestartRequested(command=command)
        return RestartRequested(command=command, definition=await self._snapshot(found))

    async def _snapshot(self, definition: WorkflowDef) -> WorkflowDef:
        """The definition with the registered TaskDef of every task attached (see ``snapshot_definition``)."""
        task_defs = {}
        for workflow_task in definition.iter_tasks():
            if workflow_task.task_definition is None:
                task_def = await self._ctx.definitions.task_def(workflow_task.name)
                if task_def is not None:
                    task_defs[workflow_task.name] = task_def
        return snapshot_definition(definition, task_defs)

    async def _start_requested(self, request: StartWorkflow) -> WorkflowStartRequested:
        if request.workflow_def is not None:
            definition = request.workflow_def
            problems = workflow_def_problems(definition)
            if problems:
                return WorkflowStartRequested(
                    request=request, problem="invalid inline workflowDef: " + "; ".join(problems)
                )
        else:
            found = await self._ctx.definitions.workflow_def(request.name, request.version)
            if found is None:
                version = request.version if request.version is not None else "null"
                problem = f"No such workflow defined. name={request.name}, version={version}"  # Conductor's words
                return WorkflowStartRequested(request=request, problem=problem)
            definition = found
        return WorkflowStartRequested(request=request, definition=await self._snapshot(definition))

    def _log_transition(self, before: Workflow | None, after: Workflow) -> None:
        if before is None:
            self._log.info("workflow_started", workflow_name=after.workflow_name, status=str(after.status))
        previous = {task.task_id: task.status for task in before.tasks} if before else {}
        for task in after.tasks:
            if previous.get(task.task_id) != task.status:
                self._log.info(
                    "task_" + task.status.lower(),
                    task_id=task.task_id,
                    task_ref=task.reference_task_name,
                    task_type=task.task_type,
                    retry_count=task.retry_count,
                    domain=task.domain,
                )
        if after.status.is_terminal and (before is None or not before.status.is_terminal):
            self._log.info(
                "workflow_" + after.status.lower(), reason=after.reason_for_incompletion, tasks=len(after.tasks)
            )
