"""Fault tests: processes killed with SIGKILL mid-run, and nothing is lost."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
import msgspec
from nats.js.api import AckPolicy, ConsumerConfig

from partita.actors import TaskMessage, WorkerSpec
from partita.actors.decider.scripts import evaluate_javascript
from partita.schemas import TaskStatus, Workflow, WorkflowStatus
from partita.transport import Client, Connection, EmbeddedServer, Layout, connect
from partita.transport.provision import EVENTS_ACK_WAIT_SECONDS

from .harness import Process, eventually, running

WORKERS_MODULE = "tests.integration.slow_workers"


async def _kill_the_worker_holding_the_task(
    nats_server: EmbeddedServer, conn: Connection, client: Client, tmp_path: Path, flow: str, rescuer: WorkerSpec
) -> Workflow:
    """Start ``flow`` (one ``slow`` task), SIGKILL the worker process running it, then let ``rescuer`` take over."""
    markers = tmp_path / "markers"
    markers.mkdir()
    doomed = Process("--nats", nats_server.url, "worker", WORKERS_MODULE, log_path=tmp_path / "w.log")
    try:
        async with running(conn):
            workflow_id = await client.start(flow, {"dir": str(markers)})
            await eventually(lambda: any(markers.iterdir()), what="the doomed worker to start the task")
            doomed.kill()
            async with running(conn, [rescuer], node=False):
                return await client.wait(workflow_id, within=30)
    finally:
        doomed.stop()


SLOW_STEP = b'[{"name": "slow", "taskReferenceName": "s", "inputParameters": {"marker_dir": "${workflow.input.dir}"}}]'


async def test_a_task_whose_worker_dies_times_out_after_its_response_timeout_and_is_retried(
    nats_server: EmbeddedServer, conn: Connection, client: Client, tmp_path: Path
) -> None:
    # ALERT_ONLY: Conductor times out a silent task whatever its timeoutPolicy says.
    await client.register_json(
        b'{"name": "slow", "responseTimeoutSeconds": 2, "retryCount": 1, "retryDelaySeconds": 0,'
        b' "timeoutPolicy": "ALERT_ONLY"}'
    )
    await client.register_json(b'{"name": "slow_flow", "tasks": ' + SLOW_STEP + b"}")
    rescued: list[TaskMessage] = []

    def rescue(task: TaskMessage) -> dict[str, object]:
        rescued.append(task)
        return {"finished_by": "rescuer"}

    workflow = await _kill_the_worker_holding_the_task(
        nats_server, conn, client, tmp_path, "slow_flow", WorkerSpec("slow", rescue)
    )
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"finished_by": "rescuer"}
    # Conductor's task list: the silent attempt TIMED_OUT, then a retry as a new instance.
    timed_out, retried = workflow.tasks
    assert (timed_out.status, timed_out.retry_count) == (TaskStatus.TIMED_OUT, 0)
    assert "after 2 seconds (responseTimeoutSeconds)" in (timed_out.reason_for_incompletion or "")
    assert (retried.status, retried.retry_count, retried.retried_task_id) == (
        TaskStatus.COMPLETED,
        1,
        timed_out.task_id,
    )
    assert [t.task_id for t in rescued] == [retried.task_id]  # the dead worker's attempt never ran twice


async def test_a_silent_task_with_no_retries_left_times_out_its_workflow(
    nats_server: EmbeddedServer, conn: Connection, client: Client, tmp_path: Path
) -> None:
    await client.register_json(b'{"name": "slow", "responseTimeoutSeconds": 1, "retryCount": 0}')
    await client.register_json(b'{"name": "slow_once", "tasks": ' + SLOW_STEP + b"}")

    def never(task: TaskMessage) -> None:
        raise AssertionError(f"the timed-out attempt {task.task_id} must not run again")

    workflow = await _kill_the_worker_holding_the_task(
        nats_server, conn, client, tmp_path, "slow_once", WorkerSpec("slow", never)
    )
    assert workflow.status is WorkflowStatus.TIMED_OUT
    (task,) = workflow.tasks
    assert task.status is TaskStatus.TIMED_OUT
    assert "(responseTimeoutSeconds)" in (workflow.reason_for_incompletion or "")


async def test_a_node_killed_mid_run_and_restarted_completes_every_workflow_exactly_once(
    nats_server: EmbeddedServer, conn: Connection, client: Client, tmp_path: Path
) -> None:
    steps = [
        {
            "name": "step",
            "taskReferenceName": f"s{i}",
            "inputParameters": {"marker_dir": "${workflow.input.dir}", "n": i},
        }
        for i in range(4)
    ]
    await client.register_json(msgspec.json.encode({"name": "chain", "tasks": steps}))
    markers = tmp_path / "markers"
    markers.mkdir()
    workers = Process(
        "--nats", nats_server.url, "worker", "tests.integration.slow_workers", log_path=tmp_path / "w.log"
    )
    first = Process("--nats", nats_server.url, "node", log_path=tmp_path / "node1.log")
    second: Process | None = None
    try:
        ids = [await client.start("chain", {"dir": str(markers)}) for _ in range(30)]
        # Kill the node once it is well into the run: some workflows done, others mid-way.
        await eventually(lambda: len(os.listdir(markers)) >= 40, within=60, what="40 steps to run")
        first.kill()
        second = Process("--nats", nats_server.url, "node", log_path=tmp_path / "node2.log")
        with anyio.fail_after(90):
            finals = [await client.wait(workflow_id) for workflow_id in ids]
    finally:
        for process in (workers, first, second):
            if process is not None:
                process.stop()
    assert all(w.status is WorkflowStatus.COMPLETED for w in finals)
    for workflow in finals:
        # Exactly once: each step scheduled once and completed once, in order, no duplicate instances.
        assert [t.reference_task_name for t in workflow.tasks] == ["s0", "s1", "s2", "s3"]
        assert [t.status for t in workflow.tasks] == [TaskStatus.COMPLETED] * 4
        assert workflow.output == {"n": 4}
    # Workers are at-least-once: a step may have run twice around the crash, never zero times.
    assert len(os.listdir(markers)) >= 30 * 4


async def test_a_node_and_its_workers_ride_out_a_nats_server_restart(tmp_path: Path) -> None:
    def step(n: int) -> dict[str, object]:
        return {"n": n + 1}

    definition = {
        "name": "two_steps",
        "tasks": [
            {"name": "step", "taskReferenceName": "a", "inputParameters": {"n": 1}},
            {"name": "step", "taskReferenceName": "b", "inputParameters": {"n": "${a.output.n}"}},
        ],
    }
    server = EmbeddedServer(tmp_path / "nats")
    await server.start()
    try:
        conn = await connect(server.url)
        client = await Client.over(conn, Layout())
        await client.register_json(msgspec.json.encode(definition))
        async with running(conn, [WorkerSpec("step", step)]):
            before = await client.wait(await client.start("two_steps"), within=30)
            await server.stop()  # the node, the workers and the client stay up, reconnecting
            server = EmbeddedServer(tmp_path / "nats", port=server.port)
            await server.start()
            after = await client.wait(await client.start("two_steps"), within=30)
        await conn.aclose()
    finally:
        await server.stop()
    assert before.status is WorkflowStatus.COMPLETED
    assert after.status is WorkflowStatus.COMPLETED
    assert after.output == {"n": 3}


def _busy_script(seconds: float) -> str:
    """A JavaScript loop that keeps the engine busy about ``seconds`` here (the sandbox's clock is frozen, so
    the loop counts: calibrated on this machine, now)."""
    loop = "(function () {{ var x = 0; for (var i = 0; i < {}; i++) {{ x += i % 7; }} return x > -1; }})()"
    n = 200_000
    while True:
        began = time.perf_counter()
        evaluate_javascript(loop.format(n), {}, now=0)
        took = time.perf_counter() - began
        if took > 0.25:
            return loop.format(int(n * seconds / took))
        n *= 4


async def test_a_live_node_keeps_an_event_that_takes_longer_than_the_ack_wait(conn: Connection, client: Client) -> None:
    # The events AckWait is short so that a dead node's events come back fast; a live node signals progress.
    # Eight INLINE tasks of about 1 s each (each well within the 4 s script limit) make one long decision.
    script = _busy_script(1.0)
    tasks = [
        {"name": "busy", "taskReferenceName": f"t{i}", "type": "INLINE",
         "inputParameters": {"evaluatorType": "graaljs", "expression": script}}
        for i in range(8)
    ]  # fmt: skip
    await client.register_json(json.dumps({"name": "slow_scripts", "tasks": tasks}))
    async with running(conn) as env:
        began = time.monotonic()
        workflow = await client.wait(await client.start("slow_scripts"), within=90)
        took = time.monotonic() - began
        assert env.node is not None
        consumer = client.layout.node_consumer(env.node.name)
        events = await conn.js.consumer_info(client.layout.events_stream, consumer)
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    assert [t.output_data for t in workflow.tasks] == [{"result": True}] * 8
    assert took > EVENTS_ACK_WAIT_SECONDS  # else this test proves nothing
    # Every delivery is a first delivery: the consumer's delivery count equals the stream messages it covered.
    assert events.delivered is not None
    assert events.delivered.consumer_seq == events.delivered.stream_seq


async def test_a_node_replaces_the_shared_consumer_of_an_older_release_and_loses_no_event(
    conn: Connection, client: Client
) -> None:
    # Releases before partition ownership had every node share one consumer over all partitions.
    layout = client.layout
    await client.register_json(b'{"name": "one", "tasks": [{"name": "t", "taskReferenceName": "t"}]}')
    legacy = ConsumerConfig(durable_name=layout.events_consumer, filter_subject=layout.events_filter,
                            ack_policy=AckPolicy.EXPLICIT, ack_wait=10.0)  # fmt: skip
    await conn.js.add_consumer(layout.events_stream, legacy)
    workflow_id = await client.start("one")  # waits in the stream, behind the old consumer

    def t() -> dict[str, object]:
        return {"ok": True}

    async with running(conn, [WorkerSpec("t", t)]) as env:
        workflow = await client.wait(workflow_id, within=30)
        assert env.node is not None
        assert env.node.membership is not None
        assert env.node.membership.owned == frozenset(range(layout.partitions))
        names = [info.name for info in await conn.js.consumers_info(layout.events_stream)]
    assert names == [layout.node_consumer(env.node.name)]
    assert workflow.status is WorkflowStatus.COMPLETED
