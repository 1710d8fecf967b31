"""The worker SDK: ``@worker_task`` functions, each run by a :class:`TaskWorker` subscriber actor.

A worker needs nothing but NATS: it binds the durable pull consumer of its (task type, domain), fetches no
more messages than it has free slots, runs the function (sync functions in threads, async ones in its task
group), publishes the :class:`TaskResult` to the subject the task names and waits for JetStream's PubAck, and
only then acks the task message. Retry semantics are types: a plain exception is FAILED (retried per the
TaskDef), :class:`TerminalError` is FAILED_WITH_TERMINAL_ERROR, returning :class:`InProgress` hands the task
back to be delivered again after ``callback_after`` seconds.

A task message is delivered again when its previous delivery outlived the consumer's AckWait, a short lease
that the holder extends up to the TaskDef's ``responseTimeoutSeconds`` (see :mod:`.task_lease`): the delivery
was lost on its way, or the worker holding it died, or it ran past its response timeout. A redelivery older
than the response timeout is not run again: the receiver reports ``TIMED_OUT``, and the node retries the task
as a new instance, as Conductor does; a younger one simply runs. A worker that hands a task back on purpose
(shutdown, rate limit) publishes a fresh copy and acks the original instead of nak-ing it, so a hand-back is
never counted as a redelivery.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import math
import os
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, final

import anyio
import anyio.to_thread
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from partita.schemas import (
    PayloadError,
    TaskMessage,
    TaskResult,
    TaskResultStatus,
    TaskStarted,
    WorkerAnnouncement,
)
from partita.schemas.limits import configured_limits
from partita.transport import (
    Connection,
    Delivery,
    KvBucket,
    Layout,
    PullConsumer,
    TransportError,
    dead_letter,
    ensure_layout,
    ensure_task_consumer,
    find_task_consumer,
)
from partita.transport.codec import decode, encode_json, task_decoder, task_identity_decoder
from partita.transport.payloads import PayloadStore
from partita.transport.ratelimit import take as take_rate_slot

from .presence import ANNOUNCE_INTERVAL_SECONDS
from .task_lease import TASK_LEASE_SECONDS, extensions, lease, redelivery_verdict, response_timeout

log = structlog.get_logger(__name__)

FETCH_MAX_WAIT: Final = 1.0
BIND_POLL_SECONDS: Final = 0.25  # an authenticated worker looks for its consumer this often until a node makes it
BIND_WARNING_SECONDS: Final = 10.0
BIND_RETRY_SECONDS: Final = 1.0  # an open-server worker asks again this often while its consumer request fails
BIND_PATIENCE_SECONDS: Final = 120.0  # ... and gives up (exits with the error) after this long
RESULT_PUBLISH_ATTEMPTS: Final = 8  # backing off 0.5, 1, 2, then 4 s: about 20 s, a cluster failover included
RESULT_PUBLISH_GRACE: Final = 30.0


class TerminalError(Exception):
    """Raise to fail the task without retries (FAILED_WITH_TERMINAL_ERROR), as Conductor's
    ``NonRetryableException``."""


@dataclass(frozen=True, slots=True)
class InProgress:
    """Return to report progress and have the task delivered again after ``callback_after`` seconds."""

    callback_after: int = 0
    output: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failure:
    """Return to fail the task with ``output`` kept (an exception carries only a reason)."""

    reason: str
    output: dict[str, object] = field(default_factory=dict)
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    task_type: str
    function: Callable[..., object]
    domain: str | None = None
    concurrency: int = 1
    lease_extend: bool = False
    # Report a redelivered task TIMED_OUT (Conductor's responseTimeoutSeconds) instead of running it again.
    # Nodes turn it off for HTTP/EVENT, which Conductor re-executes rather than times out.
    redelivery_times_out: bool = True

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


_registry: list[WorkerSpec] = []


def worker_task(
    task_type: str, *, domain: str | None = None, concurrency: int = 1, lease_extend: bool = False
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Declare ``function`` the worker for ``task_type`` (in ``domain``; None = no domain).

    Parameters are bound by name from the task's ``inputData`` (missing ones get their default, else None);
    a parameter annotated ``TaskMessage`` receives the whole task. A returned dict is the output; any other
    value ``v`` becomes ``{"result": v}``. ``concurrency`` caps executions in flight; ``lease_extend`` sends
    heartbeats so a task may run longer than its ``responseTimeoutSeconds``.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")

    def register(function: Callable[..., object]) -> Callable[..., object]:
        _registry.append(WorkerSpec(task_type, function, domain, concurrency, lease_extend))
        return function

    return register


def registered_workers() -> list[WorkerSpec]:
    return list(_registry)


def load_workers(modules: Sequence[str]) -> list[WorkerSpec]:
    """Import ``modules`` and return the workers they declared."""
    for module in modules:
        importlib.import_module(module)
    wanted = set(modules)
    return [spec for spec in _registry if spec.function.__module__ in wanted]


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    takes_task: bool
    default: object


def _parameters(function: Callable[..., object]) -> tuple[_Parameter, ...]:
    """How to bind a worker function's parameters, worked out once (``inspect.signature`` is slow)."""
    found = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = parameter.annotation
        takes_task = annotation is TaskMessage or annotation == "TaskMessage"
        default = None if parameter.default is parameter.empty else parameter.default
        found.append(_Parameter(name, takes_task, default))
    return tuple(found)


def _bind_arguments(parameters: tuple[_Parameter, ...], task: TaskMessage) -> dict[str, object]:
    inputs = task.input_data
    return {p.name: task if p.takes_task else inputs.get(p.name, p.default) for p in parameters}


class WorkerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    task_type: str
    domain: str | None
    executed: int
    failed: int
    in_flight: int


@final
class TaskWorker:
    """Runs one :class:`WorkerSpec`: the subscriber actor of its (task type, domain) consumer."""

    def __init__(
        self,
        conn: Connection,
        spec: WorkerSpec,
        layout: Layout | None = None,
        *,
        worker_id: str | None = None,
        stop_grace: float = 30.0,
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.layout = layout or Layout()
        self.worker_id = worker_id or default_worker_id()
        self._stop_grace = stop_grace
        self._stopping = anyio.Event()
        self._slot_freed = anyio.Event()
        self._threads = anyio.CapacityLimiter(spec.concurrency)
        self._parameters = _parameters(spec.function)
        self._ack_wait = TASK_LEASE_SECONDS  # the consumer's AckWait, read when binding
        self._limits: KvBucket | None = None
        self._payloads = PayloadStore(conn, self.layout)
        self._in_flight: set[Delivery] = set()
        self._executed = 0
        self._failed = 0
        self._log = log.bind(task_type=spec.task_type, domain=spec.domain, worker_id=self.worker_id)

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            task_type=self.spec.task_type,
            domain=self.spec.domain,
            executed=self._executed,
            failed=self._failed,
            in_flight=len(self._in_flight),
        )

    def request_stop(self) -> None:
        self._stopping.set()

    async def _bind(self) -> str | None:
        """The consumer's name once it exists (None if asked to stop first). On an open server the worker
        creates a missing consumer itself. An authenticated worker may not (``partita auth`` grants it fetch
        and ack only): it announces itself, and a node that hears it creates the consumer."""
        spec = self.spec
        if self.conn.identity is None:
            return await self._bind_open()
        subject = self.layout.worker_announce_subject(spec.task_type, spec.domain)
        payload = self._announcement()
        since, warned = time.monotonic(), False
        while not self._stopping.is_set():
            try:
                found = await find_task_consumer(self.conn, self.layout, spec.task_type, spec.domain)
            except TransportError as exc:  # a cluster electing leaders, a reconnect: ask again
                self._log.warning("consumer_lookup_failed", error=str(exc))
                found = None
            if found is not None:
                name, self._ack_wait = found
                return name
            with contextlib.suppress(TransportError):
                await self.conn.publish(subject, payload)
            if not warned and time.monotonic() - since > BIND_WARNING_SECONDS:
                warned = True
                self._log.warning(
                    "worker_waiting_for_consumer",
                    consumer=self.layout.task_consumer(spec.task_type, spec.domain),
                    hint="a node creates it when it hears this worker: is a node running in this deployment?",
                )
            with anyio.move_on_after(BIND_POLL_SECONDS):
                await self._stopping.wait()
        return None

    async def _bind_open(self) -> str | None:
        """Find or create the consumer, waiting out a cluster that is electing leaders (its requests time out
        for seconds) for up to BIND_PATIENCE_SECONDS rather than exiting."""
        spec = self.spec
        deadline = time.monotonic() + BIND_PATIENCE_SECONDS
        while not self._stopping.is_set():
            try:
                name, self._ack_wait = await ensure_task_consumer(
                    self.conn,
                    self.layout,
                    spec.task_type,
                    spec.domain,
                    ack_wait_seconds=TASK_LEASE_SECONDS,
                    adopt_existing=True,
                )
                return name
            except TransportError as exc:
                if time.monotonic() > deadline:
                    raise
                self._log.warning("consumer_bind_failed", error=str(exc))
            with anyio.move_on_after(BIND_RETRY_SECONDS):
                await self._stopping.wait()
        return None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        name = await self._bind()
        if name is None:
            task_status.started()
            return
        consumer = await self.conn.pull_consumer(self.layout.tasks_stream, name)
        self._limits = await self.conn.kv(self.layout.limits_bucket)
        self._log.info("worker_started", consumer=name, concurrency=self.spec.concurrency)
        try:
            async with anyio.create_task_group() as executions:
                executions.start_soon(self._announce)
                task_status.started()
                await self._fetch_loop(consumer, executions)
                # Graceful stop: no more fetching; give running tasks the grace period, then cancel them.
                with anyio.move_on_after(self._stop_grace):
                    while self._in_flight:
                        await self._wait_slot()
                executions.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for delivery in list(self._in_flight):
                    with anyio.move_on_after(1):
                        await self._hand_back(delivery)
                await consumer.aclose()
            self._log.info("worker_stopped", executed=self._executed, handed_back=len(self._in_flight))

    def _announcement(self) -> bytes:
        return encode_json(
            WorkerAnnouncement(task_type=self.spec.task_type, domain=self.spec.domain, worker_id=self.worker_id)
        )

    async def _announce(self) -> None:
        """Say "a worker for (type, domain) is alive" every few seconds, for taskToDomain fallback lists."""
        subject = self.layout.worker_announce_subject(self.spec.task_type, self.spec.domain)
        payload = self._announcement()
        while not self._stopping.is_set():
            with contextlib.suppress(TransportError):  # a missed announcement only delays routing to us
                await self.conn.publish(subject, payload)
            with anyio.move_on_after(ANNOUNCE_INTERVAL_SECONDS):
                await self._stopping.wait()

    async def _wait_slot(self) -> None:
        await self._slot_freed.wait()
        self._slot_freed = anyio.Event()

    async def _fetch_loop(self, consumer: PullConsumer, executions: TaskGroup) -> None:
        while not self._stopping.is_set():
            free = self.spec.concurrency - len(self._in_flight)
            if free <= 0:
                with anyio.move_on_after(FETCH_MAX_WAIT):
                    await self._wait_slot()
                continue
            try:
                deliveries = await consumer.fetch(free, FETCH_MAX_WAIT)
            except TransportError as exc:
                self._log.warning("fetch_failed", error=str(exc))
                with anyio.move_on_after(1.0):
                    await self._stopping.wait()
                continue
            for index, delivery in enumerate(deliveries):
                # nats-py may hand over more than was asked for (its pending queue). An extra that waited here
                # for a slot could outlive its AckWait and be timed out while it runs: give extras back at once.
                if self._stopping.is_set() or len(self._in_flight) >= self.spec.concurrency:
                    for extra in deliveries[index:]:
                        await self._hand_back(extra)
                    break
                self._in_flight.add(delivery)
                executions.start_soon(self._execute, delivery)

    async def _execute(self, delivery: Delivery) -> None:
        try:
            await self._execute_one(delivery)
        except Exception:
            # A bug in the SDK, not in the task function (whose errors become FAILED results): log it and hand
            # the task back, without taking the other executions down.
            self._log.exception("task_execution_crashed", subject=delivery.subject)
            await self._hand_back_shielded(delivery)
        except BaseException:
            # Cancelled at shutdown after the grace period: hand the task back now, not after its AckWait.
            await self._hand_back_shielded(delivery)
            raise
        finally:
            self._in_flight.discard(delivery)
            self._slot_freed.set()

    async def _hand_back_shielded(self, delivery: Delivery) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await self._hand_back(delivery)

    async def _hand_back(self, delivery: Delivery, *, task_id: str | None = None, delay: float = 0.0) -> None:
        """Give a task back without it counting as a response timeout: publish a fresh copy of the message
        (delivered now, or after ``delay`` seconds through a message schedule) and ack this delivery.

        If the copy cannot be published, nak instead: the task comes back (well within its AckWait, so it runs
        again rather than counting as a response timeout). A copy published whose original is then
        delivered again (the ack was lost) runs an attempt the workflow has already moved past: its result is
        ignored.
        """
        if self.conn.identity is not None:
            await self._hand_back_in_progress(delivery, delay)
            return
        msg_id = f"handback:{delivery.stream_seq}"
        try:
            if not await self.conn.stream_has_message(self.layout.tasks_stream, delivery.stream_seq):
                # Purged meanwhile (its workflow canceled or timed out the task): there is nothing to give back.
                with contextlib.suppress(TransportError):
                    await delivery.ack()
                return
            if delay > 0 and task_id is not None:
                at = time.time_ns() // 1_000_000 + int(delay * 1000)
                schedule = self.layout.task_schedule_subject(task_id)
                await self.conn.publish_at(schedule, delivery.subject, at, delivery.data, msg_id=msg_id)
            else:
                await self.conn.publish_durable(delivery.subject, delivery.data, msg_id=msg_id)
        except TransportError as exc:
            self._log.warning("task_hand_back_failed", subject=delivery.subject, error=str(exc))
            with contextlib.suppress(TransportError):
                await delivery.nak(delay or None)
            return
        with contextlib.suppress(TransportError):
            await delivery.ack()

    async def _hand_back_in_progress(self, delivery: Delivery, delay: float) -> None:
        """An authenticated worker may not republish task messages (that grant would let it write into any
        queue) nor read the task stream: it hands a task back as Conductor's workers do, reporting IN_PROGRESS
        with ``callbackAfterSeconds``; the node delivers the task again then (``pollCount`` + 1)."""
        try:
            task = decode(task_decoder, delivery.data, "task message")
        except PayloadError:
            task = None
        published = task is not None and await self._publish_result(
            task,
            TaskResult(
                workflow_instance_id=task.workflow_instance_id,
                task_id=task.task_id,
                task_type=self.spec.task_type,
                status=TaskResultStatus.IN_PROGRESS,
                callback_after_seconds=math.ceil(delay),
                worker_id=self.worker_id,
                poll_count=task.poll_count,
            ),
        )
        with contextlib.suppress(TransportError):
            await (delivery.ack() if published else delivery.nak(delay or None))

    async def _execute_one(self, delivery: Delivery) -> None:
        try:
            task = decode(task_decoder, delivery.data, "task message")
        except PayloadError as exc:
            self._log.error("task_rejected", subject=delivery.subject, error=str(exc))
            await self._report_undecodable(delivery, str(exc))
            with contextlib.suppress(TransportError):  # not kept, so not terminated: it comes back
                await dead_letter(self.conn, self.layout, delivery, str(exc))
            return
        timeout = response_timeout(task.response_timeout_seconds)
        if delivery.num_delivered > 1 and self.spec.redelivery_times_out:
            reason = redelivery_verdict(time.time() - delivery.published, delivery.num_delivered, timeout)
            if reason is not None:
                await self._report_response_timeout(delivery, task, reason)
                return
            self._log.info("task_redelivered_early", stream_seq=delivery.stream_seq, deliveries=delivery.num_delivered)
        held = lease(self._ack_wait, timeout)
        times = extensions(held, timeout, unbounded=self.spec.lease_extend)
        first = next(times, None)
        if first is None:  # the lease reaches the response deadline: nothing to extend
            await self._run(delivery, task)
            return
        # Extensions from receipt to ack: loading, running and reporting all count.
        async with anyio.create_task_group() as heartbeat:
            heartbeat.start_soon(self._heartbeat, delivery, held, itertools.chain((first,), times))
            await self._run(delivery, task)
            heartbeat.cancel_scope.cancel()

    async def _run(self, delivery: Delivery, task: TaskMessage) -> None:
        if task.external_input_payload_storage_path and not task.input_data:
            started = time.monotonic()
            try:
                try:
                    loaded = await self._payloads.load(task.external_input_payload_storage_path)
                except TransportError as exc:
                    refused = self._payloads_refused(exc, started, "read the task's large input")
                    if refused is None:
                        raise
                    raise refused from exc
                task = msgspec.structs.replace(task, input_data=loaded)
            except PayloadError as exc:  # the input is gone, or out of this identity's reach: no attempt can run
                self._log.error("task_input_unreadable", task_id=task.task_id, error=str(exc))
                reason = f"the task's input could not be read: {exc}"
                await self._report_without_running(delivery, task, TaskResultStatus.FAILED_WITH_TERMINAL_ERROR, reason)
                return
            except TransportError as exc:  # the object store is unreachable: try again shortly
                self._log.warning("task_input_unavailable", task_id=task.task_id, error=str(exc))
                await self._hand_back(delivery, task_id=task.task_id, delay=5.0)
                return
        if task.rate_limit_per_frequency > 0 and self._limits is not None:
            wait = await take_rate_slot(
                self._limits, task.task_type, task.rate_limit_per_frequency, task.rate_limit_frequency_in_seconds
            )
            if wait > 0:  # over the rate: postpone the task to the next window, as Conductor does
                self._log.debug("task_postponed", task_id=task.task_id, seconds=round(wait, 3))
                await self._hand_back(delivery, task_id=task.task_id, delay=wait)
                return
        started = time.time_ns() // 1_000_000
        if task.started_subject:
            await self._report_start(task, started)
        result = await self._call(task, started)
        # The work is done: finish reporting it even if shutdown cancels us meanwhile (bounded).
        with anyio.CancelScope(shield=True), anyio.move_on_after(RESULT_PUBLISH_GRACE):
            if await self._publish_result(task, result):
                with contextlib.suppress(TransportError):  # an unacked task is redelivered: harmless
                    await delivery.ack()
            else:  # JetStream unreachable: back in 5 s and run again (timed out, if older than its response timeout)
                with contextlib.suppress(TransportError):
                    await delivery.nak(5.0)
        elapsed = result.end_time - started
        self._executed += 1
        if result.status not in (TaskResultStatus.COMPLETED, TaskResultStatus.IN_PROGRESS):
            self._failed += 1
        # One line per task is for debugging (as in Conductor's SDKs); what went wrong is logged at info.
        completed = result.status in (TaskResultStatus.COMPLETED, TaskResultStatus.IN_PROGRESS)
        (self._log.debug if completed else self._log.info)(
            "task_executed",
            task_id=task.task_id,
            workflow_id=task.workflow_instance_id,
            task_ref=task.reference_task_name,
            status=str(result.status),
            duration_ms=elapsed,
            attempt=delivery.num_delivered,
            reason=result.reason_for_incompletion,
        )

    async def _call(self, task: TaskMessage, started: int) -> TaskResult:
        status = TaskResultStatus.COMPLETED
        output: dict[str, object] = {}
        reason: str | None = None
        logs: list[object] = []
        callback_after = 0
        try:
            arguments = _bind_arguments(self._parameters, task)
            if self.spec.is_async:
                value = await self.spec.function(**arguments)  # type: ignore[misc]
            else:
                value = await anyio.to_thread.run_sync(
                    lambda: self.spec.function(**arguments), limiter=self._threads, abandon_on_cancel=True
                )
            if isinstance(value, InProgress):
                status, output, callback_after = TaskResultStatus.IN_PROGRESS, dict(value.output), value.callback_after
            elif isinstance(value, Failure):
                terminal = TaskResultStatus.FAILED_WITH_TERMINAL_ERROR
                status = terminal if value.terminal else TaskResultStatus.FAILED
                output, reason = dict(value.output), value.reason
            elif isinstance(value, dict):
                output = value
            elif value is not None:
                output = {"result": value}
            problem = configured_limits().payload_problem("task output", output)
            if problem is not None:  # checked before encoding: a hostile depth would exhaust the stack there
                output = {}
                raise TerminalError(problem)
            encode_json(output)  # fail here, as the task, if the output is not JSON
        except TerminalError as exc:
            status, reason = TaskResultStatus.FAILED_WITH_TERMINAL_ERROR, str(exc) or type(exc).__name__
        except Exception as exc:  # the function's own failure (or unserialisable output): FAILED, retried per TaskDef
            status, reason, output = TaskResultStatus.FAILED, str(exc) or type(exc).__name__, {}
            logs = [traceback.format_exc()]
        return TaskResult(
            workflow_instance_id=task.workflow_instance_id,
            task_id=task.task_id,
            task_type=self.spec.task_type,
            status=status,
            output_data=output,
            reason_for_incompletion=reason,
            callback_after_seconds=callback_after,
            worker_id=self.worker_id,
            logs=logs,
            start_time=started,
            end_time=time.time_ns() // 1_000_000,
            poll_count=task.poll_count,
        )

    async def _report_response_timeout(self, delivery: Delivery, task: TaskMessage, reason: str) -> None:
        """JetStream delivered ``task`` again, too late (:func:`redelivery_verdict`). Conductor marks such a task
        TIMED_OUT (whatever its timeoutPolicy) and retries it as a new instance; report exactly that rather than
        running the old attempt a second time."""
        self._log.warning(
            "task_response_timed_out",
            task_id=task.task_id,
            workflow_id=task.workflow_instance_id,
            task_ref=task.reference_task_name,
            deliveries=delivery.num_delivered,
            response_timeout_seconds=round(response_timeout(task.response_timeout_seconds)),
        )
        await self._report_without_running(delivery, task, TaskResultStatus.TIMED_OUT, reason)

    def _payloads_refused(self, exc: TransportError, since: float, what: str) -> PayloadError | None:
        """A :class:`PayloadError` if the server refused this identity the payload store (no ``--payloads``
        grant): the task then fails with the reason instead of being retried in vain."""
        denied = self.conn.explain(exc, since, what, f"OBJ_{self.layout.payloads_bucket}")
        return None if denied is exc else PayloadError(f"{denied} (grant this worker --payloads)")

    def _result_subject(self, workflow_id: str) -> str:
        """Where this worker reports: computed, never taken from the task message, so a forged message cannot
        point a report at another subject (and it is the subject its NATS permissions allow)."""
        return self.layout.result_subject(workflow_id, self.spec.task_type, self.spec.domain)

    async def _report_undecodable(self, delivery: Delivery, reason: str) -> None:
        """A task this worker cannot read still gets an answer, so its workflow does not wait forever."""
        try:
            identity = decode(task_identity_decoder, delivery.data, "task message")
        except PayloadError:
            return  # not even its address is readable: the dead letter is all there is
        result = TaskResult(
            workflow_instance_id=identity.workflow_instance_id,
            task_id=identity.task_id,
            task_type=self.spec.task_type,
            status=TaskResultStatus.FAILED_WITH_TERMINAL_ERROR,
            reason_for_incompletion=f"the worker could not read the task: {reason}",
            worker_id=self.worker_id,
        )
        with contextlib.suppress(TransportError):
            await self.conn.publish_durable(self._result_subject(identity.workflow_instance_id), encode_json(result))

    async def _report_start(self, task: TaskMessage, started: int) -> None:
        """The task's TaskDef has timeouts that count from the start: say when work began."""
        report = TaskStarted(
            workflow_instance_id=task.workflow_instance_id,
            task_id=task.task_id,
            task_type=self.spec.task_type,
            worker_id=self.worker_id,
            poll_count=task.poll_count,
            start_time=started,
        )
        try:
            await self.conn.publish_durable(
                self.layout.started_subject(task.workflow_instance_id, self.spec.task_type, self.spec.domain),
                encode_json(report),
                msg_id=f"started:{task.task_id}:{task.poll_count}:{secrets.token_hex(8)}",
            )
        except TransportError as exc:  # the task still runs; only its timeout clock starts late or not at all
            self._log.warning("task_start_unreported", task_id=task.task_id, error=str(exc))

    async def _report_without_running(
        self, delivery: Delivery, task: TaskMessage, status: TaskResultStatus, reason: str
    ) -> None:
        """End this delivery with a result the function never produced (a response timeout, an unreadable
        input); if the result cannot be published, the task comes back and is reported again."""
        result = TaskResult(
            workflow_instance_id=task.workflow_instance_id,
            task_id=task.task_id,
            task_type=self.spec.task_type,
            status=status,
            reason_for_incompletion=reason,
            worker_id=self.worker_id,
            poll_count=task.poll_count,
            end_time=time.time_ns() // 1_000_000,
        )
        with anyio.CancelScope(shield=True), anyio.move_on_after(RESULT_PUBLISH_GRACE):
            published = await self._publish_result(task, result)
            with contextlib.suppress(TransportError):
                await (delivery.ack() if published else delivery.nak(5.0))

    async def _offload_output(self, task: TaskMessage, result: TaskResult) -> TaskResult:
        """A large output goes to the payloads object store and the result carries its path (Conductor's
        externalOutputPayloadStoragePath); one over the maximum size fails the task for good."""
        started = time.monotonic()
        try:
            try:
                path = await self._payloads.offload(task.workflow_instance_id, result.output_data, "task output")
            except TransportError as exc:
                refused = self._payloads_refused(exc, started, "store the task's large output")
                if refused is None:
                    raise  # unreachable for now: _publish_result tries again
                raise refused from exc
        except PayloadError as exc:
            return msgspec.structs.replace(
                result,
                status=TaskResultStatus.FAILED_WITH_TERMINAL_ERROR,
                output_data={},
                reason_for_incompletion=str(exc),
            )
        if path is None:
            return result
        return msgspec.structs.replace(result, output_data={}, external_output_payload_storage_path=path)

    async def _publish_result(self, task: TaskMessage, result: TaskResult) -> bool:
        """Store a large output, then publish the result durably; both retried with back-off."""
        ready: TaskResult | None = None
        delay = 0.5
        # The message id makes this worker's retries harmless; the nonce makes it unguessable, because JetStream
        # drops a repeated id whatever its subject, and another identity must not be able to pre-empt ours.
        nonce = secrets.token_hex(8)
        for attempt in range(1, RESULT_PUBLISH_ATTEMPTS + 1):
            try:
                if ready is None:
                    ready = self._fitting(await self._offload_output(task, result))
                msg_id = f"result:{task.task_id}:{task.poll_count}:{ready.status}:{nonce}"
                await self.conn.publish_durable(
                    self._result_subject(task.workflow_instance_id), encode_json(ready), msg_id=msg_id
                )
                return True
            except TransportError as exc:
                self._log.warning("result_publish_failed", task_id=task.task_id, attempt=attempt, error=str(exc))
                await anyio.sleep(delay)
                delay = min(delay * 2, 4.0)
        return False

    def _fitting(self, result: TaskResult) -> TaskResult:
        """A result that still does not fit a message (a huge reason or log) fails the task, saying so."""
        size = len(encode_json(result))
        if size <= self.conn.payload_limit:
            return result
        reason = f"task output is {size} bytes; the limit is {self.conn.payload_limit} bytes"
        failed = TaskResultStatus.FAILED_WITH_TERMINAL_ERROR
        return msgspec.structs.replace(result, status=failed, output_data={}, logs=[], reason_for_incompletion=reason)

    async def _heartbeat(self, delivery: Delivery, lease_seconds: float, times: Iterator[float]) -> None:
        """Extend the delivery's lease at ``times`` (seconds after receipt, :func:`extensions`)."""
        received = delivery.refreshed
        for at in times:
            await anyio.sleep(max(0.0, received + at - time.monotonic()))
            with contextlib.suppress(TransportError):
                await delivery.in_progress(lease_seconds)


async def run_workers(
    conn: Connection,
    specs: Sequence[WorkerSpec] | None = None,
    layout: Layout | None = None,
    *,
    stop: anyio.Event | None = None,
    stop_grace: float = 30.0,
    task_status: TaskStatus[list[TaskWorker]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``specs`` (default: every ``@worker_task`` imported so far) until ``stop`` is set or cancelled.

    ``started`` reports the list of workers once every consumer is bound.
    """
    layout = layout or Layout()
    specs = list(specs if specs is not None else registered_workers())
    if not specs:
        raise ValueError("no workers to run: decorate functions with @worker_task and import their modules")
    if conn.identity is None:  # authenticated workers may not provision: binding waits for a node instead
        await ensure_layout(conn, layout, patience=120.0)  # a cluster electing leaders: wait, don't crash
    workers = [TaskWorker(conn, spec, layout, stop_grace=stop_grace) for spec in specs]
    async with anyio.create_task_group() as tg:
        for worker in workers:
            await tg.start(worker.run)
        task_status.started(workers)
        if stop is not None:
            await stop.wait()
            for worker in workers:
                worker.request_stop()
