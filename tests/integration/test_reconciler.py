"""The liveness invariant, enforced: a running workflow whose durable movers are gone is found and re-driven.

Each test breaks a workflow by hand the way nothing in the engine can (deleting its task message or its WAIT
timer from the streams), then watches the reconciler notice and the workflow complete.
"""

from __future__ import annotations

import time

import anyio
import msgspec

from partita.actors import WorkerSpec
from partita.actors.effects import seal
from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import Client, Connection, Layout
from partita.transport.provision import message_id_key

from .harness import eventually, running

QUIET = 1.0  # the reconciler audits a workflow whose state is this old (30 s in production)
TASK = {"name": "rec_step", "responseTimeoutSeconds": 30, "timeoutSeconds": 300, "retryCount": 0}
ONE_TASK = {"name": "rec_one", "tasks": [{"name": "rec_step", "taskReferenceName": "only"}]}
WAITING = {
    "name": "rec_wait",
    "tasks": [
        {"name": "wait", "taskReferenceName": "wait", "type": "WAIT", "inputParameters": {"duration": "4 seconds"}},
        {"name": "rec_step", "taskReferenceName": "after"},
    ],
}
HUMAN = {"name": "rec_human", "tasks": [{"name": "ask", "taskReferenceName": "ask", "type": "HUMAN"}]}


def step() -> dict[str, object]:
    return {"done": True}


async def _register(client: Client) -> None:
    await client.register_json(msgspec.json.encode(TASK))
    for definition in (ONE_TASK, WAITING, HUMAN):
        await client.register_json(msgspec.json.encode(definition))


async def _task_of(client: Client, workflow_id: str, ref: str, status: TaskStatus) -> str:
    found: list[str] = []

    async def scheduled() -> bool:
        workflow = await client.find(workflow_id, payloads=False)
        if workflow is None:
            return False  # not started yet
        found[:] = [t.task_id for t in workflow.tasks if t.reference_task_name == ref and t.status is status]
        return bool(found)

    await eventually(scheduled, what=f"task {ref} {status}")
    return found[0]


async def _delete(conn: Connection, stream: str, subject: str) -> None:
    """What no part of Partita ever does: remove a pending message behind the engine's back."""
    # (The record is written before its effects are published: wait for the message to be there.)
    await eventually(lambda: conn.subject_has_message(stream, subject), what=f"a message on {subject}")
    await conn.js.purge_stream(stream, subject=subject)
    assert not await conn.subject_has_message(stream, subject)


async def test_a_workflow_whose_task_message_was_deleted_is_redispatched_and_completes(
    conn: Connection, client: Client
) -> None:
    await _register(client)
    layout = client.layout
    async with running(conn, reconcile_after=QUIET) as run:
        assert run.node is not None
        assert run.node.reconciler is not None
        broken = await client.start("rec_one")
        healthy = await client.start("rec_one")  # left alone: it must not be touched
        task_id = await _task_of(client, broken, "only", TaskStatus.SCHEDULED)
        healthy_task = await _task_of(client, healthy, "only", TaskStatus.SCHEDULED)
        await _delete(conn, layout.tasks_stream, layout.task_message_subject("rec_step", None, task_id))
        # No worker yet: the healthy workflow's message waits in the stream, the broken one's is gone.
        await eventually(lambda: run.node is not None and run.node.statistics().workflows_repaired >= 1, within=30,
                         what="the broken workflow repaired")  # fmt: skip
        counters = run.node.reconciler.counters
        passes = counters.passes
        # Two whole passes after the repair (the first one counted may have begun before it).
        await eventually(lambda: counters.passes >= passes + 3, within=30, what="two more whole reconcile passes")
        statistics = run.node.statistics()
        assert statistics.workflows_stranded == 1  # the healthy one was audited, and left alone
        assert statistics.workflows_audited >= 3
        healthy_subject = layout.task_message_subject("rec_step", None, healthy_task)
        assert await conn.subject_has_message(layout.tasks_stream, healthy_subject)
        async with running(conn, [WorkerSpec("rec_step", step)], node=False):
            finals = [await client.wait(workflow_id, within=30) for workflow_id in (broken, healthy)]
        statistics = run.node.statistics()
    assert [w.status for w in finals] == [WorkflowStatus.COMPLETED] * 2
    assert finals[0].tasks[0].task_id == task_id  # the same task, dispatched again, ran once
    assert [t.status for t in finals[0].tasks] == [TaskStatus.COMPLETED]
    assert statistics.workflows_repaired == 1
    causes = [entry.cause for entry in await client.history(broken)]
    assert any(cause.startswith("reconcile: re-drive ") and task_id in cause for cause in causes)


async def test_a_wait_whose_timer_was_deleted_is_rearmed_for_its_original_time(
    conn: Connection, client: Client
) -> None:
    await _register(client)
    layout = client.layout
    async with running(conn, [WorkerSpec("rec_step", step)], reconcile_after=QUIET) as run:
        assert run.node is not None
        began = time.time() * 1000
        workflow_id = await client.start("rec_wait")
        wait_id = await _task_of(client, workflow_id, "wait", TaskStatus.IN_PROGRESS)
        sealed = seal(await message_id_key(conn, layout), wait_id)  # only nodes can name a timer's schedule
        await _delete(conn, layout.timers_stream, layout.timer_schedule_subject(sealed))
        final = await client.wait(workflow_id, within=30)
        statistics = run.node.statistics()
    assert final.status is WorkflowStatus.COMPLETED
    wait = final.tasks[0]
    assert wait.status is TaskStatus.COMPLETED
    # Re-armed for when it was due, not 4 s after the repair, and never early.
    assert (wait.end_time or 0) - (wait.start_time or 0) >= 4000
    assert (wait.end_time or 0) - began < 4000 + 10_000
    assert statistics.workflows_repaired == 1


async def test_parked_workflows_are_audited_and_left_alone(conn: Connection, client: Client) -> None:
    await _register(client)
    layout = client.layout
    async with running(conn, [WorkerSpec("rec_step", step)], reconcile_after=QUIET) as run:
        assert run.node is not None
        assert run.node.reconciler is not None
        human = await client.start("rec_human")  # waits for a person: nothing durable is owed
        done = await client.wait(await client.start("rec_one"), within=30)
        assert done.status is WorkflowStatus.COMPLETED
        paused = await client.start("rec_wait")
        await _task_of(client, paused, "wait", TaskStatus.IN_PROGRESS)
        await client.pause(paused)
        counters = run.node.reconciler.counters
        passes = counters.passes
        # Three whole passes after the workflows went quiet (QUIET): each was looked at, none re-driven.
        await eventually(lambda: counters.passes >= passes + 3, within=30, what="three reconcile passes")
        statistics = run.node.statistics()
        assert statistics.workflows_stranded == 0
        assert statistics.workflows_repaired == 0
        assert statistics.workflows_audited >= 1  # (the HUMAN one; a paused one is not even audited)
        running_index = await _running(conn, layout)
        assert human in running_index
        assert paused in running_index
        assert (await client.get(human)).status is WorkflowStatus.RUNNING


async def _running(conn: Connection, layout: Layout) -> set[str]:
    found: set[str] = set()
    for partition in range(layout.partitions):
        for subject in await conn.subjects(layout.running_stream, layout.running_filter(partition)):
            workflow_id = layout.parse_running_subject(subject)
            if workflow_id is not None:
                found.add(workflow_id)
    return found


async def test_the_running_index_lists_what_runs_and_forgets_what_ended(conn: Connection, client: Client) -> None:
    await _register(client)
    layout = client.layout
    async with running(conn):
        ids = [await client.start("rec_one") for _ in range(5)]
        for workflow_id in ids:
            await _task_of(client, workflow_id, "only", TaskStatus.SCHEDULED)
        assert set(ids) <= await _running(conn, layout)
        for workflow_id in ids[:3]:
            await client.terminate(workflow_id, "enough")
        with anyio.fail_after(30):
            for workflow_id in ids[:3]:
                await client.wait(workflow_id)

        async def forgotten() -> bool:
            listed = await _running(conn, layout)
            return not set(ids[:3]) & listed and set(ids[3:]) <= listed

        await eventually(forgotten, within=20, what="ended workflows gone from the running index")
