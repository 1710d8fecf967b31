"""Partition ownership across nodes: fair shares, hand-over on a graceful stop and after a node dies, and
correctness that never depended on it (two nodes forced onto the same partitions)."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import anyio
import msgspec

from partita.actors import Node, WorkerSpec, run_workers
from partita.actors.membership import LEASE_SECONDS, MemberInfo
from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import Client, Connection, EmbeddedServer

from .harness import Process, eventually, run_cli

ALL = frozenset(range(64))
CHAIN = {
    "name": "chain",
    "tasks": [{"name": "inc", "taskReferenceName": f"s{i}",
               "inputParameters": {"n": f"${{s{i - 1}.output.n}}" if i else 0}} for i in range(4)],
    "outputParameters": {"n": "${s3.output.n}"},
}  # fmt: skip


def inc(n: int) -> dict[str, object]:
    return {"n": n + 1}


def owned(node: Node) -> frozenset[int]:
    assert node.membership is not None
    return node.membership.owned


async def run_chains(client: Client, count: int) -> None:
    """Start ``count`` chains and wait for each, within a few leases: a stall longer than that fails."""
    ids = [await client.start("chain") for _ in range(count)]
    for workflow_id in ids:
        workflow = await client.wait(workflow_id, within=3 * LEASE_SECONDS)
        assert workflow.status is WorkflowStatus.COMPLETED
        assert [t.status for t in workflow.tasks] == [TaskStatus.COMPLETED] * 4  # each step exactly once
        assert workflow.output == {"n": 4}


async def test_nodes_split_the_partitions_fairly_and_hand_them_over_when_one_stops(
    conn: Connection, client: Client
) -> None:
    await client.register_json(msgspec.json.encode(CHAIN))
    first, second = Node(conn, name="first"), Node(conn, name="second")
    async with anyio.create_task_group() as tg:
        stop_workers = anyio.Event()
        await tg.start(partial(run_workers, conn, [WorkerSpec("inc", inc, concurrency=8)], stop=stop_workers))
        await tg.start(first.run)
        await eventually(lambda: owned(first) == ALL, what="the only node to own every partition")
        await run_chains(client, 10)

        async with anyio.create_task_group() as joining:
            await joining.start(second.run)
            await run_chains(client, 20)  # while the partitions move
            await eventually(
                lambda: owned(first) | owned(second) == ALL and len(owned(first)) == len(owned(second)) == 32,
                what="an even split",
            )
            assert not owned(first) & owned(second)
            await run_chains(client, 10)
            second.request_stop()  # SIGTERM: finish, then hand the partitions over
        await eventually(lambda: owned(first) == ALL, within=LEASE_SECONDS, what="the partitions to come back")
        await run_chains(client, 10)
        stop_workers.set()
        first.request_stop()


async def test_a_dead_node_s_partitions_move_after_its_lease(
    nats_server: EmbeddedServer, conn: Connection, client: Client, tmp_path: Path
) -> None:
    await client.register_json(msgspec.json.encode(CHAIN))
    doomed = Process("--nats", nats_server.url, "node", "--name", "doomed", log_path=tmp_path / "doomed.log")
    survivor = Node(conn, name="survivor")
    try:
        async with anyio.create_task_group() as tg:
            stop_workers = anyio.Event()
            await tg.start(partial(run_workers, conn, [WorkerSpec("inc", inc, concurrency=8)], stop=stop_workers))
            await tg.start(survivor.run)
            await eventually(lambda: len(owned(survivor)) == 32, within=30, what="the two nodes to split the work")
            await run_chains(client, 10)
            doomed.kill()  # SIGKILL: no hand-over; its key goes silent
            await eventually(lambda: owned(survivor) == ALL, within=4 * LEASE_SECONDS, what="the takeover")
            names = [info.name for info in await conn.js.consumers_info(client.layout.events_stream)]
            assert names == [client.layout.node_consumer("survivor")]  # the dead node's consumer was removed
            await run_chains(client, 10)
            stop_workers.set()
            survivor.request_stop()
    finally:
        doomed.stop()


async def test_two_nodes_forced_onto_the_same_partitions_complete_every_workflow_exactly_once(
    conn: Connection, client: Client
) -> None:
    # Same name, so the same consumer: both fetch every partition's events. Compare-and-set keeps it correct.
    await client.register_json(msgspec.json.encode(CHAIN))
    twins = [Node(conn, name="twin"), Node(conn, name="twin")]
    async with anyio.create_task_group() as tg:
        stop_workers = anyio.Event()
        await tg.start(partial(run_workers, conn, [WorkerSpec("inc", inc, concurrency=16)], stop=stop_workers))
        for node in twins:
            await tg.start(node.run)

        async def both_polling() -> bool:
            info = await conn.js.consumer_info(client.layout.events_stream, client.layout.node_consumer("twin"))
            return (info.num_waiting or 0) >= 2

        await eventually(both_polling, what="both twins to wait on the one consumer")
        await run_chains(client, 100)
        assert all(node.statistics().events_received > 0 for node in twins)  # both did take part
        stop_workers.set()
        for node in twins:
            node.request_stop()


async def test_partita_cluster_shows_members_owners_and_the_lag_of_each_partition(
    nats_server: EmbeddedServer, conn: Connection, client: Client
) -> None:
    await client.register_json(msgspec.json.encode(CHAIN))
    node = Node(conn, name="solo")
    async with anyio.create_task_group() as tg:
        await tg.start(node.run)
        await eventually(lambda: owned(node) == ALL, what="the node to own every partition")
        shown = await anyio.to_thread.run_sync(run_cli, "--nats", nats_server.url, "--json", "cluster")
        node.request_stop()
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert [(m["name"], m["live"], len(m["partitions"])) for m in status["members"]] == [("solo", True, 64)]
    assert {p["owner"] for p in status["partitions"]} == {"solo"}
    # The node left (consumer and key deleted); starts now wait in their partitions, owned by nobody.
    ids = [await client.start("chain") for _ in range(3)]
    shown = await anyio.to_thread.run_sync(run_cli, "--nats", nats_server.url, "--json", "cluster")
    status = json.loads(shown.stdout)
    assert status["members"] == []
    waiting = {p["partition"]: p["waiting"] for p in status["partitions"] if p["waiting"]}
    expected: dict[int, int] = {}
    for workflow_id in ids:
        expected[client.layout.partition(workflow_id)] = expected.get(client.layout.partition(workflow_id), 0) + 1
    assert waiting == expected
    assert all(p["owner"] is None for p in status["partitions"])
    human = await anyio.to_thread.run_sync(run_cli, "--nats", nats_server.url, "cluster")
    assert "unowned: 64, events waiting: 3" in human.stdout


async def test_events_stored_before_a_node_takes_their_partition_are_all_delivered(
    conn: Connection, client: Client
) -> None:
    # A member that only heartbeats ("ghost") holds half the partitions' share and consumes nothing, so their
    # events wait while the real node runs far ahead in its own half. When the ghost goes silent the node takes
    # its partitions: the events stored there earlier must all be delivered (a consumer whose filter grows
    # would skip them).
    await client.register_json(msgspec.json.encode(CHAIN))
    members = await conn.kv(client.layout.members_bucket)
    ghost_alive = anyio.Event()

    async def ghost() -> None:
        while not ghost_alive.is_set():
            now = time.time_ns() // 1_000_000
            info = MemberInfo(name="ghost", host="-", pid=0, started_at=now, heartbeat_at=now, partitions=[])
            await members.put("ghost", msgspec.json.encode(info))
            with anyio.move_on_after(0.5):
                await ghost_alive.wait()

    node = Node(conn, name="real")
    async with anyio.create_task_group() as tg:
        tg.start_soon(ghost)
        stop_workers = anyio.Event()
        await tg.start(partial(run_workers, conn, [WorkerSpec("inc", inc, concurrency=8)], stop=stop_workers))
        await tg.start(node.run)
        await eventually(lambda: len(owned(node)) == 32, what="the node to leave the ghost its share")
        ids = [await client.start("chain") for _ in range(30)]
        mine = [i for i in ids if client.layout.partition(i) in owned(node)]
        waiting = [i for i in ids if client.layout.partition(i) not in owned(node)]
        assert mine
        assert waiting
        for workflow_id in mine:  # the node's consumer moves far past the waiting events
            assert (await client.wait(workflow_id, within=30)).status is WorkflowStatus.COMPLETED
        assert await client.find(waiting[0]) is None  # not started: nobody consumes its partition
        ghost_alive.set()  # the ghost goes silent; after the lease the node takes every partition
        await eventually(lambda: owned(node) == ALL, within=4 * LEASE_SECONDS, what="the takeover")
        for workflow_id in waiting:
            assert (await client.wait(workflow_id, within=30)).status is WorkflowStatus.COMPLETED
        stop_workers.set()
        node.request_stop()


async def test_a_node_whose_consumer_another_node_deleted_takes_its_partitions_back(
    conn: Connection, client: Client
) -> None:
    # Another node that thought this one dead (its heartbeats late for a lease) deleted its consumer. The node
    # still believes it owns every partition; unless it checks the server, nothing consumes them ever again.
    await client.register_json(msgspec.json.encode(CHAIN))
    node = Node(conn, name="alive")
    async with anyio.create_task_group() as tg:
        stop_workers = anyio.Event()
        await tg.start(partial(run_workers, conn, [WorkerSpec("inc", inc, concurrency=8)], stop=stop_workers))
        await tg.start(node.run)
        await eventually(lambda: owned(node) == ALL, what="the node to own every partition")
        await run_chains(client, 5)
        consumer = client.layout.node_consumer("alive")
        assert await conn.js.delete_consumer(client.layout.events_stream, consumer)
        await run_chains(client, 10)  # each within a few leases: the node re-creates its consumer
        info = await conn.js.consumer_info(client.layout.events_stream, consumer)
        assert len(info.config.filter_subjects or []) == 64
        stop_workers.set()
        node.request_stop()


async def test_a_consumer_the_server_created_after_its_creator_gave_up_is_adopted_not_deleted(
    conn: Connection, client: Client
) -> None:
    # On a cluster, creating a consumer can outlast the request's timeout (the new Raft group waits out an
    # election when its first leader is down): the node then believes it owns nothing, while the server goes on
    # to create the consumer. Deleting it to "try again" repeats the same wait for ever (a livelock seen in the
    # cluster test); the node must read what the server did and keep it. Here the believed state after such a
    # timeout is set directly, over a consumer the server really has.
    await client.register_json(msgspec.json.encode(CHAIN))
    node = Node(conn, name="patient")
    async with anyio.create_task_group() as tg:
        stop_workers = anyio.Event()
        await tg.start(partial(run_workers, conn, [WorkerSpec("inc", inc, concurrency=8)], stop=stop_workers))
        await tg.start(node.run)
        await eventually(lambda: owned(node) == ALL, what="the node to own every partition")
        consumer = client.layout.node_consumer("patient")
        created = (await conn.js.consumer_info(client.layout.events_stream, consumer)).created
        membership = node.membership
        assert membership is not None
        membership._set_owned(frozenset(), quiet=True)  # what a timed-out create leaves behind
        membership.suspect()
        await eventually(lambda: owned(node) == ALL, within=2 * LEASE_SECONDS, what="the consumer to be adopted")
        assert (await conn.js.consumer_info(client.layout.events_stream, consumer)).created == created
        await run_chains(client, 5)
        stop_workers.set()
        node.request_stop()
