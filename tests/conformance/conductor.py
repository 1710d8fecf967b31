"""Conductor's Java API as the test-harness specs use it, over Partita's public surfaces.

The specs (conductor-oss/conductor ``test-harness/src/test/groovy/.../test/integration/``) drive Conductor through
its services: register definitions, start, poll a task, update it, read the workflow. Here:

* definitions and starts go through :class:`partita.transport.Client`, reading the fixtures copied unchanged
  into ``tests/conformance/fixtures/``;
* ``poll`` fetches from the (type, domain) consumer exactly as a worker does (and reports the start when the
  task message asks for it), ``update`` publishes a ``TaskResult`` on the worker's result subject, then acks;
* ``workflow`` reads the record and renders it as Conductor's Workflow JSON (``partita.schemas.conductor``), so
  the assertions read the field names a Conductor client reads;
* Conductor's ``sweep`` and ``asyncSystemTaskExecutor.execute`` have no counterpart: a node is always deciding.
  A spec step that follows them waits, with a deadline, until the workflow reaches the state the spec asserts
  (``settle``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec

from partita.actors.task_lease import redelivery_verdict, response_timeout
from partita.schemas import TaskDef, TaskMessage, TaskResult, TaskResultStatus, TaskStarted
from partita.schemas.conductor import conductor_workflow
from partita.transport import Client, Connection, Delivery
from partita.transport.codec import encode_json
from partita.transport.provision import find_task_consumer

from ..integration.harness import running

FIXTURES = Path(__file__).parent / "fixtures"
KNOWN_DIFFERENCE_PATIENCE = 5.0  # s: what a spec step of a known difference may wait before it is judged
PATIENCE = {"seconds": float("inf")}  # set per test by tests/conformance/conftest.py
SPECS = "conductor-oss/conductor test-harness/src/test/groovy/com/netflix/conductor/test/integration"
EMAIL = "test@harness.com"

JSON = dict[str, Any]


def harness_task_defs() -> list[TaskDef]:
    """The task definitions ``WorkflowTestUtil.taskDefinitions()`` registers before every spec
    (test-harness/src/test/groovy/com/netflix/conductor/test/util/WorkflowTestUtil.groovy:80-172)."""

    def define(name: str, **fields: object) -> TaskDef:
        return msgspec.convert({"name": name, "ownerEmail": EMAIL, **fields}, TaskDef)

    # new TaskDef(name, description, ownerEmail, retryCount, timeoutSeconds, responseTimeoutSeconds)
    defs = [
        define(f"integration_task_{i}", retryCount=1, timeoutSeconds=120, responseTimeoutSeconds=120) for i in range(21)
    ]
    defs += [
        define(f"integration_task_0_RT_{i}", retryCount=0, timeoutSeconds=120, responseTimeoutSeconds=120)
        for i in range(5)
    ]
    defs += [
        define("short_time_out", retryCount=1, timeoutSeconds=5, responseTimeoutSeconds=5),
        define("task_rt", timeoutSeconds=120, retryCount=1, retryDelaySeconds=0, responseTimeoutSeconds=10),
        define("task_optional", timeoutSeconds=5, retryCount=1, timeoutPolicy="RETRY", retryDelaySeconds=0,
               responseTimeoutSeconds=5),
        define("simple_task_in_sub_wf", retryCount=0),
        define("sub_workflow_task", retryCount=1, responseTimeoutSeconds=5, retryDelaySeconds=0),
        define("waitTimeout", timeoutSeconds=2, responseTimeoutSeconds=2, retryCount=1, timeoutPolicy="RETRY",
               retryDelaySeconds=10),
        define("user_task", timeoutSeconds=20, responseTimeoutSeconds=20, retryCount=1, timeoutPolicy="RETRY",
               retryDelaySeconds=10),
        define("eventX", timeoutSeconds=10, responseTimeoutSeconds=10),
        define("test_task_with_rateLimits", rateLimitFrequencyInSeconds=10, rateLimitPerFrequency=1),
        define("test_simple_task_with_rateLimits", rateLimitFrequencyInSeconds=10, rateLimitPerFrequency=1),
        define("test_task_with_concurrency_limit", concurrentExecLimit=1),
    ]  # fmt: skip
    return defs


@dataclass
class Polled:
    """A task a test "worker" holds: the message and the delivery to ack once the update is durable."""

    task: TaskMessage
    delivery: Delivery
    domain: str | None

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def input_data(self) -> dict[str, object]:
        return self.task.input_data


class Conductor:
    def __init__(self, conn: Connection, client: Client) -> None:
        self.conn = conn
        self.client = client
        self.layout = client.layout
        self._consumers: dict[tuple[str, str | None], Any] = {}

    # --- metadata -------------------------------------------------------------------------------------

    async def register_fixture(self, name: str, **changes: object) -> JSON:
        """Register the fixture file ``name`` (a WorkflowDef), optionally changed first as a spec does; returns
        the definition as registered (JSON)."""
        definition: JSON = msgspec.json.decode((FIXTURES / name).read_bytes())
        definition.update(changes)
        await self.client.register_json(msgspec.json.encode(definition), source=name)
        return definition

    async def register(self, definition: Mapping[str, object]) -> None:
        await self.client.register_json(msgspec.json.encode(definition))

    async def update_task_def(self, name: str, **changes: object) -> None:
        """Change a registered TaskDef as specs do (``metadataService.updateTaskDef``)."""
        stored = await self.client.definitions.task_def(name)
        assert stored is not None, f"no task definition {name!r} registered"
        base: JSON = msgspec.to_builtins(stored)
        base.update(changes)
        await self.client.register_json(msgspec.json.encode(base))

    # --- workflows ------------------------------------------------------------------------------------

    async def start(self, name: str, version: int | None = None, correlation_id: str | None = None,
                    workflow_input: Mapping[str, object] | None = None, **options: Any) -> str:  # fmt: skip
        return await self.client.start(
            name, dict(workflow_input or {}), version=version, correlation_id=correlation_id, **options
        )

    async def workflow(self, workflow_id: str) -> JSON:
        """The workflow as Conductor's ``GET /workflow/{id}`` JSON."""
        return conductor_workflow(await self.client.get(workflow_id))

    async def settle(
        self, workflow_id: str, condition: Callable[[JSON], bool], *, within: float = 20.0, what: str = ""
    ) -> JSON:
        """The workflow once ``condition`` holds of its Conductor JSON (polled; a deadline, not a sleep). A test
        of a known difference (tests/conformance/conftest.py) waits at most ``KNOWN_DIFFERENCE_PATIENCE``."""
        within = min(within, PATIENCE["seconds"])
        deadline = time.monotonic() + within
        while True:
            found = await self.client.find(workflow_id)  # None until the node has taken the start
            workflow: JSON = conductor_workflow(found) if found is not None else {"status": "NOT_STARTED", "tasks": []}
            if found is not None and condition(workflow):
                return workflow
            if time.monotonic() > deadline:
                trail = [(t["referenceTaskName"], t["taskType"], t["status"]) for t in workflow["tasks"]]
                raise AssertionError(
                    f"timed out after {within} s waiting for {what or 'the workflow'}: "
                    f"status {workflow['status']}, reason {workflow.get('reasonForIncompletion')!r}, tasks {trail}"
                )
            await anyio.sleep(0.02)

    async def settle_tasks(
        self, workflow_id: str, count: int, *, status: str | None = None, within: float = 20.0
    ) -> JSON:
        """The workflow once it has ``count`` tasks (and, with ``status``, is in that status), as after a step
        of a spec; then also no task may still be changing from the step (checked by a second read)."""

        def ready(workflow: JSON) -> bool:
            return len(workflow["tasks"]) == count and (status is None or workflow["status"] == status)

        return await self.settle(workflow_id, ready, within=within, what=f"{count} tasks, status {status}")

    # --- tasks ----------------------------------------------------------------------------------------

    async def poll(
        self, task_type: str, *, domain: str | None = None, worker_id: str = "test_worker", within: float = 5.0
    ) -> Polled | None:
        """Conductor's ``poll``: the next task of (type, domain), or None if none arrives ``within`` seconds."""
        deadline = time.monotonic() + within
        consumer = self._consumers.get((task_type, domain))
        while consumer is None:
            found = await find_task_consumer(self.conn, self.layout, task_type, domain)
            if found is not None:
                consumer = await self.conn.pull_consumer(self.layout.tasks_stream, found[0])
                self._consumers[(task_type, domain)] = consumer
            elif time.monotonic() > deadline:
                return None
            else:
                await anyio.sleep(0.02)
        while True:
            remaining = max(0.05, deadline - time.monotonic())
            deliveries = await consumer.fetch(1, remaining)
            if not deliveries:
                return None
            (delivery,) = deliveries
            task = msgspec.json.decode(delivery.data, type=TaskMessage)
            # As Partita's worker SDK does (actors/worker.py): a redelivery past the response timeout is not run
            # but reported TIMED_OUT, which is how a response timeout reaches the node (Conductor's sweeper
            # finds it on its own; docs/conductor-differences.md).
            age = time.time() - delivery.published
            verdict = redelivery_verdict(age, delivery.num_delivered, response_timeout(task.response_timeout_seconds))
            if delivery.num_delivered > 1 and verdict is not None:
                await self.update(Polled(task, delivery, domain), TaskResultStatus.TIMED_OUT, reason=verdict)
                continue
            break
        if task.started_subject:
            started = TaskStarted(
                workflow_instance_id=task.workflow_instance_id,
                task_id=task.task_id,
                task_type=task_type,
                worker_id=worker_id,
                poll_count=task.poll_count,
                start_time=time.time_ns() // 1_000_000,
            )
            subject = self.layout.started_subject(task.workflow_instance_id, task_type, domain)
            await self.conn.publish_durable(subject, encode_json(started), msg_id=f"started:{secrets.token_hex(8)}")
        return Polled(task, delivery, domain)

    async def poll_expect(self, task_type: str, *, domain: str | None = None, within: float = 10.0) -> Polled:
        polled = await self.poll(task_type, domain=domain, within=within)
        assert polled is not None, f"no {task_type} task to poll within {within} s"
        return polled

    async def update(
        self,
        polled: Polled,
        status: TaskResultStatus | str,
        output: Mapping[str, object] | None = None,
        *,
        reason: str | None = None,
        callback_after_seconds: int = 0,
        worker_id: str = "test_worker",
    ) -> None:
        """Conductor's ``updateTask`` with a ``TaskResult``: published where a worker of the type publishes."""
        task = polled.task
        result = TaskResult(
            workflow_instance_id=task.workflow_instance_id,
            task_id=task.task_id,
            task_type=task.task_type,
            status=TaskResultStatus(status),
            output_data=dict(output or {}),
            reason_for_incompletion=reason,
            callback_after_seconds=callback_after_seconds,
            worker_id=worker_id,
            poll_count=task.poll_count,
            end_time=time.time_ns() // 1_000_000,
        )
        subject = self.layout.result_subject(task.workflow_instance_id, task.task_type, polled.domain)
        await self.conn.publish_durable(subject, encode_json(result), msg_id=f"result:{secrets.token_hex(8)}")
        await polled.delivery.ack()

    async def complete(self, task_type: str, output: Mapping[str, object] | None = None, **kw: Any) -> Polled:
        """Poll a task of ``task_type`` and complete it with ``output`` (the specs' ``pollAndCompleteTask``)."""
        polled = await self.poll_expect(task_type, domain=kw.pop("domain", None))
        await self.update(polled, TaskResultStatus.COMPLETED, output, **kw)
        return polled

    async def fail(self, task_type: str, reason: str = "failed", **kw: Any) -> Polled:
        """Poll a task of ``task_type`` and fail it (the specs' ``pollAndFailTask``)."""
        polled = await self.poll_expect(task_type, domain=kw.pop("domain", None))
        status = kw.pop("status", TaskResultStatus.FAILED)
        await self.update(polled, status, kw.pop("output", None), reason=reason, **kw)
        return polled

    async def aclose(self) -> None:
        for consumer in self._consumers.values():
            await consumer.aclose()


@asynccontextmanager
async def conductor_server(conn: Connection, client: Client, **node_options: Any) -> AsyncIterator[Conductor]:
    """A node running, the harness's task definitions registered, and the facade to drive it."""
    await client.register(*harness_task_defs())
    async with running(conn, **node_options):
        facade = Conductor(conn, client)
        try:
            yield facade
        finally:
            await facade.aclose()
