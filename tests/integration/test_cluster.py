"""Partita on a 3-server JetStream cluster started from the shipped ``deploy/nats/cluster-*.conf`` files (on
loopback ports), with replicated (R3) streams and buckets: servers and nodes killed mid-run lose nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path

import anyio
import msgspec

from partita.actors.membership import LEASE_SECONDS, read_cluster
from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import Client, Connection, Layout, connect, ensure_layout
from partita.transport.server import ClusterMember, local_cluster

from .harness import REPO, Process, eventually, retrying

# The full run (`PARTITA_CLUSTER_WORKFLOWS=300`) is for a developer's machine; CI runs a trimmed one. Both: three
# servers from deploy/nats, R3 streams, three node processes, two worker processes, a server and a node killed.
WORKFLOWS = int(os.environ.get("PARTITA_CLUSTER_WORKFLOWS", "40"))
STEPS = 4


CLUSTER_FILES = sorted((REPO / "deploy" / "nats").glob("cluster-*.conf"))


def nats_cluster(tmp_path: Path) -> AbstractAsyncContextManager[list[ClusterMember]]:
    """The shipped cluster configuration, one server per file, on free loopback ports; stopped by PID."""
    return local_cluster(CLUSTER_FILES, tmp_path)


async def jetstream_ready(conn: Connection) -> None:
    await conn.wait_for_jetstream(within=30)


async def test_the_cluster_files_start_a_cluster_that_replicates_every_stream_three_times(tmp_path: Path) -> None:
    async with nats_cluster(tmp_path) as members:
        conn = await connect(",".join(m.url for m in members), name="test")
        try:
            await jetstream_ready(conn)
            await ensure_layout(conn, Layout(), replicas=3)
            streams = [info async for info in _streams(conn)]
        finally:
            await conn.aclose()
    assert streams, "no stream created"
    replicas = dict(streams)
    assert replicas == dict.fromkeys(replicas, 3)
    assert {"PARTITA_EVENTS", "PARTITA_TASKS", "KV_partita_workflows", "OBJ_partita_payloads"} <= replicas.keys()


async def _streams(conn: Connection) -> AsyncIterator[tuple[str, int]]:
    for info in await conn.js.streams_info():
        yield info.config.name or "", info.config.num_replicas or 1


async def test_workflows_complete_exactly_once_while_a_server_and_a_node_are_killed(tmp_path: Path) -> None:
    steps = [
        {"name": "step", "taskReferenceName": f"s{i}",
         "inputParameters": {"marker_dir": "${workflow.input.dir}", "n": i}}
        for i in range(STEPS)
    ]  # fmt: skip
    markers = tmp_path / "markers"
    markers.mkdir()
    async with nats_cluster(tmp_path) as members:
        urls = ",".join(m.url for m in members)
        conn = await connect(urls, name="test")
        processes: list[Process] = []
        try:
            await jetstream_ready(conn)
            await ensure_layout(conn, Layout(), replicas=3)
            client = await Client.over(conn, Layout())
            await client.register_json(msgspec.json.encode({"name": "chain", "tasks": steps}))
            for i in range(3):
                log = tmp_path / f"node{i}.log"
                processes.append(Process("--nats", urls, "node", "--replicas", "3", log_path=log))
            for i in range(2):  # a worker pool
                log = tmp_path / f"w{i}.log"
                processes.append(Process("--nats", urls, "worker", "tests.integration.slow_workers", log_path=log))
            half = WORKFLOWS // 2
            ids = [await client.start("chain", {"dir": str(markers)}) for _ in range(half)]
            await eventually(lambda: len(os.listdir(markers)) >= half, within=120, what="a quarter of the steps")
            await members[0].kill()  # SIGKILL: a replica (perhaps a leader) is gone; clients fail over
            # Starts during the failover: published with their id as message id, retried until stored once.
            ids += [await client.start("chain", {"dir": str(markers)}) for _ in range(WORKFLOWS - half)]
            await eventually(lambda: len(os.listdir(markers)) >= 2 * WORKFLOWS, within=120, what="half the steps")
            processes[0].kill()  # and one of the three nodes
            with anyio.fail_after(180):
                finals = [await client.wait(workflow_id) for workflow_id in ids]
            # Reading a history needs an ephemeral consumer, which the cluster may refuse (503) for a while
            # after a server died: ask again.
            histories = [await retrying(partial(client.history, workflow_id), within=60) for workflow_id in ids]
        finally:
            for process in processes:
                process.stop()
            await conn.aclose()
    assert [w.status for w in finals] == [WorkflowStatus.COMPLETED] * WORKFLOWS
    for workflow in finals:
        # Exactly once: each step scheduled once and completed once, in order, no duplicate instances.
        assert [t.reference_task_name for t in workflow.tasks] == [f"s{i}" for i in range(STEPS)]
        assert [t.status for t in workflow.tasks] == [TaskStatus.COMPLETED] * STEPS
        assert workflow.output == {"n": STEPS}
    for history in histories:
        # No gap in the audit trail either, though its stream lost a replica (perhaps its leader) mid-run: the
        # start, each step's completion, the end.
        assert history, "no history recorded"
        assert history[0].previous_status is None
        completed = [t.reference_task_name for e in history for t in e.tasks if t.status is TaskStatus.COMPLETED]
        assert completed == [f"s{i}" for i in range(STEPS)], [e.cause for e in history]
        assert history[-1].status is WorkflowStatus.COMPLETED
    # Workers are at-least-once: a step may run twice around a crash, never zero times.
    assert len(os.listdir(markers)) >= WORKFLOWS * STEPS


async def test_partitions_spread_when_nodes_join_and_move_back_when_one_stops_without_stalling_workflows(
    tmp_path: Path,
) -> None:
    steps = [{"name": "step", "taskReferenceName": f"s{i}",
              "inputParameters": {"marker_dir": "${workflow.input.dir}", "n": i}} for i in range(2)]  # fmt: skip
    markers = tmp_path / "markers"
    markers.mkdir()
    async with nats_cluster(tmp_path) as members:
        urls = ",".join(m.url for m in members)
        conn = await connect(urls, name="test")
        nodes: dict[str, Process] = {}
        worker: Process | None = None
        try:
            await jetstream_ready(conn)
            await ensure_layout(conn, Layout(), replicas=3)
            client = await Client.over(conn, Layout())
            await client.register_json(msgspec.json.encode({"name": "pair", "tasks": steps}))
            worker_log = tmp_path / "w.log"
            worker = Process("--nats", urls, "worker", "tests.integration.slow_workers", log_path=worker_log)

            def start(name: str) -> None:
                log = tmp_path / f"{name}.log"
                nodes[name] = Process("--nats", urls, "node", "--name", name, "--replicas", "3", log_path=log)

            async def owners() -> dict[str, int]:
                status = await read_cluster(conn, client.layout)
                return {m.name: len(m.partitions) for m in status.members if m.live}

            async def spread(expected: dict[str, int]) -> bool:
                return await owners() == expected

            # Workflows run all along; none may stall longer than the lease (plus 2 s of slack for a loaded
            # machine: the workflow itself takes about 50 ms), whatever moves meanwhile.
            done = anyio.Event()
            finished = 0

            async def load() -> None:
                nonlocal finished
                while not done.is_set():
                    workflow = await client.wait(await client.start("pair", {"dir": str(markers)}),
                                                 within=LEASE_SECONDS + 2)  # fmt: skip
                    assert workflow.status is WorkflowStatus.COMPLETED
                    finished += 1

            start("a")
            await eventually(partial(spread, {"a": 64}), within=60, what="node a to own every partition")
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(load)
                start("b")
                start("c")
                await eventually(_three_way(owners), within=60, what="the partitions to spread over three nodes")
                before_stop = finished
                assert nodes["b"].stop() == 0  # SIGTERM: b finishes and hands its partitions over
                await eventually(_two_way(owners, "a", "c"), within=3 * LEASE_SECONDS, what="b's share to move")
                await eventually(lambda: finished >= before_stop + 20, within=60, what="workflows after the move")
                done.set()
        finally:
            for process in [*nodes.values(), worker]:
                if process is not None:
                    process.stop()
            await conn.aclose()
    assert finished >= 20


def _three_way(owners: Callable[[], Awaitable[dict[str, int]]]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        shares = await owners()
        return sorted(shares) == ["a", "b", "c"] and sum(shares.values()) == 64 and min(shares.values()) >= 20

    return check


def _two_way(owners: Callable[[], Awaitable[dict[str, int]]], *names: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        shares = await owners()
        return sorted(shares) == sorted(names) and sum(shares.values()) == 64

    return check
