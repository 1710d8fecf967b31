"""Escalations a restricted identity could try with what NATS lets it publish (docs/security.md, "Attacks
tried"), each against a real nats-server: first against the layout before accounts (every identity in the
engine's account, an events stream taking any partition token, guessable message ids), where the server does
what the attacker asks, then against `partita auth`'s deployment, where it does not, or the node refuses it.

The attacker is raw nats-py holding only its own seed, as a compromised worker application would be.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import anyio
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient

from partita.actors import Node, WorkerSpec, run_workers
from partita.schemas import TaskResultStatus, TaskStatus, UpdateTask, WorkflowStatus
from partita.transport import (
    Client,
    Connection,
    EmbeddedServer,
    Layout,
    NoStreamListening,
    connect,
    ensure_layout,
    read_dead_letters,
)
from partita.transport.auth import AuthDirectory, inbox_prefix_for, permissions
from partita.transport.client import workflow_id_for
from partita.transport.codec import encode_json
from partita.transport.connection import rfc3339
from partita.transport.migrate import migrate_events
from partita.transport.provision import ensure_task_consumer
from partita.transport.server import local_cluster

from .harness import REPO, eventually
from .test_security import INVENTORY, LAYOUT, WORKERS, Deployment, _identities, _provision, _run_order

SHIP_WAIT = {
    "name": "ship_after_wait",
    "version": 1,
    "schemaVersion": 2,
    "tasks": [
        {"name": "pause", "taskReferenceName": "pause", "type": "WAIT", "inputParameters": {"duration": "2 seconds"}},
        {"name": "ship", "taskReferenceName": "ship", "type": "SIMPLE", "inputParameters": {"n": 1}},
    ],
}  # fmt: skip


def legacy_accounts(auth: AuthDirectory, layout: Layout) -> str:
    """What `partita auth` wrote before accounts isolated identities: one account, each user restricted by its
    permissions only."""
    users = []
    for identity in auth.identities():
        perms = permissions(identity, layout)
        allow = (
            f"publish: {{ allow: {json.dumps(perms.publish)} }}, subscribe: {{ allow: {json.dumps(perms.subscribe)} }}"
        )
        users.append(f"{{ nkey: {identity.public_key}, permissions: {{ {allow} }} }}")
    return f"accounts {{ PARTITA: {{ jetstream: enabled, users: [ {', '.join(users)} ] }} }}\n"


@asynccontextmanager
async def deployment(tmp_path: Path, *, legacy: bool) -> AsyncIterator[Deployment]:
    auth = AuthDirectory(tmp_path / "auth", LAYOUT)
    _identities(auth)
    accounts = legacy_accounts(auth, LAYOUT) if legacy else auth.accounts_file.read_text()
    async with EmbeddedServer(tmp_path / "nats", extra_config=accounts) as server:
        d = Deployment(server, auth, None)
        await _provision(d)
        if legacy:
            conn = await connect(server.url, credentials=d.credentials("node"))
            try:
                await older_events_stream(conn, any_partition=True)
                limits = (await conn.js.stream_info(f"KV_{LAYOUT.limits_bucket}")).config
                await conn.js.update_stream(replace(limits, allow_rollup_hdrs=True))  # as every KV bucket is made
            finally:
                await conn.aclose()
        yield d


async def older_events_stream(conn: Connection, *, any_partition: bool) -> None:
    """The events stream as older versions made it: with message schedules (the timers' own, under
    `<prefix>.esched.`, and so with roll-ups), and, before partitions were named, taking any partition token."""
    config = (await conn.js.stream_info(LAYOUT.events_stream)).config
    subjects = [LAYOUT.events_filter] if any_partition else list(config.subjects or ())
    await conn.js.update_stream(
        replace(config, subjects=[*subjects, f"{LAYOUT.prefix}.esched.>"], allow_msg_schedules=True, sources=None)
    )


@asynccontextmanager
async def raw(d: Deployment, name: str) -> AsyncIterator[NatsClient]:
    """nats-py with nothing but the identity's seed (and the inbox prefix its permissions allow)."""
    nc = await nats.connect(
        d.server.url,
        nkeys_seed=str(d.auth.seed_file(name)),
        inbox_prefix=inbox_prefix_for(d.public_key(name)),
        allow_reconnect=False,
    )
    try:
        yield nc
    finally:
        await nc.close()


@asynccontextmanager
async def node_connection(d: Deployment) -> AsyncIterator[Connection]:
    conn = await connect(d.server.url, credentials=d.credentials("node"))
    try:
        yield conn
    finally:
        await conn.aclose()


async def _value(conn: Connection, bucket: str, key: str) -> bytes | None:
    kv = await conn.js.key_value(bucket)
    try:
        return (await kv.get(key)).value
    except nats.js.errors.KeyNotFoundError:
        return None


# --- writes through reply subjects ---------------------------------------------------------------------------


async def _reply_into(d: Deployment, victim_key: str) -> None:
    """The worker asks about its own consumer, and the client about the definitions bucket (both allowed), each
    with a reply subject in a bucket it may not write; then asks once more with a real inbox, so the server has
    answered by the time this returns."""
    tasks, consumer = LAYOUT.tasks_stream, LAYOUT.task_consumer("get-inventory", "john")
    info = f"$JS.API.CONSUMER.INFO.{tasks}.{consumer}"
    async with raw(d, "inventory-app") as worker, raw(d, "client") as client:
        await worker.publish(info, b"", reply=f"$KV.{LAYOUT.workflows_bucket}.{victim_key}")
        await worker.publish(info, b"", reply=f"$KV.{LAYOUT.secrets_bucket}.forged")
        await worker.publish(f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.{consumer}", b'{"batch": 1, "no_wait": true}',
                             reply=f"$KV.{LAYOUT.definitions_bucket}.task.forged")  # fmt: skip
        definitions = f"$JS.API.STREAM.INFO.KV_{LAYOUT.definitions_bucket}"
        await client.publish(definitions, b"", reply=f"$KV.{LAYOUT.definitions_bucket}.task.by-client")
        await worker.request(info, b"", timeout=5)
        await client.request(definitions, b"", timeout=5)


async def test_a_reply_subject_cannot_write_into_an_engine_stream(tmp_path: Path) -> None:
    written: dict[bool, dict[str, bytes | None]] = {}
    for legacy in (True, False):
        async with deployment(tmp_path / f"legacy-{legacy}", legacy=legacy) as d, node_connection(d) as conn:
            await ensure_task_consumer(conn, LAYOUT, "get-inventory", "john", ack_wait_seconds=30)
            await conn.js.publish(LAYOUT.task_message_subject("get-inventory", "john", "t1"), b"a task")
            kv = await conn.js.key_value(LAYOUT.workflows_bucket)
            await kv.put("victim", b"the real record")
            await _reply_into(d, "victim")

            if legacy:  # every write lands: the server answers into the engine's own buckets
                await eventually(partial(_all_written, conn), within=10, what="the replies stored")
            written[legacy] = await _outcome(conn)
    before = written[True]
    assert b"consumer_info_response" in (before["record"] or b"")  # the record, overwritten
    assert b"consumer_info_response" in (before["secret"] or b"")  # a node-only bucket
    assert b"stream_info_response" in (before["client into definitions"] or b"")
    # Consumer deliveries (the task a pull request fetched) are not stored by a stream on the reply subject.
    assert before["pull into definitions"] is None
    after = written[False]
    assert after == {"record": b"the real record", "secret": None, "pull into definitions": None,
                     "client into definitions": None}  # fmt: skip


async def _outcome(conn: Connection) -> dict[str, bytes | None]:
    return {
        "record": await _value(conn, LAYOUT.workflows_bucket, "victim"),
        "secret": await _value(conn, LAYOUT.secrets_bucket, "forged"),
        "pull into definitions": await _value(conn, LAYOUT.definitions_bucket, "task.forged"),
        "client into definitions": await _value(conn, LAYOUT.definitions_bucket, "task.by-client"),
    }


async def _all_written(conn: Connection) -> bool:
    values = await _outcome(conn)
    return values["record"] != b"the real record" and bool(values["secret"] and values["client into definitions"])


# --- message schedules ---------------------------------------------------------------------------------------


def _schedule(target: str, *, at_ms: int | None = None) -> dict[str, str]:
    when = rfc3339(at_ms if at_ms is not None else int(time.time() * 1000) - 1000)
    return {"Nats-Schedule": f"@at {when}", "Nats-Schedule-Target": target}


async def test_a_schedule_on_a_partition_outside_the_layout_is_refused(tmp_path: Path) -> None:
    """Before: the worker's result subject on partition 71 (of 64) is stored, no node ever reads it, and the
    server fires its schedule: a command no client sent. Now the stream names each partition, and refuses."""
    forged = UpdateTask(workflow_id="victim", task_ref_name="ship", status=TaskResultStatus.COMPLETED)
    target = LAYOUT.command_subject("victim")
    outside = f"{LAYOUT.prefix}.wf.71.result.get-inventory.john"
    for legacy in (True, False):
        async with deployment(tmp_path / f"legacy-{legacy}", legacy=legacy) as d, raw(d, "inventory-app") as nc:
            js = nc.jetstream()
            if legacy:
                await js.publish(outside, encode_json(forged), headers=_schedule(target))
                async with node_connection(d) as conn:
                    await eventually(lambda: conn.subject_has_message(LAYOUT.events_stream, target), within=10,
                                     what="the server firing the forged schedule")  # fmt: skip
            else:
                with pytest.raises((nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)):
                    await js.publish(outside, encode_json(forged), headers=_schedule(target), timeout=2)


async def test_the_events_stream_refuses_roll_ups_and_message_schedules(tmp_path: Path) -> None:
    """Before: the events stream allowed schedules, so nats-server allowed roll-ups on it too, and one header on
    a worker's own result subject purged every pending event (a start, here); a schedule fired a command no
    client sent. Now timers live in their own stream and the events stream takes neither header."""
    for legacy in (True, False):
        async with deployment(tmp_path / f"legacy-{legacy}", legacy=legacy) as d, node_connection(d) as conn:
            client = await Client.over(conn, LAYOUT)
            await client.register_json(json.dumps(INVENTORY))
            pending = await client.start("inventory_check")  # no node runs: it waits in the stream
            own, victim = LAYOUT.result_subject("w", "get-inventory", "john"), LAYOUT.command_subject("victim")
            forged = _schedule(victim)
            purge = {"Nats-Schedule-Next": "purge", "Nats-Scheduler": victim}
            async with raw(d, "inventory-app") as nc:
                js = nc.jetstream()
                if legacy:
                    await js.publish(own, b"", headers={"Nats-Rollup": "all"})
                    assert not await conn.subject_has_message(LAYOUT.events_stream, LAYOUT.start_subject(pending))
                    await js.publish(own, b"", headers=forged)
                    fired = partial(conn.subject_has_message, LAYOUT.events_stream, victim)
                    await eventually(fired, within=10, what="the forged command")
                    continue
                refusals = {"rollup not permitted": {"Nats-Rollup": "all"}, "schedules is disabled": forged}
                for refusal, headers in (*refusals.items(), ("schedules is disabled", purge)):
                    with pytest.raises(nats.js.errors.APIError, match=refusal):
                        await js.publish(own, b"", headers=headers)
            assert await conn.subject_has_message(LAYOUT.events_stream, LAYOUT.start_subject(pending))


async def test_on_an_older_events_stream_a_forged_schedule_fires_nothing_a_node_trusts(tmp_path: Path) -> None:
    """An events stream made by an older version keeps its schedules (they cannot be turned off): there a
    worker may still schedule on its own result subject, and the server fires the target (a command completing
    another workflow's task, a start) without the worker's permissions. The node trusts only what a node-made
    schedule fired, so both are dead-lettered and the task waits for its real worker. A worker that names a
    timer's schedule to purge it (`Nats-Schedule-Next: purge`) cannot name a node's: their names are sealed
    (the node keeps them in this stream until it is migrated). A schedule named as before is purged."""
    async with deployment(tmp_path, legacy=False) as d, node_connection(d) as conn:
        await older_events_stream(conn, any_partition=False)
        async with raw(d, "inventory-app") as nc:  # the purge, against a schedule named as before sealing
            legacy_timer = LAYOUT.legacy_timer_schedule_subject("some-task.timeout")
            await conn.publish_at(legacy_timer, LAYOUT.timer_subject("w"), int(time.time() * 1000) + 3_600_000,
                                  b"{}")  # fmt: skip
            own = LAYOUT.result_subject("w", "get-inventory", "john")
            await nc.jetstream().publish(
                own, b"", headers={"Nats-Schedule-Next": "purge", "Nats-Scheduler": legacy_timer}
            )
            assert not await conn.subject_has_message(LAYOUT.events_stream, legacy_timer)
        admin = await Client.over(conn, LAYOUT)
        await admin.register_json(json.dumps(INVENTORY))
        await admin.register_json(json.dumps(SHIP_WAIT))
        stop = anyio.Event()
        node = Node(conn, LAYOUT)
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            victim = await admin.start("inventory_check", {"sku": "xyz"}, task_to_domain={"get-inventory": "john"})
            waiting = await admin.start("ship_after_wait")
            await eventually(lambda: _task_status(admin, waiting, "pause", TaskStatus.IN_PROGRESS), within=10,
                             what="the WAIT armed")  # fmt: skip
            node.request_stop()
        # With no node running, the server fires the forged schedules; the node reads them when it is back.
        forged_update = UpdateTask(workflow_id=victim, task_ref_name="inv", status=TaskResultStatus.COMPLETED,
                                   output_data={"n": 1_000_000})  # fmt: skip
        forged_start = {"workflowId": "forged", "name": "inventory_check"}
        pause = (await admin.get(waiting)).tasks[0].task_id
        async with raw(d, "inventory-app") as nc:
            js = nc.jetstream()
            own = LAYOUT.result_subject(victim, "get-inventory", "john")
            await js.publish(own, encode_json(forged_update), headers=_schedule(LAYOUT.command_subject(victim)))
            other = LAYOUT.result_subject("forged", "get-inventory", "john")
            await js.publish(
                other, json.dumps(forged_start).encode(), headers=_schedule(LAYOUT.start_subject("forged"))
            )
            # The worker purges the WAIT's timer by the name it can compute (the task id).
            for named in (LAYOUT.timer_schedule_subject(pause), LAYOUT.legacy_timer_schedule_subject(pause)):
                await js.publish(own, b"", headers={"Nats-Schedule-Next": "purge", "Nats-Scheduler": named})
        for fired in (LAYOUT.command_subject(victim), LAYOUT.start_subject("forged")):
            await eventually(partial(conn.subject_has_message, LAYOUT.events_stream, fired), within=10,
                             what="the server firing a forged schedule")  # fmt: skip
        node = Node(conn, LAYOUT)
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)

            fired = {LAYOUT.command_subject(victim), LAYOUT.start_subject("forged")}

            async def both_dead_lettered() -> bool:
                letters = await read_dead_letters(conn, LAYOUT, limit=100)
                return {x.subject for x in letters if x.subject in fired and "which no node made" in x.reason} == fired

            await eventually(both_dead_lettered, within=15, what="the fired messages dead-lettered")
            assert await admin.find("forged") is None
            assert (await admin.get(victim)).tasks[0].status is TaskStatus.SCHEDULED
            await eventually(lambda: _task_status(admin, waiting, "pause", TaskStatus.COMPLETED), within=15,
                             what="the WAIT's timer firing, unpurged")  # fmt: skip
            worker = await connect(d.server.url, credentials=d.credentials("inventory-app"))
            try:
                await tg.start(partial(run_workers, worker, [WORKERS["inventory-app"]], LAYOUT, stop=stop))
                await eventually(lambda: _task_status(admin, victim, "inv", TaskStatus.COMPLETED), within=15,
                                 what="the real worker's result")  # fmt: skip
                assert (await admin.get(victim)).tasks[0].output_data == {"n": 3}
            finally:
                stop.set()
                node.request_stop()
                await worker.aclose()


async def _task_status(client: Client, workflow_id: str, ref: str, status: TaskStatus) -> bool:
    workflow = await client.find(workflow_id)
    return workflow is not None and any(t.reference_task_name == ref and t.status is status for t in workflow.tasks)


# --- message-id squatting ------------------------------------------------------------------------------------


async def test_a_worker_cannot_occupy_the_message_id_of_a_start(tmp_path: Path) -> None:
    """A start keyed by an idempotency key has a workflow id anyone can compute. Its message id used to be
    `start:<that id>`: a worker publishing anything with it on its own result subject made JetStream drop the
    real start as a duplicate. Now the id carries a nonce of the client's, so the squat occupies nothing."""
    workflow_id = workflow_id_for("inventory_check", "order-1")
    squatted = f"start:{workflow_id}"
    for legacy in (True, False):
        async with deployment(tmp_path / f"legacy-{legacy}", legacy=legacy) as d, node_connection(d) as conn:
            async with raw(d, "inventory-app") as nc:
                squat = await nc.jetstream().publish(
                    LAYOUT.result_subject(workflow_id, "get-inventory", "john"), b"", headers={"Nats-Msg-Id": squatted}
                )
                assert not squat.duplicate
            if legacy:  # the start as the client published it before
                start = encode_json({"workflowId": workflow_id, "name": "inventory_check"})
                ack = await conn.js.publish(LAYOUT.start_subject(workflow_id), start, headers={"Nats-Msg-Id": squatted})
                assert ack.duplicate  # dropped: the workflow would never start
                continue
            admin = await Client.over(conn, LAYOUT)
            await admin.register_json(json.dumps(INVENTORY))
            node = Node(conn, LAYOUT)
            async with anyio.create_task_group() as tg:
                await tg.start(node.run)
                started = await admin.start("inventory_check", {"sku": "ab"}, idempotency_key="order-1",
                                            task_to_domain={"get-inventory": "john"})  # fmt: skip
                assert started == workflow_id
                taken = partial(_task_status, admin, workflow_id, "inv", TaskStatus.SCHEDULED)
                await eventually(taken, within=10, what="the start taken despite the squat")
                await _squat_dead_letters(d, conn)
                node.request_stop()


async def _squat_dead_letters(d: Deployment, conn: Connection) -> None:
    """The worker may dead-letter a task it cannot read, with any message id: it occupies the ids the node would
    give the letters of the next events (`dlq:<subject>:<sequence>`), then publishes a poison result. The node's
    letter is sealed, so it is kept all the same."""
    poison_subject = LAYOUT.result_subject("w-poison", "get-inventory", "john")
    next_seq = (await conn.js.stream_info(LAYOUT.events_stream)).state.last_seq + 1
    async with raw(d, "inventory-app") as nc:
        js = nc.jetstream()
        for seq in range(next_seq, next_seq + 5):
            await js.publish(f"{LAYOUT.prefix}.dlq.task", b"{}", headers={"Nats-Msg-Id": f"dlq:{poison_subject}:{seq}"})
        poison = await js.publish(poison_subject, b"not a result")
    assert next_seq <= poison.seq < next_seq + 5

    async def kept() -> bool:
        letters = await read_dead_letters(conn, LAYOUT, limit=100)
        return any(x.subject == poison_subject and x.stream_seq == poison.seq for x in letters)

    await eventually(kept, within=10, what="the node's dead letter kept despite the squat")


async def test_a_node_narrows_an_events_stream_made_before_partitions_were_named(
    conn: Connection, client: Client
) -> None:
    """An events stream as older versions made it takes any partition token; a node replaces that subject with
    one per partition, keeping the operator's settings and the events already stored."""
    await ensure_layout(conn, LAYOUT)
    await older_events_stream(conn, any_partition=True)
    config = (await conn.js.stream_info(LAYOUT.events_stream)).config
    await conn.js.update_stream(replace(config, description="tuned by the operator"))
    await client.register_json(json.dumps({"name": "one", "tasks": [{"name": "inc", "taskReferenceName": "i"}]}))
    pending = await client.start("one")  # stored before the upgrade, taken after it
    stop, node = anyio.Event(), Node(conn, LAYOUT)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(run_workers, conn, [WorkerSpec("inc", lambda: {"ok": True})], stop=stop))
        await tg.start(node.run)
        assert (await client.wait(pending, within=20)).status is WorkflowStatus.COMPLETED
        stop.set()
        node.request_stop()
    config = (await conn.js.stream_info(LAYOUT.events_stream)).config
    assert sorted(config.subjects or []) == sorted([*LAYOUT.events_subjects, f"{LAYOUT.prefix}.esched.>"])
    assert config.allow_msg_schedules  # cannot be turned off: its timers stay in it until it is migrated
    assert not config.sources
    assert config.description == "tuned by the operator"
    with pytest.raises(NoStreamListening):
        await conn.publish_durable(f"{LAYOUT.prefix}.wf.{LAYOUT.partitions}.start", b"{}")


async def test_the_isolated_deployment_runs_on_a_jetstream_cluster(tmp_path: Path) -> None:
    """Imports of the JetStream API across accounts on the shipped 3-server cluster, R3 streams: every role does
    its part of a workflow from its own account."""
    auth = AuthDirectory(tmp_path / "auth", LAYOUT)
    _identities(auth)
    configs = []
    for config in sorted((REPO / "deploy" / "nats").glob("cluster-*.conf")):
        copy = tmp_path / config.name
        copy.write_text(f"{config.read_text()}\n{auth.accounts_file.read_text()}")  # as if included
        configs.append(copy)
    async with local_cluster(configs, tmp_path / "cluster") as members:
        d = Deployment(members[0], auth, None)
        conn = await connect(",".join(m.url for m in members), credentials=d.credentials("node"))
        try:
            await conn.wait_for_jetstream(within=30)
            await ensure_layout(conn, LAYOUT, replicas=3)
            assert (await conn.js.stream_info(LAYOUT.events_stream)).config.num_replicas == 3
        finally:
            await conn.aclose()
        await _run_order(d)


async def test_a_worker_cannot_roll_up_the_rate_limit_counters_of_other_task_types(tmp_path: Path) -> None:
    """inventory-app may write the counters of get-inventory; a roll-up header on one of them used to purge the
    whole bucket, every other type's counters with it. The bucket now refuses roll-ups."""
    others = "rate.ship.123"
    for legacy in (True, False):
        async with deployment(tmp_path / f"legacy-{legacy}", legacy=legacy) as d, node_connection(d) as conn:
            kv = await conn.js.key_value(LAYOUT.limits_bucket)
            await kv.create(others, b"7")
            async with raw(d, "inventory-app") as nc:
                own = f"$KV.{LAYOUT.limits_bucket}.rate.get-inventory.123"
                if legacy:
                    await nc.jetstream().publish(own, b"0", headers={"Nats-Rollup": "all"})
                else:
                    with pytest.raises(nats.js.errors.APIError, match="rollup"):
                        await nc.jetstream().publish(own, b"0", headers={"Nats-Rollup": "all"})
                    await nc.jetstream().publish(own, b"1")  # its own counter, written as the worker SDK does
            kept = await _value(conn, LAYOUT.limits_bucket, others)
            assert kept == (None if legacy else b"7")


async def test_partita_migrate_events_carries_events_and_timers_to_a_stream_without_schedules(
    conn: Connection, client: Client
) -> None:
    """An events stream from before the timers stream, with a WAIT's timer armed in it, a start pending and a
    message on a partition outside the layout: `migrate_events` (nodes stopped) makes it again without
    schedules, both workflows finish after it, and the stray message is dead-lettered."""
    await ensure_layout(conn, LAYOUT)
    await older_events_stream(conn, any_partition=True)
    stray = f"{LAYOUT.prefix}.wf.{LAYOUT.partitions + 6}.start"
    await conn.publish_durable(stray, b"inert")
    await client.register_json(json.dumps(SHIP_WAIT))
    await client.register_json(json.dumps({"name": "one", "tasks": [{"name": "ship", "taskReferenceName": "s"}]}))
    node = Node(conn, LAYOUT)
    async with anyio.create_task_group() as tg:
        await tg.start(node.run)
        waiting = await client.start("ship_after_wait")
        armed = partial(_task_status, client, waiting, "pause", TaskStatus.IN_PROGRESS)
        await eventually(armed, within=10, what="the WAIT armed")
        node.request_stop()
    began = time.time() * 1000
    pending = await client.start("one")  # no node: it waits in the old stream
    reported: list[str] = []
    assert await migrate_events(conn, LAYOUT, report=reported.append) >= 2  # the start and the WAIT's schedule
    config = (await conn.js.stream_info(LAYOUT.events_stream)).config
    assert not config.allow_msg_schedules
    assert not config.allow_rollup_hdrs
    assert [source.name for source in config.sources or ()] == [LAYOUT.timers_stream]
    assert reported[-1].endswith("takes no schedules or roll-ups now")
    assert await migrate_events(conn, LAYOUT, report=reported.append) == 0  # done: nothing to do
    letters = await read_dead_letters(conn, LAYOUT)
    assert [(x.subject, x.data) for x in letters if "outside the layout" in x.reason] == [(stray, "inert")]
    stop, node = anyio.Event(), Node(conn, LAYOUT)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(run_workers, conn, [WorkerSpec("ship", lambda n=1: {"shipped": n})], stop=stop))
        await tg.start(node.run)
        finals = [await client.wait(workflow_id, within=20) for workflow_id in (pending, waiting)]
        stop.set()
        node.request_stop()
    assert [w.status for w in finals] == [WorkflowStatus.COMPLETED] * 2
    assert (finals[1].tasks[0].end_time or 0) >= began  # the WAIT ended from its carried-over timer
