"""Fencing task dispatches (actors/fencing.py) against a real nats-server: a partition's previous owner cannot
store a dispatch once the new owner has fenced it, whenever its bytes arrive; processes sharing a name converge
on one fence instead of refusing each other forever; a tasks stream made before fencing is upgraded by a node."""

from __future__ import annotations

from functools import partial

import anyio
import msgspec
import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from partita.actors import Node, WorkerSpec, run_workers
from partita.actors.fencing import Fences
from partita.schemas import WorkflowStatus
from partita.transport import Client, Connection, Fenced, Layout, ensure_layout
from partita.transport.connection import Publication

LAYOUT = Layout()
PARTITION = 7


def dispatch(task_id: str) -> Publication:
    return Publication.durable(LAYOUT.task_message_subject("step", None, task_id), b"{}", f"dispatch:{task_id}")


async def test_a_dispatch_from_before_the_new_owner_fenced_is_refused_and_the_new_owners_is_stored(
    conn: Connection,
) -> None:
    await ensure_layout(conn, LAYOUT)
    refusals: list[int] = []
    old = Fences(conn, LAYOUT, "old")
    old.on_refused = lambda: refusals.append(PARTITION)
    await old.take([PARTITION])
    # Written by the old owner before it froze, still in its client's buffer...
    late = old.fence(dispatch("t1"), PARTITION)
    new = Fences(conn, LAYOUT, "new")
    await new.take([PARTITION])  # ... when the new owner takes the partition over
    # ... and replayed by the new owner, as it replays the effects of events it took over.
    [stored] = await conn.publish_all([new.fence(dispatch("t1"), PARTITION)])
    assert stored is None
    # The old owner's bytes reach the server only now, with its message id long forgotten: refused all the same.
    [outcome] = await conn.publish_all([late])
    assert isinstance(outcome, Fenced)
    tasks = await conn.js.stream_info(LAYOUT.tasks_stream, subjects_filter=f"{LAYOUT.prefix}.task.>")
    assert tasks.state.subjects == {LAYOUT.task_message_subject("step", None, "t1"): 1}
    # The old owner's token is dropped on the refusal; without one it does not dispatch at all.
    old.refused(PARTITION)
    assert refusals == [PARTITION]
    assert old.missing([PARTITION]) == {PARTITION}
    with pytest.raises(Fenced, match="holds no fence"):
        old.fence(dispatch("t3"), PARTITION)


async def test_two_processes_of_one_name_share_a_fence_rather_than_refusing_each_other(conn: Connection) -> None:
    await ensure_layout(conn, LAYOUT)
    first, second = Fences(conn, LAYOUT, "twin"), Fences(conn, LAYOUT, "twin")
    await first.take([PARTITION])
    await second.take([PARTITION])  # fences anew: a process never adopts a fence it was not refused by
    [outcome] = await conn.publish_all([first.fence(dispatch("a"), PARTITION)])
    assert isinstance(outcome, Fenced)
    first.refused(PARTITION)
    await first.take(first.missing([PARTITION]))  # refused by its twin: adopts the twin's fence
    outcomes = await conn.publish_all([first.fence(dispatch("b"), PARTITION), second.fence(dispatch("c"), PARTITION)])
    assert outcomes == [None, None]
    # Refused by another name's fence, it fences anew (it still owns the partition, or it would not try).
    other = Fences(conn, LAYOUT, "other")
    await other.take([PARTITION])
    [outcome] = await conn.publish_all([first.fence(dispatch("d"), PARTITION)])
    assert isinstance(outcome, Fenced)
    first.refused(PARTITION)
    await first.take([PARTITION])
    [outcome] = await conn.publish_all([other.fence(dispatch("e"), PARTITION)])
    assert isinstance(outcome, Fenced)


async def test_a_node_upgrades_a_tasks_stream_made_before_fencing_and_runs_workflows(
    conn: Connection, client: Client
) -> None:
    # The tasks stream as versions before fencing made it: no fence subjects, no rollups.
    await conn.js.delete_stream(LAYOUT.tasks_stream)
    old = StreamConfig(name=LAYOUT.tasks_stream, subjects=[f"{LAYOUT.prefix}.task.>", f"{LAYOUT.prefix}.tsched.>"],
                       retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, allow_msg_schedules=True,
                       description="tuned by the operator")  # fmt: skip
    await conn.js.add_stream(old)
    await client.register_json(
        msgspec.json.encode({"name": "one", "tasks": [{"name": "inc", "taskReferenceName": "i"}]})
    )
    node = Node(conn, name="upgrader")
    async with anyio.create_task_group() as tg:
        stop = anyio.Event()
        await tg.start(partial(run_workers, conn, [WorkerSpec("inc", lambda: {"ok": True})], stop=stop))
        await tg.start(node.run)
        workflow = await client.wait(await client.start("one"), within=20)
        stop.set()
        node.request_stop()
    assert workflow.status is WorkflowStatus.COMPLETED
    config = (await conn.js.stream_info(LAYOUT.tasks_stream)).config
    assert f"{LAYOUT.prefix}.fence.>" in (config.subjects or [])
    assert config.allow_rollup_hdrs
    assert config.description == "tuned by the operator"  # the rest as the operator left it
    fences = await conn.js.stream_info(LAYOUT.tasks_stream, subjects_filter=f"{LAYOUT.prefix}.fence.>")
    assert len(fences.state.subjects or {}) == LAYOUT.partitions  # one each, fenced before it was consumed
