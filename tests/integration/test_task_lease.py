"""The task lease (actors/task_lease.py) on a real server: a delivery that reaches no live worker comes back
within the lease, and a live but silent holder still loses its task at the response timeout, not before."""

from __future__ import annotations

from collections import Counter

import anyio
import msgspec

from partita.actors import TaskMessage, WorkerSpec
from partita.actors.task_lease import TASK_LEASE_SECONDS
from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import Client, Connection, EmbeddedServer, connect, find_task_consumer

from .harness import eventually, running


def _one_task_flow(name: str, task: str) -> bytes:
    return msgspec.json.encode({"name": name, "tasks": [{"name": task, "taskReferenceName": "t"}]})


async def test_a_delivery_lost_on_its_way_to_a_worker_comes_back_within_the_lease_and_runs_once(
    nats_server: EmbeddedServer, conn: Connection, client: Client
) -> None:
    # The cluster stall: a fetch response in flight through a server that died. Here a connection fetches the
    # task and closes without acking, which is what the consumer sees either way. With the response timeout
    # (600 s) as the AckWait, the workflow would wait ten minutes and then fail (no retries): it must not.
    await client.register_json(b'{"name": "lost", "responseTimeoutSeconds": 600, "retryCount": 0}')
    await client.register_json(_one_task_flow("lost_flow", "lost"))
    ran: list[TaskMessage] = []

    def work(task: TaskMessage) -> dict[str, object]:
        ran.append(task)
        return {"ok": True}

    layout = client.layout
    async with running(conn):
        workflow_id = await client.start("lost_flow")

        async def consumer_exists() -> bool:
            return await find_task_consumer(conn, layout, "lost", None) is not None

        await eventually(consumer_exists, what="the node to dispatch the task")
        doomed = await connect(nats_server.url, name="doomed")
        try:
            consumer = await doomed.pull_consumer(layout.tasks_stream, layout.task_consumer("lost", None))
            (taken,) = await consumer.fetch(1, 5.0)
            assert taken.num_delivered == 1
        finally:
            await doomed.aclose()  # gone without an ack: the delivery reached nobody who will answer
        async with running(conn, [WorkerSpec("lost", work)], node=False):
            workflow = await client.wait(workflow_id, within=TASK_LEASE_SECONDS + 15)
    assert workflow.status is WorkflowStatus.COMPLETED
    (task,) = workflow.tasks
    assert (task.status, task.retry_count) == (TaskStatus.COMPLETED, 0)
    assert [t.task_id for t in ran] == [task.task_id]


async def test_a_silent_holder_keeps_its_task_past_the_lease_and_loses_it_at_the_response_timeout(
    conn: Connection, client: Client
) -> None:
    # responseTimeoutSeconds longer than the lease: the holder extends the lease until the response deadline,
    # then stops, as a Conductor worker that never updates its task. The first attempt runs once (not again
    # when the first lease would have expired), times out at 18 s, and its retry completes.
    timeout = int(TASK_LEASE_SECONDS) + 3
    task_def = {"name": "mute", "responseTimeoutSeconds": timeout, "retryCount": 1, "retryDelaySeconds": 0}
    await client.register_json(msgspec.json.encode(task_def))
    await client.register_json(_one_task_flow("mute_flow", "mute"))
    calls: Counter[str] = Counter()
    release = anyio.Event()

    async def mute(task: TaskMessage) -> dict[str, object]:
        calls[task.task_id] += 1
        if task.retry_count == 0:
            await release.wait()  # alive (its worker heartbeats) but silent, until the test ends
        return {"retry": task.retry_count}

    async with running(conn, [WorkerSpec("mute", mute, concurrency=2)]):
        try:
            workflow = await client.wait(await client.start("mute_flow"), within=timeout + 20)
        finally:
            release.set()
    assert workflow.status is WorkflowStatus.COMPLETED
    timed_out, retried = workflow.tasks
    assert timed_out.status is TaskStatus.TIMED_OUT
    assert f"after {timeout} seconds (responseTimeoutSeconds)" in (timed_out.reason_for_incompletion or "")
    assert (retried.status, retried.retry_count) == (TaskStatus.COMPLETED, 1)
    assert calls == {timed_out.task_id: 1, retried.task_id: 1}
    assert workflow.output == {"retry": 1}
