"""The transport against a real nats-server: version and JetStream checks, provisioning, CAS, durability."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path

import anyio
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from partita.actors import WorkerSpec
from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import (
    CasConflict,
    Client,
    Connection,
    Delivery,
    EmbeddedServer,
    Layout,
    ServerVersionError,
    connect,
    ensure_layout,
    find_server_binary,
    free_port,
)

from .harness import eventually, running


async def test_a_server_without_jetstream_is_refused_with_a_clear_message() -> None:
    port = free_port()
    process = await anyio.open_process(
        [find_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"nats://127.0.0.1:{port}"

        async def accepting() -> bool:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                return False
            await stream.aclose()
            return True

        await eventually(accepting, within=10, what="the plain nats-server to listen")
        with pytest.raises(ServerVersionError, match="JetStream disabled"):
            await connect(url)
    finally:
        process.terminate()
        await process.wait()
        await process.aclose()


async def test_provisioning_is_idempotent_and_builds_the_documented_layout(conn: Connection) -> None:
    layout = Layout(prefix="acme")
    await ensure_layout(conn, layout)
    await ensure_layout(conn, layout)  # again: no error, nothing duplicated
    for name in (layout.tasks_stream, layout.events_stream):
        info = await conn.js.stream_info(name)
        assert info.config.retention == RetentionPolicy.WORK_QUEUE
    assert (await conn.js.stream_info(layout.tasks_stream)).config.allow_msg_schedules  # delayed dispatches
    assert (await conn.js.stream_info(layout.timers_stream)).config.allow_msg_schedules
    # Where clients and workers publish: no schedules, and so no roll-ups; the timers come in as a source.
    events = (await conn.js.stream_info(layout.events_stream)).config
    assert not events.allow_msg_schedules
    assert not events.allow_rollup_hdrs
    assert [source.name for source in events.sources or ()] == [layout.timers_stream]
    assert sorted(events.subjects or ()) == sorted(f"acme.wf.{p}.>" for p in range(layout.partitions))
    assert (await conn.kv(layout.workflows_bucket)).name == "acme_workflows"
    assert (await conn.kv(layout.members_bucket)).name == "acme_members"
    # Nodes make their own events consumers (partition ownership), so provisioning makes none.
    assert await conn.js.consumers_info(layout.events_stream) == []


async def test_a_delivery_read_after_a_freeze_is_dated_from_before_it(
    nats_server: EmbeddedServer, conn: Connection
) -> None:
    """The server delivers into the socket of a process that is frozen; the process reads the message only when
    it wakes. Its AckWait began before that: the delivery must say so, or a node would act on an event that
    another node has taken over meanwhile (see the zombie test)."""
    await conn.js.add_stream(StreamConfig(name="T", subjects=["t.>"]))
    await conn.js.add_consumer("T", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT))
    consumer = await conn.pull_consumer("T", "c")
    fetched: list[Delivery] = []

    async def fetch_until_one() -> None:
        while not fetched:
            fetched.extend(await consumer.fetch(8, max_wait=0.5))

    def publish_elsewhere() -> None:  # another client publishes while this one is frozen, and waits for the delivery
        async def publish() -> None:
            other = await nats.connect(nats_server.url)
            try:
                await other.jetstream().publish("t.1", b"x")
                deadline = time.monotonic() + 10
                while (await other.jetstream().consumer_info("T", "c")).num_ack_pending < 1:
                    assert time.monotonic() < deadline, "the server never delivered"
                    await asyncio.sleep(0.01)
            finally:
                await other.close()

        asyncio.run(publish())

    async with anyio.create_task_group() as tg:
        tg.start_soon(fetch_until_one)
        await eventually(lambda: _waiting(conn), what="the pull request at the server")
        frozen_at = time.monotonic()
        thread = threading.Thread(target=publish_elsewhere)
        thread.start()
        thread.join()  # the freeze: this event loop runs nothing until the server has delivered
    await consumer.aclose()
    [delivery] = fetched
    assert delivery.refreshed < frozen_at


async def _waiting(conn: Connection) -> bool:
    return (await conn.js.consumer_info("T", "c")).num_waiting >= 1


async def test_a_stale_revision_loses_the_compare_and_set(conn: Connection) -> None:
    await ensure_layout(conn, Layout())
    bucket = await conn.kv(Layout().workflows_bucket)
    first = await bucket.create("k", b"1")
    with pytest.raises(CasConflict):
        await bucket.create("k", b"again")
    second = await bucket.update("k", b"2", first)
    with pytest.raises(CasConflict):
        await bucket.update("k", b"3", first)
    entry = await bucket.get("k")
    assert entry is not None
    assert (entry.value, entry.revision) == (b"2", second)


async def test_a_pending_retry_delay_survives_a_server_restart(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats")
    await server.start()
    calls: list[int] = []

    def flaky() -> dict[str, object]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails")
        return {"attempts": len(calls)}

    try:
        conn = await connect(server.url)
        client = await Client.over(conn, Layout())
        await client.register_json(b'{"name": "flaky", "retryCount": 1, "retryDelaySeconds": 3}')
        await client.register_json(b'{"name": "wf", "tasks": [{"name": "flaky", "taskReferenceName": "f"}]}')
        async with running(conn, [WorkerSpec("flaky", flaky)]):
            workflow_id = await client.start("wf")
            await eventually(lambda: len(calls) == 1, what="the first attempt")

            async def retry_scheduled() -> bool:
                workflow = await client.get(workflow_id)
                return len(workflow.tasks) == 2

            await eventually(retry_scheduled, what="the retry to be scheduled")
        await conn.aclose()
        # The retry is now a message schedule inside the server. Restart the server over the same store.
        await server.stop()
        server = EmbeddedServer(tmp_path / "nats", port=server.port)
        await server.start()
        conn = await connect(server.url)
        client = await Client.over(conn, Layout())
        async with running(conn, [WorkerSpec("flaky", flaky)]):
            workflow = await client.wait(workflow_id, within=30)
        await conn.aclose()
    finally:
        await server.stop()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert [t.status for t in workflow.tasks] == [TaskStatus.FAILED, TaskStatus.COMPLETED]
    assert workflow.output == {"attempts": 2}


async def test_a_pending_wait_survives_a_server_restart(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats")
    await server.start()
    try:
        conn = await connect(server.url)
        client = await Client.over(conn, Layout())
        await client.register_json(
            b'{"name": "nap", "tasks": [{"name": "w", "taskReferenceName": "w", "type": "WAIT",'
            b' "inputParameters": {"duration": "3 seconds"}}]}'
        )
        async with running(conn):
            workflow_id = await client.start("nap")

            async def waiting() -> bool:
                workflow = await client.find(workflow_id)
                return workflow is not None and bool(workflow.tasks)

            await eventually(waiting, what="the WAIT task")
        await conn.aclose()
        await server.stop()  # the timer lives in the server's store as a message schedule
        server = EmbeddedServer(tmp_path / "nats", port=server.port)
        await server.start()
        conn = await connect(server.url)
        client = await Client.over(conn, Layout())
        async with running(conn):
            workflow = await client.wait(workflow_id, within=30)
        await conn.aclose()
    finally:
        await server.stop()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.tasks[0].end_time - workflow.tasks[0].start_time >= 2900
