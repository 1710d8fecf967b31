"""Least-privilege identities against a real nats-server running the configuration `partita auth` generates:
what each role may do works, and what it may not is refused by the server (or, for a forged result on a
subject the worker may use, by the node)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import nats
import nats.errors
import pytest

from partita.actors import Node, run_workers
from partita.actors.effects import seal
from partita.actors.worker import WorkerSpec
from partita.schemas import StartWorkflow, TaskResult, TaskResultStatus, TaskStatus, WorkflowStatus
from partita.transport import (
    Client,
    Connection,
    ConnectionFailed,
    Credentials,
    EmbeddedServer,
    Layout,
    PermissionDenied,
    ProvisioningError,
    connect,
    ensure_layout,
    free_port,
)
from partita.transport.auth import AuthDirectory, Identity, Role, inbox_prefix_for, new_nkey, permissions
from partita.transport.codec import encode_json
from partita.transport.provision import message_id_key
from partita.transport.tls import TlsFiles, local_ca

from .harness import REPO, Process, eventually, run_cli

LAYOUT = Layout()
INVENTORY = {
    "name": "inventory_check",
    "version": 1,
    "schemaVersion": 2,
    "tasks": [
        {"name": "get-inventory", "taskReferenceName": "inv", "type": "SIMPLE",
         "inputParameters": {"sku": "${workflow.input.sku}"}},
        {"name": "ship", "taskReferenceName": "ship", "type": "SIMPLE", "inputParameters": {"n": "${inv.output.n}"}},
    ],
    "outputParameters": {"n": "${inv.output.n}", "shipped": "${ship.output.shipped}"},
}  # fmt: skip


@dataclass
class Deployment:
    server: EmbeddedServer
    auth: AuthDirectory
    tls: TlsFiles | None

    def credentials(self, name: str) -> Credentials:
        files = self.tls
        return Credentials(
            nkey=str(self.auth.seed_file(name)),
            tls_ca=str(files.ca) if files else None,
            tls_cert=str(files.client_cert) if files else None,
            tls_key=str(files.client_key) if files else None,
        )

    def public_key(self, name: str) -> str:
        identity = self.auth.get(name)
        assert identity is not None
        return identity.public_key


def _identities(auth: AuthDirectory) -> None:
    for name, role in (("node", Role.NODE), ("admin", Role.ADMIN), ("client", Role.CLIENT)):
        auth.add(partial(_plain, name, role), name)
    auth.add(
        lambda key: Identity(
            name="inventory-app", role=Role.WORKER, public_key=key, tasks=("get-inventory",), domains=("john",)
        ),
        "inventory-app",
    )
    auth.add(
        lambda key: Identity(
            name="shipping-app",
            role=Role.WORKER,
            public_key=key,
            tasks=("ship",),
            domains=(None,),
            start_workflows=True,
        ),
        "shipping-app",
    )


def _plain(name: str, role: Role, key: str) -> Identity:
    return Identity(name=name, role=role, public_key=key)


async def _deployment(tmp_path: Path, *, tls: bool) -> AsyncIterator[Deployment]:
    auth = AuthDirectory(tmp_path / "auth", LAYOUT)
    _identities(auth)
    files = local_ca(tmp_path / "tls") if tls else None
    extra = auth.accounts_file.read_text() + (files.server_block(verify_clients=True) if files else "")
    async with EmbeddedServer(tmp_path / "nats", extra_config=extra) as server:
        yield Deployment(server, auth, files)


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async for d in _deployment(tmp_path, tls=False):
        yield d


async def _provision(d: Deployment) -> None:
    """What a node does when it first starts: create the streams and buckets."""
    conn = await connect(d.server.url, credentials=d.credentials("node"))
    try:
        await ensure_layout(conn, LAYOUT)
    finally:
        await conn.aclose()


def _inventory(sku: str) -> dict[str, object]:
    return {"n": len(sku)}


def _ship(n: int) -> dict[str, object]:
    return {"shipped": n}


WORKERS = {
    "inventory-app": WorkerSpec("get-inventory", _inventory, "john"),
    "shipping-app": WorkerSpec("ship", _ship, None),
}


async def _run_order(d: Deployment, *, workers: tuple[str, ...] = ("inventory-app", "shipping-app")) -> None:
    """The whole path under least privilege: admin registers, node runs, workers bind and work, client waits."""
    node_conn = await connect(d.server.url, name="node", credentials=d.credentials("node"))
    worker_conns = [await connect(d.server.url, name=w, credentials=d.credentials(w)) for w in workers]
    stop = anyio.Event()
    try:
        node = Node(node_conn, LAYOUT)
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            async with await Client.connect(d.server.url, credentials=d.credentials("admin")) as admin:
                await admin.register_json(json.dumps(INVENTORY))
            for name, conn in zip(workers, worker_conns, strict=True):
                await tg.start(partial(run_workers, conn, [WORKERS[name]], LAYOUT, stop=stop))
            async with await Client.connect(d.server.url, credentials=d.credentials("client")) as client:
                workflow_id = await client.start(
                    "inventory_check", {"sku": "abcd"}, task_to_domain={"get-inventory": "john"}
                )
                workflow = await client.wait(workflow_id, within=30)
                assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
                assert workflow.output == {"n": 4, "shipped": 4}
                assert [h.status for h in await client.history(workflow_id)][-1] is WorkflowStatus.COMPLETED
            stop.set()
            node.request_stop()
    finally:
        for conn in (*worker_conns, node_conn):
            await conn.aclose()


async def test_every_role_does_its_part_of_a_workflow_under_least_privilege(deployment: Deployment) -> None:
    await _run_order(deployment)


async def test_end_to_end_over_mutual_tls_with_authentication(tmp_path: Path) -> None:
    async for d in _deployment(tmp_path, tls=True):
        await _run_order(d)
        assert d.tls is not None
        # Without a client certificate, without TLS at all, or as an unknown identity: no connection.
        for refused in (
            Credentials(nkey=str(d.auth.seed_file("client")), tls_ca=str(d.tls.ca)),
            Credentials(nkey=str(d.auth.seed_file("client"))),
        ):
            with pytest.raises(ConnectionFailed):
                await connect(d.server.url, credentials=refused, connect_attempts=1, connect_timeout=2)
        stranger = tmp_path / "stranger.nk"
        stranger.write_text(_fresh_seed())
        with pytest.raises(ConnectionFailed, match="refused these credentials"):
            await connect(
                d.server.url,
                credentials=Credentials(
                    nkey=str(stranger),
                    tls_ca=str(d.tls.ca),
                    tls_cert=str(d.tls.client_cert),
                    tls_key=str(d.tls.client_key),
                ),
                connect_attempts=1,
            )


def _fresh_seed() -> str:
    from partita.transport.auth import new_nkey

    return new_nkey()[0]


class RawConnection:
    """A bare nats-py connection as an identity, recording what the server refuses (it says so
    asynchronously, with -ERR 'Permissions Violation ...')."""

    def __init__(self, nc: nats.NATS, refusals: list[str]) -> None:
        self.nc = nc
        self.refusals = refusals

    async def refused(self, action: Callable[[], object]) -> str:
        """Run ``action`` (a publish or subscribe) and return the server's refusal, failing if none comes."""
        before = len(self.refusals)
        result = action()
        if hasattr(result, "__await__"):
            await result  # type: ignore[misc]
        await self.nc.flush()  # a round trip: the server's -ERR, if any, comes before its PONG
        await eventually(lambda: len(self.refusals) > before, within=5, what="the server's refusal")
        return self.refusals[-1]


async def _raw(d: Deployment, name: str) -> RawConnection:
    refusals: list[str] = []

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            refusals.append(str(exc).lower())

    nc = await nats.connect(
        d.server.url,
        nkeys_seed=str(d.auth.seed_file(name)),
        inbox_prefix=inbox_prefix_for(d.public_key(name)),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return RawConnection(nc, refusals)


async def test_a_worker_may_fetch_ack_and_report_only_its_own_task_types_and_domains(deployment: Deployment) -> None:
    d = deployment
    await _provision(d)
    worker = await _raw(d, "inventory-app")
    try:
        tasks, events = LAYOUT.tasks_stream, LAYOUT.events_stream
        own = LAYOUT.task_consumer("get-inventory", "john")
        # What it may do: look up and fetch from its own consumer (it does not exist yet: an API error, not a refusal).
        reply = await worker.nc.request(f"$JS.API.CONSUMER.INFO.{tasks}.{own}", b"", timeout=2)
        assert b"consumer not found" in reply.data
        assert worker.refusals == []
        denied = {
            "the same type without its domain": f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.task@get-inventory@_",
            "another task type": f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.task@ship@_",
            "another type's acks": f"$JS.ACK.{tasks}.task@ship@_.1.1.1.1.0",
            "creating its consumer": f"$JS.API.CONSUMER.DURABLE.CREATE.{tasks}.{own}",
            "creating any consumer": f"$JS.API.CONSUMER.CREATE.{tasks}.sneaky",
            "creating an events consumer": f"$JS.API.CONSUMER.CREATE.{events}.sneaky",
            "deleting a consumer": f"$JS.API.CONSUMER.DELETE.{tasks}.{own}",
            "purging the task stream": f"$JS.API.STREAM.PURGE.{tasks}",
            "a result for another type": "partita.wf.3.result.ship._",
            "a result for its type in another domain": "partita.wf.3.result.get-inventory.alice",
            "a result without a domain (the older subject form)": "partita.wf.3.result.get-inventory",
            "a start report for another type": "partita.wf.3.started.ship._",
            "reading the task stream's subjects": f"$JS.API.STREAM.INFO.{tasks}",
            "reading the workflow ids": "$JS.API.STREAM.INFO.KV_partita_workflows",
            "reading a task message by sequence": f"$JS.API.STREAM.MSG.GET.{tasks}",
            "republishing into its own queue": "partita.task.get-inventory.john.x",
            "scheduling a message": "partita.tsched.x",
            "starting a workflow": "partita.wf.3.start",
            "an operator command": "partita.wf.3.cmd",
            "a timer": "partita.wf.3.timer",
            "writing a workflow record": "$KV.partita_workflows.someone",
            "registering a definition": "$KV.partita_definitions.task.get-inventory",
            "announcing another pair": "partita.workers.get-inventory._",
            "another type's rate limit": "$KV.partita_limits.rate.ship.1",
        }
        for what, subject in denied.items():
            refusal = await worker.refused(partial(worker.nc.publish, subject, b"{}"))
            assert subject.lower() in refusal, what
            assert "publish" in refusal, what
        for subject in (f"{inbox_prefix_for(d.public_key('client'))}.>", "_INBOX.>", ">", "partita.done.>"):
            refusal = await worker.refused(partial(worker.nc.subscribe, subject))
            assert subject.lower() in refusal, subject
            assert "subscription" in refusal, subject
    finally:
        await worker.nc.close()


async def test_a_client_may_not_register_definitions_and_a_worker_may_not_start_workflows_unless_granted(
    deployment: Deployment,
) -> None:
    d = deployment
    url = d.server.url
    # Only a node creates the streams and buckets: anyone else is told so, clearly.
    with pytest.raises(ProvisioningError, match=r"do not exist yet; a node creates them when it first starts"):
        await Client.connect(url, credentials=d.credentials("admin"))
    await _provision(d)
    async with await Client.connect(url, credentials=d.credentials("admin")) as admin:
        await admin.register_json(json.dumps(INVENTORY))
    conn = await connect(url, credentials=d.credentials("client"), request_timeout=1.0)
    try:
        client = await Client.over(conn, LAYOUT)
        with pytest.raises(PermissionDenied, match=r"register get-inventory: the NATS server refused it"):
            await client.register_json(json.dumps({"name": "get-inventory", "retryCount": 9}))
        assert await client.start("inventory_check", {"sku": "a"})  # what a client is for
    finally:
        await conn.aclose()
    stored = await _task_def_retry_count(d, "get-inventory")
    assert stored is None, "the refused registration must not have been stored"
    conn = await connect(url, credentials=d.credentials("shipping-app"), request_timeout=1.0)
    try:  # granted --start-workflows: a client for starting and reading
        assert await (await Client.over(conn, LAYOUT)).start("inventory_check", {"sku": "b"})
    finally:
        await conn.aclose()
    conn = await connect(url, credentials=d.credentials("inventory-app"), request_timeout=1.0)
    try:  # not granted: it cannot act as a client, nor publish a start
        with pytest.raises(PermissionDenied, match=r"open bucket partita_workflows: the NATS server refused it"):
            await Client.over(conn, LAYOUT)
        start = StartWorkflow(workflow_id="sneaky", name="inventory_check")
        with pytest.raises(PermissionDenied, match=r"publish to partita\.wf\.\d+\.start"):
            await conn.publish_durable(LAYOUT.start_subject("sneaky"), encode_json(start))
    finally:
        await conn.aclose()


async def _task_def_retry_count(d: Deployment, name: str) -> int | None:
    async with await Client.connect(d.server.url, credentials=d.credentials("admin")) as admin:
        task_def = await admin.definitions.task_def(name)
        return None if task_def is None else task_def.retry_count


async def test_a_forged_result_on_a_subject_the_worker_may_use_is_rejected_and_counted(deployment: Deployment) -> None:
    """inventory-app may publish results for get-inventory only; it claims to finish the `ship` task by
    publishing on its own subject. The server lets it through; the node rejects it, counts it, and the task
    waits for its real worker."""
    d = deployment
    conns = {name: await connect(d.server.url, credentials=d.credentials(name)) for name in ("node", *WORKERS)}
    stop = anyio.Event()
    try:
        node = Node(conns["node"], LAYOUT)
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            admin = await Client.over(conns["node"], LAYOUT)
            await admin.register_json(json.dumps(INVENTORY))
            workflow_id = await admin.start("inventory_check", {"sku": "xy"}, task_to_domain={"get-inventory": "john"})
            await tg.start(partial(run_workers, conns["inventory-app"], [WORKERS["inventory-app"]], LAYOUT, stop=stop))

            async def claim(workflow: str, task_id: str, output: dict[str, object]) -> None:
                """inventory-app reports COMPLETED on its own subject (get-inventory@john), which it may."""
                result = TaskResult(
                    workflow_instance_id=workflow,
                    task_id=task_id,
                    task_type="get-inventory",
                    status=TaskResultStatus.COMPLETED,
                    output_data=output,
                )
                subject = LAYOUT.result_subject(workflow, "get-inventory", "john")
                await conns["inventory-app"].publish_durable(subject, encode_json(result))

            await claim(workflow_id, await _scheduled(admin, workflow_id, "ship"), {"shipped": 1_000_000})
            # The same type in a domain it is not granted: its subject names its own domain, which is checked.
            alices = await admin.start("inventory_check", {"sku": "z"}, task_to_domain={"get-inventory": "alice"})
            await claim(alices, await _scheduled(admin, alices, "inv"), {"n": 0})
            await eventually(lambda: node.statistics().results_rejected >= 2, within=10, what="the rejections")
            assert (await admin.get(workflow_id)).status is WorkflowStatus.RUNNING
            (still,) = (await admin.get(alices)).tasks
            assert still.status is TaskStatus.SCHEDULED
            await tg.start(partial(run_workers, conns["shipping-app"], [WORKERS["shipping-app"]], LAYOUT, stop=stop))
            workflow = await admin.wait(workflow_id, within=20)
            assert workflow.output == {"n": 2, "shipped": 2}
            assert node.statistics().results_rejected == 2
            stop.set()
            node.request_stop()
    finally:
        for conn in conns.values():
            await conn.aclose()


async def _scheduled(client: Client, workflow_id: str, ref: str) -> str:
    found: list[str] = []

    async def scheduled() -> bool:
        workflow = await client.find(workflow_id)
        found.extend(t.task_id for t in (workflow.tasks if workflow else []) if t.reference_task_name == ref)
        return bool(found)

    await eventually(scheduled, within=15, what=f"task {ref} scheduled")
    return found[0]


ORDER_WORKFLOW = REPO / "examples" / "order_fulfillment" / "workflow.json"
ORDER = {"orderId": "o-7", "customer": {"email": "a@example.com"}, "items": [{"sku": "x", "qty": 2, "price": 1.5}]}


async def test_partita_dev_with_tls_and_auth_runs_a_workflow_from_the_command_line(tmp_path: Path) -> None:
    """The user's path: `partita auth`, `partita dev --tls --auth`, then every command as its own identity."""
    auth, data, tls = tmp_path / "auth", tmp_path / "data", tmp_path / "tls"
    assert run_cli("auth", "--dir", str(auth), "init").returncode == 0
    granted = run_cli(
        "auth", "--dir", str(auth), "add-worker", "orders",
        "--task", "validate_order", "--task", "process_payment", "--task", "update_inventory", "--task", "notify",
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    dev = Process(
        "dev", "--tls", "--auth", str(auth), "--port", str(port), "--data", str(data), log_path=tmp_path / "dev.log"
    )

    def as_identity(name: str) -> dict[str, str]:
        return {
            "PARTITA_NATS_URL": url,
            "PARTITA_NATS_NKEY": str(auth / f"{name}.nk"),
            "PARTITA_NATS_TLS_CA": str(tls / "ca.pem"),
            "PARTITA_NATS_TLS_CERT": str(tls / "client.pem"),
            "PARTITA_NATS_TLS_KEY": str(tls / "client-key.pem"),
        }

    workers: Process | None = None
    try:
        registered = None
        for _ in range(200):  # the server and its certificates take a moment: poll with a bound
            registered = run_cli("def", "register", str(ORDER_WORKFLOW), env=as_identity("admin"))
            if registered.returncode == 0:
                break
        assert registered is not None
        assert registered.returncode == 0, registered.stderr
        refused = run_cli("def", "register", str(ORDER_WORKFLOW), env=as_identity("client"))
        assert refused.returncode != 0
        assert "refused" in refused.stderr
        workers = Process(
            "worker", "examples.order_fulfillment.workers", env=as_identity("orders"), log_path=tmp_path / "w.log"
        )
        started = run_cli(
            "workflow", "start", "order_fulfillment", "--input", json.dumps(ORDER), "--wait", "--timeout", "60",
            env=as_identity("client"),
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        assert "COMPLETED" in started.stdout
        plain = run_cli("workflow", "list", env={**as_identity("client"), "PARTITA_NATS_TLS_CA": ""})
        assert plain.returncode != 0  # no CA: the TLS server cannot be verified
        assert "--tls-ca" in plain.stderr
    finally:
        if workers is not None:
            workers.stop()
        assert dev.stop() == 0


async def test_a_user_and_password_identity_gets_its_own_inbox_prefix(tmp_path: Path) -> None:
    """A hand-written user may subscribe only under `_INBOX_<user>`: JetStream works through it, which it
    could not if the SDK used the shared `_INBOX` prefix."""
    accounts = """
accounts {
  PARTITA: {
    jetstream: enabled
    users: [ { user: ops, password: "s3cret", permissions: { publish: ">", subscribe: "_INBOX_ops.>" } } ]
  }
}
"""
    async with EmbeddedServer(tmp_path / "nats", extra_config=accounts) as server:
        ops_credentials = Credentials(user="ops", password="s3cret")
        conn = await connect(server.url, credentials=ops_credentials)
        try:
            await ensure_layout(conn, LAYOUT)  # this user may: its permissions are the node's
        finally:
            await conn.aclose()
        async with await Client.connect(server.url, credentials=ops_credentials) as ops:
            await ops.register_json(json.dumps(INVENTORY))
            assert [d.name for d in await ops.definitions.all()] == ["inventory_check"]
        with pytest.raises(ConnectionFailed, match="refused these credentials"):
            await connect(server.url, credentials=Credentials(user="ops", password="wrong"), connect_attempts=1)


async def test_nodes_share_one_key_that_seals_their_message_ids(conn: Connection) -> None:
    """Timers, child starts and commands get deterministic message ids (a replay is deduplicated); sealed with
    a key only nodes can read, a worker cannot predict them and pre-empt one with its own publish."""
    await ensure_layout(conn, LAYOUT)
    key = await message_id_key(conn, LAYOUT)
    assert await message_id_key(conn, LAYOUT) == key  # every node (and every replay) uses the same one
    assert len(key) == 64
    sealed = seal(key, "timer:t1.timeout:1700000000000")
    assert sealed == seal(key, "timer:t1.timeout:1700000000000")
    assert sealed.startswith("timer:t1.timeout:1700000000000:")
    assert sealed != seal(b"another deployment", "timer:t1.timeout:1700000000000")
    node_only = permissions(
        Identity(name="w", role=Role.WORKER, public_key=new_nkey()[1], tasks=("t",), domains=(None,)), LAYOUT
    )
    assert not any(LAYOUT.secrets_bucket in subject for subject in node_only.publish)


async def test_a_worker_without_the_payloads_grant_fails_a_large_task_with_the_reason(deployment: Deployment) -> None:
    d = deployment
    node_conn = await connect(d.server.url, credentials=d.credentials("node"))
    worker_conn = await connect(d.server.url, credentials=d.credentials("inventory-app"), request_timeout=1.0)
    stop = anyio.Event()
    try:
        node = Node(node_conn, LAYOUT)
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            admin = await Client.over(node_conn, LAYOUT)
            await admin.register_json(json.dumps(INVENTORY))
            await tg.start(partial(run_workers, worker_conn, [WORKERS["inventory-app"]], LAYOUT, stop=stop))
            big = "x" * 40_000  # over the 32 KiB threshold: the task's input travels through the payload store
            workflow_id = await admin.start("inventory_check", {"sku": big}, task_to_domain={"get-inventory": "john"})
            workflow = await admin.wait(workflow_id, within=30)
            stop.set()
            node.request_stop()
        assert workflow.status is WorkflowStatus.FAILED
        (task,) = workflow.tasks
        assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
        assert "the NATS server refused it" in (task.reason_for_incompletion or "")
        assert "(grant this worker --payloads)" in (task.reason_for_incompletion or "")
    finally:
        await worker_conn.aclose()
        await node_conn.aclose()
