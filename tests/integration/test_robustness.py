"""What a demanding user throws at the engine: several nodes, hostile messages, shutdowns, size limits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from nats.js.api import ConsumerConfig, DiscardPolicy, StreamConfig

from partita.actors import InProgress, Node, TaskMessage, WorkerSpec, workflow_actor
from partita.actors.decider import Decision
from partita.actors.task_lease import TASK_LEASE_SECONDS
from partita.schemas import TaskResultReceived, TaskStatus, WorkflowStatus
from partita.transport import (
    Client,
    Connection,
    EmbeddedServer,
    KvEntry,
    Layout,
    connect,
    read_dead_letters,
    workflow_id_for,
)
from partita.transport.codec import encode_json

from .harness import Process, eventually, running, unprocessed_events

CHAIN = {
    "name": "chain",
    "tasks": [
        {"name": "inc", "taskReferenceName": f"s{i}", "inputParameters": {"n": f"${{s{i - 1}.output.n}}" if i else 0}}
        for i in range(6)
    ],
}


def inc(n: int) -> dict[str, object]:
    return {"n": n + 1}


async def test_two_nodes_sharing_the_events_run_every_workflow_to_completion(
    nats_server: EmbeddedServer, conn: Connection, client: Client
) -> None:
    await client.register_json(msgspec.json.encode(CHAIN))
    second = await connect(nats_server.url, name="second-node")
    try:
        async with anyio.create_task_group() as tg:
            other = Node(second, name="other")
            await tg.start(other.run)
            async with running(conn, [WorkerSpec("inc", inc, concurrency=16)]) as env:
                ids = [await client.start("chain") for _ in range(40)]
                with anyio.fail_after(60):
                    finals = [await client.wait(workflow_id) for workflow_id in ids]
                assert env.node is not None
                both = (env.node.statistics().events_received, other.statistics().events_received)
            other.request_stop()
    finally:
        await second.aclose()
    assert all(w.status is WorkflowStatus.COMPLETED for w in finals)
    assert all(w.output == {"n": 6} for w in finals)
    assert all(len(w.tasks) == 6 for w in finals)
    assert min(both) > 0  # both nodes did part of the work


async def test_hostile_events_are_terminated_or_recorded_and_never_stop_the_node(
    conn: Connection, client: Client
) -> None:
    await client.register_json(msgspec.json.encode(CHAIN))
    layout = client.layout
    async with running(conn, [WorkerSpec("inc", inc)]) as env:
        await conn.publish_durable(layout.start_subject("x"), encode_json({"workflowId": "", "name": "chain"}))
        await conn.publish_durable("partita.wf.3.result.=ZZ", b'{"workflowInstanceId": "w", "taskId": "t"}')
        await conn.publish_durable("partita.wf.3.result.=FF", b'{"workflowInstanceId": "w", "taskId": "t"}')
        await conn.publish_durable("partita.wf.3.nonsense", b"{}")
        bad_inline = {"workflowId": "bad-inline", "name": "adhoc", "workflowDef": {"name": "adhoc", "tasks": [{}]}}
        await conn.publish_durable(layout.start_subject("bad-inline"), encode_json(bad_inline))
        failed = await client.wait("bad-inline", within=30)
        healthy = await client.wait(await client.start("chain"), within=30)
        assert env.node is not None
        assert env.node.statistics().events_rejected == 4
    letters = await read_dead_letters(conn, layout)
    assert [letter.subject for letter in letters] == [
        layout.start_subject("x"),
        "partita.wf.3.result.=ZZ",
        "partita.wf.3.result.=FF",
        "partita.wf.3.nonsense",
    ]
    assert "workflow id must be 1..256 characters" in letters[0].reason
    assert letters[3].data == "{}"
    assert failed.status is WorkflowStatus.FAILED
    assert "malformed StartWorkflow" in (failed.reason_for_incompletion or "")
    assert "workflowDef.tasks[0]" in (failed.reason_for_incompletion or "")
    assert healthy.status is WorkflowStatus.COMPLETED


async def test_an_inline_task_definition_does_not_change_the_shared_consumer(conn: Connection, client: Client) -> None:
    await client.register_json(b'{"name": "inc", "responseTimeoutSeconds": 600}')
    inline = {
        "name": "inline_rt",
        "tasks": [
            {
                "name": "inc",
                "taskReferenceName": "i",
                "inputParameters": {"n": 1},
                "taskDefinition": {"name": "inc", "responseTimeoutSeconds": 5},
            }
        ],
    }
    await client.register_json(msgspec.json.encode(inline))
    async with running(conn, [WorkerSpec("inc", inc)]):
        workflow = await client.wait(await client.start("inline_rt"), within=30)
    assert workflow.status is WorkflowStatus.COMPLETED
    info = await conn.js.consumer_info(client.layout.tasks_stream, client.layout.task_consumer("inc", None))
    assert info.config.ack_wait == TASK_LEASE_SECONDS  # the registered 600 s (capped at the lease), not the inline 5 s


async def test_a_worker_reporting_progress_gets_the_same_task_again_after_the_callback(
    conn: Connection, client: Client
) -> None:
    seen: list[TaskMessage] = []

    def poll_job(task: TaskMessage) -> dict[str, object] | InProgress:
        seen.append(task)
        if len(seen) == 1:
            return InProgress(callback_after=1, output={"stage": "queued"})
        return {"stage": "done"}

    await client.register_json(b'{"name": "job", "tasks": [{"name": "poll_job", "taskReferenceName": "j"}]}')
    async with running(conn, [WorkerSpec("poll_job", poll_job)]):
        workflow = await client.wait(await client.start("job"), within=30)
    assert workflow.status is WorkflowStatus.COMPLETED
    (task,) = workflow.tasks
    assert [t.task_id for t in seen] == [task.task_id, task.task_id]
    assert [t.poll_count for t in seen] == [0, 1]
    assert task.output_data == {"stage": "done"}
    assert task.retry_count == 0


async def test_a_worker_stopped_mid_task_hands_the_task_back_at_once(conn: Connection, client: Client) -> None:
    began = anyio.Event()

    async def forever() -> None:
        began.set()
        await anyio.sleep_forever()

    def finish() -> dict[str, object]:
        return {"finished": True}

    await client.register_json(b'{"name": "stuck", "tasks": [{"name": "forever", "taskReferenceName": "f"}]}')
    async with running(conn, [WorkerSpec("forever", forever)], stop_grace=0.2):
        workflow_id = await client.start("stuck")
        with anyio.fail_after(30):
            await began.wait()
    # Handed back as a fresh copy: deliverable now, not after its lease, and a first delivery, so
    # the next worker runs it instead of reporting a response timeout.
    consumer = client.layout.task_consumer("forever", None)

    async def handed_back() -> bool:  # the ack of the original is asynchronous on the server
        info = await conn.js.consumer_info(client.layout.tasks_stream, consumer)
        return (info.num_pending, info.num_ack_pending, info.num_redelivered) == (1, 0, 0)

    await eventually(handed_back, what="one fresh copy pending and the original acked")
    async with running(conn, [WorkerSpec("forever", finish)]):
        workflow = await client.wait(workflow_id, within=30)
    assert workflow.status is WorkflowStatus.COMPLETED
    (task,) = workflow.tasks  # the same attempt: a hand-back spends no retry
    assert task.retry_count == 0
    assert task.output_data == {"finished": True}


async def test_outputs_near_the_size_limit_fail_the_task_cleanly(tmp_path: Path) -> None:
    async with EmbeddedServer(tmp_path / "nats", max_payload=16 * 1024) as server:
        conn = await connect(server.url)
        client = await Client.over(conn, Layout())

        def bulky() -> dict[str, object]:
            return {"blob": "x" * (16 * 1024 - 300)}  # fits max_payload alone, not with headers and framing

        await client.register_json(b'{"name": "bulky", "retryCount": 0}')
        await client.register_json(b'{"name": "big_out", "tasks": [{"name": "bulky", "taskReferenceName": "b"}]}')
        async with running(conn, [WorkerSpec("bulky", bulky)]):
            workflow = await client.wait(await client.start("big_out"), within=30)
        await conn.aclose()
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.tasks[0].status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "the limit is 15360 bytes" in (workflow.tasks[0].reason_for_incompletion or "")


async def test_clients_and_workers_adopt_existing_streams_without_reconfiguring_them(
    conn: Connection, nats_server: EmbeddedServer
) -> None:
    layout = Layout()
    async with await Client.connect(nats_server.url):
        pass
    info = await conn.js.stream_info(layout.tasks_stream)
    changed: StreamConfig = info.config
    changed.description = "tuned by the operator"
    await conn.js.update_stream(changed)
    async with await Client.connect(nats_server.url), running(conn, [WorkerSpec("inc", inc)], node=False):
        pass
    after = await conn.js.stream_info(layout.tasks_stream)
    assert after.config.description == "tuned by the operator"


async def test_a_concurrency_limit_holds_across_three_workers(conn: Connection, client: Client) -> None:
    running_now = 0
    peak = 0

    async def busy() -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        try:
            await anyio.sleep(0.2)
        finally:
            running_now -= 1

    await client.register_json(b'{"name": "busy", "concurrentExecLimit": 2}')
    await client.register_json(b'{"name": "one_busy", "tasks": [{"name": "busy", "taskReferenceName": "b"}]}')
    specs = [WorkerSpec("busy", busy, concurrency=5) for _ in range(3)]
    async with running(conn, specs):
        ids = [await client.start("one_busy") for _ in range(12)]
        finals = [await client.wait(workflow_id, within=60) for workflow_id in ids]
    assert all(w.status is WorkflowStatus.COMPLETED for w in finals)
    assert peak == 2  # 3 workers with 5 slots each, but the server hands out 2 at a time


_NO_ENTRY = KvEntry("", b"0", 0)


async def test_a_rate_limit_holds_across_three_workers(conn: Connection, client: Client) -> None:
    starts: list[float] = []

    def tick() -> None:
        starts.append(time.time())  # wall clock: the limit's windows are wall-clock seconds

    await client.register_json(b'{"name": "tick", "rateLimitPerFrequency": 2, "rateLimitFrequencyInSeconds": 1}')
    await client.register_json(b'{"name": "one_tick", "tasks": [{"name": "tick", "taskReferenceName": "t"}]}')
    specs = [WorkerSpec("tick", tick, concurrency=4) for _ in range(3)]
    async with running(conn, specs):
        ids = [await client.start("one_tick") for _ in range(6)]
        finals = [await client.wait(workflow_id, within=60) for workflow_id in ids]
    assert all(w.status is WorkflowStatus.COMPLETED for w in finals)
    # Postponed tasks come back as fresh deliveries: none is mistaken for a response timeout and retried.
    assert [[t.retry_count for t in w.tasks] for w in finals] == [[0]] * 6
    # The limiter's own count per one-second window (a task's slot is taken a moment before the function
    # starts, so bucketing the start times could count a slot at 0.999 s in the next second).
    limits = await conn.kv(client.layout.limits_bucket)
    per_window = {key: int((await limits.get(key) or _NO_ENTRY).value) for key in await limits.keys("rate.tick.*")}
    assert sum(per_window.values()) == 6
    assert max(per_window.values()) <= 2  # never more than 2 a second, across 3 workers with 12 slots
    assert len(per_window) >= 3
    assert len(starts) == 6
    assert max(starts) - min(starts) > 0.9  # six at two a second span at least three windows


async def test_a_task_message_a_worker_cannot_read_fails_its_task_instead_of_hanging(
    conn: Connection, client: Client
) -> None:
    from partita.transport.codec import encode_json as encode

    def never() -> None:
        raise AssertionError("an unreadable task must not run")

    await client.register_json(b'{"name": "hold", "tasks": [{"name": "h", "taskReferenceName": "h", "type": "HUMAN"}]}')
    # A worker for HUMAN's queue (nodes never dispatch HUMAN tasks to workers): it reports on HUMAN's subject.
    async with running(conn, [WorkerSpec("HUMAN", never)]):
        workflow_id = await client.start("hold")

        async def started() -> bool:
            found = await client.find(workflow_id)
            return found is not None and bool(found.tasks)

        await eventually(started, what="the HUMAN task")
        human = (await client.get(workflow_id)).tasks[0]
        # A task message for this workflow that is not valid for the worker (inputData is not an object):
        bogus = {
            "taskId": human.task_id, "workflowInstanceId": workflow_id, "taskType": "HUMAN",
            "resultSubject": client.layout.result_subject(workflow_id, "HUMAN", None), "inputData": "oops",
        }  # fmt: skip
        await conn.publish_durable(client.layout.task_message_subject("HUMAN", None, "x1"), encode(bogus))
        final = await client.wait(workflow_id, within=30)
    assert final.status is WorkflowStatus.FAILED
    assert "could not read the task" in (final.tasks[0].reason_for_incompletion or "")


async def test_an_event_the_decider_fails_on_is_kept_and_decided_again(
    conn: Connection, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A decider bug must neither crash the node nor lose the event: it is redelivered after a back-off, and once
    # deciding succeeds (here: the second time; in production, after the fix is deployed) the workflow goes on.
    real_decide = workflow_actor.decide
    failures = 0

    def flaky_decide(*args: Any, **kwargs: Any) -> Decision:
        nonlocal failures
        if isinstance(args[1], TaskResultReceived) and failures == 0:
            failures += 1
            raise RuntimeError("injected decider bug")
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(workflow_actor, "decide", flaky_decide)
    await client.register_json(msgspec.json.encode(CHAIN))
    async with running(conn, [WorkerSpec("inc", inc)]):
        workflow = await client.wait(await client.start("chain"), within=60)
    assert failures == 1
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"n": 6}


async def test_an_event_the_decider_always_fails_on_is_dead_lettered_and_fails_its_workflow_only(
    conn: Connection, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A decision that raises every time (a bug the data provokes) must not strand the workflow for ever: after
    # its attempts the event goes to the dead-letter stream, the workflow is FAILED with a reason naming the
    # exception, and the other workflows, in its partition too, never wait on it.
    await client.register_json(msgspec.json.encode(CHAIN))
    real_decide = workflow_actor.decide
    poisoned: set[str] = set()
    attempts = 0

    def buggy_decide(*args: Any, **kwargs: Any) -> Decision:
        nonlocal attempts
        state, event = args[0], args[1]
        if isinstance(event, TaskResultReceived) and state is not None and state.workflow_id in poisoned:
            attempts += 1
            raise KeyError("injected decider bug")
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(workflow_actor, "decide", buggy_decide)
    layout = client.layout
    async with running(conn, [WorkerSpec("inc", inc, concurrency=4)], decision_attempts=3) as run:
        victim_id = await client.start("chain")
        poisoned.add(victim_id)
        # Idempotency keys give known ids: three workflows on the victim's partition, started after it.
        partition = layout.partition(victim_id)
        keys = (f"k{i}" for i in range(10_000))
        neighbours = [k for k in keys if layout.partition(workflow_id_for("chain", k)) == partition][:3]
        started = [await client.start("chain", idempotency_key=key) for key in neighbours]
        started += [await client.start("chain") for _ in range(20)]
        finals = [await client.wait(workflow_id, within=30) for workflow_id in started]
        victim = await client.wait(victim_id, within=60)
        assert run.node is not None
        statistics = run.node.statistics()
    assert [w.status for w in finals] == [WorkflowStatus.COMPLETED] * len(started)
    # Its neighbours finished while the poison event was still being retried.
    assert all((w.end_time or 0) < (victim.end_time or 0) for w in finals[: len(neighbours)])
    assert attempts == 3
    assert victim.status is WorkflowStatus.FAILED
    reason = victim.reason_for_incompletion or ""
    assert "could not decide event TaskResult" in reason
    assert "after 3 attempts: KeyError: 'injected decider bug'" in reason
    assert [t.status for t in victim.tasks] == [TaskStatus.CANCELED]  # its result never applied
    letters = [letter for letter in await read_dead_letters(conn, layout) if victim_id in letter.data]
    assert len(letters) == 1
    assert ".result.inc." in letters[0].subject
    assert letters[0].reason == reason
    assert statistics.events_dead_lettered == 1


async def test_a_task_purged_while_its_worker_runs_it_is_not_handed_back(conn: Connection, client: Client) -> None:
    began = anyio.Event()

    async def forever() -> None:
        began.set()
        await anyio.sleep_forever()

    await client.register_json(b'{"name": "doomed", "tasks": [{"name": "forever", "taskReferenceName": "f"}]}')
    async with running(conn, [WorkerSpec("forever", forever)], stop_grace=0.2):
        workflow_id = await client.start("doomed")
        with anyio.fail_after(30):
            await began.wait()
        await client.terminate(workflow_id, "changed my mind")  # the node purges the queued task message
        terminated = await client.wait(workflow_id, within=30)
    # The worker was stopped holding the task: a hand-back now would bring the canceled task back to life.
    assert terminated.status is WorkflowStatus.TERMINATED
    consumer = client.layout.task_consumer("forever", None)

    async def settled() -> bool:
        info = await conn.js.consumer_info(client.layout.tasks_stream, consumer)
        return (info.num_pending, info.num_ack_pending) == (0, 0)

    await eventually(settled, what="the purged task acked and nothing queued")
    # No task message left (the partitions' fences live in the same stream, one message each).
    tasks = await conn.js.stream_info(client.layout.tasks_stream, subjects_filter=f"{client.layout.prefix}.task.>")
    assert tasks.state.subjects in (None, {})
    assert tasks.state.messages == client.layout.partitions


async def test_workflows_run_on_when_the_history_stream_is_gone(conn: Connection, client: Client) -> None:
    # An audit trail must not stall workflows: with its stream deleted (an operator's doing), each entry is
    # logged as a gap and the workflow completes. (A stream that is only electing a leader defers the event
    # instead, so the replay records the entry: the cluster test checks every history is complete.)
    await client.register_json(
        b'{"name": "untraced", "tasks": [{"name": "inc", "taskReferenceName": "i", "inputParameters": {"n": 1}}]}'
    )
    await conn.js.delete_stream(client.layout.history_stream)
    async with running(conn, [WorkerSpec("inc", inc)]):
        workflow = await client.wait(await client.start("untraced"), within=30)
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"n": 2}


async def test_workflows_run_on_when_the_history_stream_is_full(conn: Connection, client: Client) -> None:
    # Full (an operator's limit, new messages refused): the same, each entry over the limit logged as a gap.
    # The refusal must be seen as one: taken for a timeout, the event would be deferred again and again.
    await client.register_json(
        b'{"name": "untraced", "tasks": [{"name": "inc", "taskReferenceName": "i", "inputParameters": {"n": 1}}]}'
    )
    config: StreamConfig = (await conn.js.stream_info(client.layout.history_stream)).config
    config.max_msgs, config.discard = 1, DiscardPolicy.NEW
    await conn.js.update_stream(config)
    async with running(conn, [WorkerSpec("inc", inc)]):
        workflow = await client.wait(await client.start("untraced"), within=30)
        # Nothing deferred for ever: every event acknowledged.
        await eventually(lambda: _all_processed(conn, client.layout), what="every event acknowledged")
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"n": 2}
    assert (await conn.js.stream_info(client.layout.history_stream)).state.messages == 1


async def _all_processed(conn: Connection, layout: Layout) -> bool:
    return await unprocessed_events(conn, layout) == 0


async def test_a_worker_waits_while_jetstream_refuses_its_consumer_then_runs(
    nats_server: EmbeddedServer, conn: Connection, client: Client, tmp_path: Path
) -> None:
    # A worker whose consumers cannot be made yet (a cluster electing leaders; here a stream at its consumer
    # limit) keeps asking, saying so, instead of exiting; it runs its tasks once they can be made.
    layout = client.layout
    config: StreamConfig = (await conn.js.stream_info(layout.tasks_stream)).config
    await conn.js.delete_stream(layout.tasks_stream)
    config.max_consumers = 2  # room for the worker's two consumers, taken; a limit an update cannot change
    await conn.js.add_stream(config)
    for blocker in ("blocker1", "blocker2"):
        blocked = ConsumerConfig(durable_name=blocker, filter_subject=f"{layout.prefix}.task.{blocker}.>")
        await conn.js.add_consumer(layout.tasks_stream, blocked)
    task = {"name": "step", "taskReferenceName": "s", "inputParameters": {"marker_dir": str(tmp_path), "n": 1}}
    await client.register_json(msgspec.json.encode({"name": "one", "tasks": [task]}))
    log = tmp_path / "w.log"
    worker = Process("--nats", nats_server.url, "worker", "tests.integration.slow_workers", log_path=log)
    try:
        await eventually(lambda: log.exists() and b'"consumer_bind_failed"' in log.read_bytes(), what="a refusal")
        for blocker in ("blocker1", "blocker2"):
            await conn.js.delete_consumer(layout.tasks_stream, blocker)
        async with running(conn, system_tasks=False):  # whose workers would take the two places first
            workflow = await client.wait(await client.start("one"), within=30)
        assert worker.popen.poll() is None  # still running: it waited rather than exiting
    finally:
        worker.stop()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.tasks[0].output_data == {"n": 2}
    assert b"maximum consumers limit reached" in log.read_bytes()
