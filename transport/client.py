"""The Python client: register definitions, start workflows, read and wait for them.

Everything it does is a documented NATS message or KV read (docs/protocol.md), so any NATS client can do the
same; this is the convenient way from Python.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Self

import anyio
import msgspec
import structlog

from partita.schemas import (
    CommandAnswer,
    CommandNotConfirmed,
    CommandOutcome,
    CommandRefused,
    HistoryEntry,
    Operation,
    PauseWorkflow,
    PayloadError,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SkipTask,
    StartWorkflow,
    TaskDef,
    TaskResultStatus,
    TerminateWorkflow,
    UnknownDefinition,
    UpdateTask,
    Workflow,
    WorkflowDef,
    WorkflowError,
    WorkflowNotFound,
    WorkflowStatus,
    WorkflowTimeout,
    parse_definitions,
)
from partita.schemas.limits import configured_limits

from .codec import decode_record, encode_json
from .connection import DEFAULT_URL, Connection, Credentials, KvBucket, connect
from .definitions import DefinitionStore
from .errors import PermissionDenied, ProvisioningError, TransportError, TransportTimeout
from .layout import Layout
from .payloads import PayloadStore, hydrate
from .provision import ensure_layout

_IDEMPOTENCY_NAMESPACE = uuid.UUID("0b0c4a53-63f0-4e43-8a0f-3f3f1b8a7d52")
# Completions are pushed on <prefix>.done.<id>; core NATS can drop a notice across a reconnect, so a waiter
# also re-reads the record this often as a safety net.
_WAIT_RECHECK_SECONDS = 5.0
# A start is published with a message id its retries share, so retrying it is safe: ride out a cluster failover.
START_PATIENCE_SECONDS = 15.0
log = structlog.get_logger(__name__)
_IDEMPOTENCY_LOOKAHEAD = 3

# How long a command waits for the owning node's answer (a node normally answers in milliseconds).
ANSWER_PATIENCE_SECONDS = 30.0
# How long a command for a workflow with no record yet waits for it to appear (a start just published).
NOT_FOUND_GRACE_SECONDS = 2.0
OperatorCommand = UpdateTask | TerminateWorkflow | Operation

_history_decoder = msgspec.json.Decoder(HistoryEntry)


def describe_command(command: OperatorCommand) -> str:
    """``terminate of workflow <id>``, ``complete of task <ref> of workflow <id>``...: for messages."""
    verb = {
        TerminateWorkflow: "terminate",
        PauseWorkflow: "pause",
        ResumeWorkflow: "resume",
        RetryWorkflow: "retry",
        RestartWorkflow: "restart",
        SkipTask: "skip",
        RerunWorkflow: "rerun",
        UpdateTask: "update",
    }[type(command)]
    if isinstance(command, UpdateTask | SkipTask):
        return f"{verb} of task {command.task_ref_name} of workflow {command.workflow_id}"
    return f"{verb} of workflow {command.workflow_id}"


def workflow_id_for(name: str, idempotency_key: str) -> str:
    """The workflow id a start with ``idempotency_key`` gets: the same key always yields the same id."""
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{name}\x00{idempotency_key}"))


class Client:
    """``async with await Client.connect(url) as client: ...`` (or ``Client.connect`` then ``aclose``)."""

    def __init__(
        self, conn: Connection, layout: Layout, workflows: KvBucket, definitions: DefinitionStore, *, owns: bool
    ) -> None:
        self.conn = conn
        self.layout = layout
        self._workflows = workflows
        self.definitions = definitions
        self._owns = owns
        self.payloads = PayloadStore(conn, layout)
        # Definitions known to be registered: a start checks each (name, version) once per client, and
        # concurrent first starts share one lookup (a lookup of the latest version lists keys with a consumer).
        self._defined: set[tuple[str, int | None]] = set()
        self._defining = anyio.Lock()

    @classmethod
    async def connect(
        cls,
        servers: str | Sequence[str] = DEFAULT_URL,
        *,
        prefix: str = "partita",
        provision: bool = True,
        name: str = "partita-client",
        credentials: Credentials | None = None,
    ) -> Self:
        """Connect and (unless ``provision=False``) make sure the streams and buckets exist (an identity that may
        not create them, see ``partita auth``, only checks that they do)."""
        conn = await connect(servers, name=name, credentials=credentials)
        try:
            return await cls.over(conn, Layout(prefix=prefix), provision=provision, owns=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.aclose()
            raise

    @classmethod
    async def over(cls, conn: Connection, layout: Layout, *, provision: bool = True, owns: bool = False) -> Self:
        """A client on an existing connection (closing the client then leaves the connection open).

        On an open server the client creates missing streams and buckets (``provision``). An authenticated
        connection never does (``partita auth`` gives that to nodes, and the check alone would read streams a
        client may not): a bucket that is not there yet is a :class:`ProvisioningError` saying so."""
        if provision and conn.identity is None:
            await ensure_layout(conn, layout)
        try:
            workflows = await conn.kv(layout.workflows_bucket)
            definitions = DefinitionStore(await conn.kv(layout.definitions_bucket), layout)
        except ProvisioningError as exc:
            raise ProvisioningError(
                f"{exc}: the deployment's streams and buckets do not exist yet; a node creates them when it first "
                "starts"
            ) from exc
        return cls(conn, layout, workflows, definitions, owns=owns)

    async def aclose(self) -> None:
        if self._owns:
            await self.conn.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()

    # --- definitions --------------------------------------------------------------------------------

    async def register(self, *definitions: TaskDef | WorkflowDef) -> None:
        """Validate and store definitions; raises :class:`DefinitionError` listing every problem, and
        :class:`PermissionDenied` for an identity that may not register (only ``admin`` and ``node`` may)."""
        for definition in definitions:
            started = time.monotonic()
            try:
                await self.definitions.put(definition)
            except TransportError as exc:
                bucket = f"$KV.{self.layout.definitions_bucket}."
                raise self.conn.explain(exc, started, f"register {definition.name}", bucket) from exc

    async def register_json(self, data: bytes | str, *, source: str = "input") -> list[TaskDef | WorkflowDef]:
        """Register Conductor JSON (a WorkflowDef, a TaskDef, or a list of them); returns what was stored."""
        parsed = parse_definitions(data, source=source)
        await self.register(*parsed)
        return parsed

    # --- workflows ----------------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        input: Mapping[str, object] | None = None,
        *,
        version: int | None = None,
        correlation_id: str | None = None,
        task_to_domain: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_strategy: str = "RETURN_EXISTING",
        workflow_def: WorkflowDef | None = None,
        priority: int = 0,
    ) -> str:
        """Publish a start message; returns the workflow id once JetStream has stored the message.

        With ``idempotency_key`` the id derives from (name, key), and ``idempotency_strategy`` decides what a
        repeated start does (Orkes' semantics): ``RETURN_EXISTING`` returns the workflow already started,
        ``FAIL`` raises :class:`WorkflowError` if one exists, ``FAIL_ON_RUNNING`` raises only while it runs and
        otherwise starts a new one. Duplicate start *messages* never make two workflows, whatever the strategy.
        """
        if input is not None and not isinstance(input, Mapping):
            raise PayloadError(f"workflow input must be a JSON object, got {type(input).__name__}")
        _check_depth("workflow input", input)
        if workflow_def is None:
            await self._check_defined(name, version)
        if idempotency_key is None:
            workflow_id = str(uuid.uuid4())
        else:
            workflow_id = await self._idempotent_id(name, idempotency_key, idempotency_strategy)
        inline = dict(input or {})
        stored = await self.payloads.offload(workflow_id, inline, "workflow input")  # large: in the object store
        message = StartWorkflow(
            workflow_id=workflow_id,
            name=name,
            version=version,
            input={} if stored else inline,
            external_input_payload_storage_path=stored,
            correlation_id=correlation_id,
            task_to_domain=dict(task_to_domain or {}),
            idempotency_key=idempotency_key,
            priority=priority,
            workflow_def=workflow_def,
        )
        data = encode_json(message)
        if len(data) > self.conn.payload_limit:
            raise PayloadError(f"start message is {len(data)} bytes; the limit is {self.conn.payload_limit} bytes")
        # Retries of this publish share the id (and are deduplicated); nobody can guess it in advance. A worker
        # may publish on the events stream with any id, and one that guessed a start's would make JetStream
        # drop the start as a duplicate. Another start of the same id is harmless: the node ignores it.
        subject, msg_id = self.layout.start_subject(workflow_id), f"start:{workflow_id}:{uuid.uuid4().hex}"
        await self.conn.publish_durable(subject, data, msg_id=msg_id, retry_for=START_PATIENCE_SECONDS)
        return workflow_id

    async def _check_defined(self, name: str, version: int | None) -> None:
        """Refuse, before anything is stored, a start of a definition that is not registered (Conductor's
        ``No such workflow defined``). An identity that may start workflows but not read definitions skips
        the check, as does a start while the definitions bucket does not answer (a failover); such a start of an
        unknown name is recorded FAILED by the node, with the same reason. A
        definition once found is not looked up again by this client: definitions are only ever added, and a
        start that races a removal is still recorded FAILED by the node."""
        if (name, version) in self._defined:
            return
        async with self._defining:
            if (name, version) in self._defined:
                return
            try:
                found = await self.definitions.workflow_def(name, version)
            except PermissionDenied:
                return
            except TransportError as exc:  # a failover: the start must still go through; the node checks too
                log.warning("definition check skipped", workflow_name=name, version=version, error=str(exc))
                return
            if found is not None:
                self._defined.add((name, version))
        if found is None:
            shown = version if version is not None else "null"
            raise UnknownDefinition(f"No such workflow defined. name={name}, version={shown}")

    async def update_task(
        self,
        workflow_id: str,
        task_ref_name: str,
        status: TaskResultStatus | str,
        output: Mapping[str, object] | None = None,
        *,
        reason: str | None = None,
        within: float | None = None,
    ) -> CommandAnswer:
        """Update the pending task ``task_ref_name`` of a workflow (Conductor's
        ``POST /tasks/{workflowId}/{taskRefName}/{status}``): how WAIT and HUMAN tasks are completed.

        Like every command, answered by the node that owns the workflow (see :meth:`_command`):
        :class:`CommandRefused` (``NOT_FOUND``) when no task with that reference is pending."""
        _check_depth("task output", output)
        message = UpdateTask(
            workflow_id=workflow_id,
            task_ref_name=task_ref_name,
            status=TaskResultStatus(status),
            output_data=dict(output or {}),
            reason_for_incompletion=reason,
            worker_id=self.conn.client_name or None,
        )
        return await self._command(message, within=within)

    async def pause(self, workflow_id: str, *, within: float | None = None) -> CommandAnswer:
        """Pause a RUNNING workflow: running tasks finish, nothing new is scheduled until :meth:`resume`."""
        return await self._command(PauseWorkflow(workflow_id=workflow_id), within=within)

    async def resume(self, workflow_id: str, *, within: float | None = None) -> CommandAnswer:
        return await self._command(ResumeWorkflow(workflow_id=workflow_id), within=within)

    async def retry(self, workflow_id: str, *, within: float | None = None) -> CommandAnswer:
        """Retry a FAILED, TIMED_OUT or TERMINATED workflow from its last failed tasks."""
        return await self._command(RetryWorkflow(workflow_id=workflow_id), within=within)

    async def restart(
        self, workflow_id: str, *, use_latest_definitions: bool = False, within: float | None = None
    ) -> CommandAnswer:
        """Run an ended workflow again from its first task (same id and input)."""
        command = RestartWorkflow(workflow_id=workflow_id, use_latest_definitions=use_latest_definitions)
        return await self._command(command, within=within)

    async def skip_task(
        self,
        workflow_id: str,
        task_ref_name: str,
        *,
        task_input: Mapping[str, object] | None = None,
        task_output: Mapping[str, object] | None = None,
        within: float | None = None,
    ) -> CommandAnswer:
        """Skip a task of a RUNNING workflow before it is scheduled: it is recorded SKIPPED."""
        _check_depth("task input", task_input)
        _check_depth("task output", task_output)
        command = SkipTask(
            workflow_id=workflow_id,
            task_ref_name=task_ref_name,
            task_input=dict(task_input or {}),
            task_output=dict(task_output or {}),
        )
        return await self._command(command, within=within)

    async def rerun(
        self,
        workflow_id: str,
        *,
        from_task_id: str | None = None,
        workflow_input: Mapping[str, object] | None = None,
        task_input: Mapping[str, object] | None = None,
        within: float | None = None,
    ) -> CommandAnswer:
        """Run an ended workflow again from a task (later tasks dropped), or from the start."""
        _check_depth("workflow input", workflow_input)
        _check_depth("task input", task_input)
        command = RerunWorkflow(
            workflow_id=workflow_id,
            re_run_from_task_id=from_task_id,
            workflow_input=dict(workflow_input) if workflow_input is not None else None,
            task_input=dict(task_input) if task_input is not None else None,
        )
        return await self._command(command, within=within)

    async def terminate(
        self, workflow_id: str, reason: str | None = None, *, within: float | None = None
    ) -> CommandAnswer:
        """Terminate a running workflow: TERMINATED, pending tasks CANCELED, sub-workflows terminated."""
        return await self._command(TerminateWorkflow(workflow_id=workflow_id, reason=reason), within=within)

    async def _command(self, command: OperatorCommand, *, within: float | None = None) -> CommandAnswer:
        """Publish ``command`` with a fresh ``commandId`` and return the owning node's answer, which it writes
        into the workflow's record in the same compare-and-set as the decision (so the answer is exactly what
        happened, whatever else raced it). Raises :class:`WorkflowNotFound` for an unknown workflow (nothing is
        published), :class:`CommandRefused` with Conductor's reason, or :class:`CommandNotConfirmed` when no
        node answered within ``within`` seconds (default :data:`ANSWER_PATIENCE_SECONDS`): the command is
        durable and is applied when a node takes it."""
        patience = ANSWER_PATIENCE_SECONDS if within is None else within
        command_id = uuid.uuid4().hex
        command = msgspec.structs.replace(command, command_id=command_id)
        workflow_id = command.workflow_id
        watched = self._workflows.watch(self.layout.workflow_key(workflow_id), deletes=True)
        async with contextlib.aclosing(watched) as updates:
            current = await anext(updates)  # the record as it is now, then None (or just None)
            if current is not None:
                await anext(updates)
            else:
                # A start returns once it is stored, before a node has recorded the workflow: a command sent
                # right after it waits a moment for the record rather than calling the workflow unknown.
                with anyio.move_on_after(NOT_FOUND_GRACE_SECONDS):
                    current = await anext(updates)
            if current is None or current.deleted:
                raise WorkflowNotFound(workflow_id)
            await self.conn.publish_durable(self.layout.command_subject(workflow_id), encode_json(command))
            with anyio.move_on_after(patience):
                async for entry in updates:
                    if entry is None:
                        continue
                    if entry.deleted:
                        raise WorkflowNotFound(workflow_id)
                    for answer in decode_record(entry.value).answers:
                        if answer.command_id == command_id:
                            if answer.outcome is not CommandOutcome.DONE:
                                raise CommandRefused(answer.outcome, answer.message)
                            return answer
        raise CommandNotConfirmed(
            f"{describe_command(command)} is stored, but no node answered within {patience:g} s "
            "(is a node running?); it is applied when one takes it"
        )

    async def complete_task(
        self, workflow_id: str, task_ref_name: str, output: Mapping[str, object] | None = None
    ) -> CommandAnswer:
        return await self.update_task(workflow_id, task_ref_name, TaskResultStatus.COMPLETED, output)

    async def fail_task(
        self,
        workflow_id: str,
        task_ref_name: str,
        reason: str,
        output: Mapping[str, object] | None = None,
        *,
        terminal: bool = False,
    ) -> CommandAnswer:
        status = TaskResultStatus.FAILED_WITH_TERMINAL_ERROR if terminal else TaskResultStatus.FAILED
        return await self.update_task(workflow_id, task_ref_name, status, output, reason=reason)

    async def list(
        self,
        *,
        name: str | None = None,
        status: WorkflowStatus | str | None = None,
        correlation_id: str | None = None,
        limit: int = 100,
    ) -> list[Workflow]:
        """Workflows matching every filter given, newest first, at most ``limit``. Reads the whole bucket in one
        streamed pass (a KV watch): fine for thousands of workflows; search at scale needs an index. Payloads in
        the object store are not loaded (their paths are set): ``get`` one workflow for them."""
        wanted = WorkflowStatus(status) if status is not None else None
        found: list[Workflow] = []
        for entry in await self._workflows.values():
            workflow = decode_record(entry.value).workflow
            if name is not None and workflow.workflow_name != name:
                continue
            if wanted is not None and workflow.status is not wanted:
                continue
            if correlation_id is not None and workflow.correlation_id != correlation_id:
                continue
            found.append(workflow)
        found.sort(key=lambda w: w.create_time, reverse=True)
        return found[:limit]

    async def remove(self, workflow_id: str) -> None:
        """Delete an ended workflow's record (Conductor's ``DELETE /workflow/{id}/remove``)."""
        workflow = await self.find(workflow_id, payloads=False)
        if workflow is None:
            raise WorkflowNotFound(workflow_id)
        if not workflow.status.is_terminal:
            raise WorkflowError(f"cannot remove workflow {workflow_id!r}: it is {workflow.status}; terminate it first")
        await self.payloads.delete_workflow(workflow_id)  # first: a failure here leaves the record to retry with
        await self._workflows.delete(self.layout.workflow_key(workflow_id))

    async def _idempotent_id(self, name: str, key: str, strategy: str) -> str:
        if strategy not in ("RETURN_EXISTING", "FAIL", "FAIL_ON_RUNNING"):
            choices = "RETURN_EXISTING, FAIL or FAIL_ON_RUNNING"
            raise WorkflowError(f"idempotency strategy must be {choices}, not {strategy!r}")
        # Runs of one key have ids key, key#1, key#2, ...; find the newest that exists (a removed one may leave a
        # gap, so look a few ids past the first missing one).
        latest: tuple[int, Workflow] | None = None
        run, missing = 0, 0
        while missing < _IDEMPOTENCY_LOOKAHEAD:
            existing = await self.find(workflow_id_for(name, key if run == 0 else f"{key}#{run}"), payloads=False)
            if existing is None:
                missing += 1
            else:
                latest, missing = (run, existing), 0
            run += 1
        if latest is None:
            return workflow_id_for(name, key)
        number, workflow = latest
        if strategy == "RETURN_EXISTING":
            return workflow.workflow_id
        if strategy == "FAIL" or not workflow.status.is_terminal:
            raise WorkflowError(
                f"a workflow with idempotency key {key!r} exists ({workflow.workflow_id}, {workflow.status}); "
                f"strategy {strategy} refuses another"
            )
        return workflow_id_for(name, f"{key}#{number + 1}")  # FAIL_ON_RUNNING, the last run ended: a new run

    async def find(self, workflow_id: str, *, payloads: bool = True) -> Workflow | None:
        """The workflow, or None. Large inputs and outputs kept in the payloads object store are loaded into
        their maps (their ``external*PayloadStoragePath`` stays set) unless ``payloads=False``."""
        entry = await self._workflows.get(self.layout.workflow_key(workflow_id))
        if entry is None:
            return None
        workflow = decode_record(entry.value).workflow
        return await hydrate(self.payloads, workflow) if payloads else workflow

    async def history(self, workflow_id: str, *, limit: int = 10_000) -> Sequence[HistoryEntry]:
        """Every recorded transition of the workflow, oldest first (empty for an unknown workflow, or one whose
        history has aged out of the stream)."""
        subject = self.layout.history_subject(workflow_id)
        raw = await self.conn.read_subject(self.layout.history_stream, subject, limit=limit)
        return [_history_decoder.decode(data) for data in raw]

    async def get(self, workflow_id: str) -> Workflow:
        """The workflow as last written; raises :class:`WorkflowNotFound` (a start not yet processed, too)."""
        workflow = await self.find(workflow_id)
        if workflow is None:
            raise WorkflowNotFound(workflow_id)
        return workflow

    async def wait(self, workflow_id: str, *, within: float | None = None) -> Workflow:
        """Wait until the workflow is terminal and return it; :class:`WorkflowTimeout` after ``within`` s."""
        subscription = await self.conn.subscribe(self.layout.done_subject(workflow_id))
        try:
            with anyio.fail_after(within):
                while True:
                    workflow = await self.find(workflow_id, payloads=False)
                    if workflow is not None and workflow.status.is_terminal:
                        return await hydrate(self.payloads, workflow)
                    try:
                        await subscription.next(_WAIT_RECHECK_SECONDS)
                    except TransportTimeout:
                        continue
        except TimeoutError as exc:
            raise WorkflowTimeout(workflow_id, within or 0) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.aclose()

    async def watch(self, workflow_id: str) -> AsyncIterator[Workflow]:
        """Every state the workflow passes through from now on (pushed by a KV watch), ending when terminal."""
        async for entry in self._workflows.watch(self.layout.workflow_key(workflow_id)):
            if entry is None:
                continue
            workflow = await hydrate(self.payloads, decode_record(entry.value).workflow)
            yield workflow
            if workflow.status.is_terminal:
                return


def _check_depth(what: str, payload: Mapping[str, object] | None) -> None:
    """Refuse here, clearly, what a node would refuse (and what would exhaust the encoder's stack first)."""
    problem = None if payload is None else configured_limits().payload_problem(what, payload)
    if problem is not None:
        raise PayloadError(problem)
