"""HTTP and EVENT tasks, executed by nodes (not workers, not the decider), against real local peers."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats.js.api import StreamConfig

from partita.schemas import DefinitionError, TaskStatus, Workflow, WorkflowStatus
from partita.transport import Client, Connection, EmbeddedServer

from .harness import Process, run_cli, running

# The test web server listens on loopback, which nodes refuse by default: these nodes allow it.
LOOPBACK = ["127.0.0.0/8"]


class _Server(ThreadingHTTPServer):
    hits: list[str]  # the paths requested, in order


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.path == "/broken":
            self._reply(500, b"database on fire", "text/plain")
        elif self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", parse_qs(urlsplit(self.path).query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            reply = {"path": self.path, "ua": self.headers.get("X-Caller"), "host": self.headers.get("Host")}
            self._reply(200, json.dumps(reply).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply(201, json.dumps({"echo": json.loads(body)}).encode())

    def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    """A web server on 127.0.0.1 (a free port) in a thread, stopped and joined at the end."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hits = []
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def web_server() -> Iterator[_Server]:
    with serving() as server:
        yield server


@pytest.fixture
def web(web_server: _Server) -> str:
    return f"http://127.0.0.1:{web_server.server_address[1]}"


@pytest.fixture
def tls_web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate names ``localhost`` only (no IP address), trusted by the
    HTTP tasks of this process (SSL_CERT_FILE): a request reaches it only if TLS checks the host name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "localhost.pem", tmp_path / "localhost.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with serving(context) as server:
        yield f"https://localhost:{server.server_address[1]}"


GOT_PATH = "${get.output.response.body.path}"


def http_task(ref: str, request: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "name": ref,
        "taskReferenceName": ref,
        "type": "HTTP",
        "inputParameters": {"http_request": request},
        **extra,
    }


async def test_http_tasks_call_out_and_report_the_response(conn: Connection, client: Client, web: str) -> None:
    definition = {
        "name": "calls",
        "tasks": [
            http_task("get", {"uri": f"{web}/items/7", "method": "GET", "headers": {"X-Caller": "partita"}}),
            http_task("post", {"uri": f"{web}/items", "method": "POST", "body": {"id": GOT_PATH}}),
        ],
        "outputParameters": {"echo": "${post.output.response.body.echo}",
                             "status": "${post.output.response.statusCode}"},
    }  # fmt: skip
    broken = {"name": "broken", "tasks": [http_task("bad", {"uri": f"{web}/broken"})]}
    refused = {
        "name": "refused",
        "tasks": [http_task("nobody", {"uri": "http://127.0.0.1:1/", "connectionTimeOut": 500})],
    }
    for definition_ in (definition, broken, refused):
        await client.register_json(msgspec.json.encode(definition_))
    async with running(conn, http_allow=LOOPBACK):
        ok = await client.wait(await client.start("calls"), within=30)
        failed = await client.wait(await client.start("broken"), within=30)
        unreachable = await client.wait(await client.start("refused"), within=30)
    assert ok.status is WorkflowStatus.COMPLETED, ok.reason_for_incompletion
    assert ok.output == {"echo": {"id": "/items/7"}, "status": 201}
    body = ok.tasks[0].output_data["response"]["body"]  # type: ignore[index]
    assert body == {"path": "/items/7", "ua": "partita", "host": web.removeprefix("http://")}
    assert ok.tasks[0].domain is None
    assert failed.status is WorkflowStatus.FAILED
    assert failed.tasks[0].status is TaskStatus.FAILED
    assert failed.tasks[0].reason_for_incompletion == "database on fire"
    assert failed.tasks[0].output_data["response"]["statusCode"] == 500  # type: ignore[index]
    assert unreachable.status is WorkflowStatus.FAILED
    assert "ConnectError" in (unreachable.tasks[0].reason_for_incompletion or "")


async def test_an_async_complete_http_task_waits_to_be_completed_from_outside(
    conn: Connection, client: Client, web: str
) -> None:
    definition = {"name": "hook", "tasks": [http_task("call", {"uri": f"{web}/start"}, asyncComplete=True)]}
    await client.register_json(msgspec.json.encode(definition))
    async with running(conn, http_allow=LOOPBACK):
        workflow_id = await client.start("hook")
        async for state in client.watch(workflow_id):
            if state.tasks and state.tasks[0].status is TaskStatus.IN_PROGRESS and state.tasks[0].output_data:
                break
        await client.complete_task(workflow_id, "call", {"done": True})
        final = await client.wait(workflow_id, within=30)
    assert final.status is WorkflowStatus.COMPLETED
    assert final.tasks[0].output_data["done"] is True
    assert final.tasks[0].output_data["response"]["statusCode"] == 200  # type: ignore[index]


def refused_call(workflow: Workflow) -> str:
    """The reason of a workflow whose one HTTP task was refused, after checking it failed once and for all."""
    assert workflow.status is WorkflowStatus.FAILED, workflow.reason_for_incompletion
    assert len(workflow.tasks) == 1  # not retried, although its TaskDef allows retries
    (task,) = workflow.tasks
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert task.retry_count == 0
    return task.reason_for_incompletion or ""


async def test_an_http_task_to_a_loopback_server_is_refused_by_default_and_completes_once_loopback_is_allowed(
    conn: Connection, client: Client, web: str, web_server: _Server
) -> None:
    port = web_server.server_address[1]
    await client.register_json(b'{"name": "call", "retryCount": 3, "retryDelaySeconds": 0}')
    for name, uri in (
        ("local", f"{web}/items/1"),
        ("numeric", f"http://2130706433:{port}/items/2"),  # 127.0.0.1 as one number: the resolver's answer counts
        ("metadata", "http://169.254.169.254/latest/meta-data/"),
    ):
        definition = {"name": name, "tasks": [http_task("call", {"uri": uri})]}
        await client.register_json(msgspec.json.encode(definition))
    async with running(conn):
        local = await client.wait(await client.start("local"), within=30)
        numeric = await client.wait(await client.start("numeric"), within=30)
        metadata = await client.wait(await client.start("metadata"), within=30)
    assert refused_call(local) == (
        "HTTP task refused: 127.0.0.1 is a loopback address; "
        "allow it with --http-allow 127.0.0.0/8 (PARTITA_HTTP_ALLOW)"
    )
    assert refused_call(numeric).startswith("HTTP task refused: 127.0.0.1 (2130706433) is a loopback address;")
    assert refused_call(metadata) == (
        "HTTP task refused: 169.254.169.254 is a link-local address (the cloud metadata service); "
        "allow it with --http-allow 169.254.0.0/16 (PARTITA_HTTP_ALLOW)"
    )
    assert web_server.hits == []  # refused before connecting

    async with running(conn, http_allow=LOOPBACK):
        allowed = await client.wait(await client.start("local"), within=30)
    assert allowed.status is WorkflowStatus.COMPLETED, allowed.reason_for_incompletion
    assert allowed.tasks[0].output_data["response"]["body"]["path"] == "/items/1"  # type: ignore[index]
    assert web_server.hits == ["/items/1"]


async def test_an_https_task_connects_to_the_checked_address_and_verifies_the_host_name(
    conn: Connection, client: Client, tls_web: str
) -> None:
    definition = {"name": "secure", "tasks": [http_task("call", {"uri": f"{tls_web}/items/5"})]}
    await client.register_json(msgspec.json.encode(definition))
    async with running(conn, http_allow=["127.0.0.0/8", "::1"]):
        workflow = await client.wait(await client.start("secure"), within=30)
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    body = workflow.tasks[0].output_data["response"]["body"]  # type: ignore[index]
    assert body["path"] == "/items/5"
    assert body["host"] == tls_web.removeprefix("https://")  # the name, not the address connected to


async def test_a_redirect_from_an_allowed_server_to_a_refused_address_is_refused(
    conn: Connection, client: Client, web: str, web_server: _Server
) -> None:
    await client.register_json(b'{"name": "call", "retryCount": 3, "retryDelaySeconds": 0}')
    hops = {
        "to-metadata": f"{web}/redirect?to=http://169.254.169.254/latest/meta-data/",
        "to-ipv6-loopback": f"{web}/redirect?to=http://[::1]:{web_server.server_address[1]}/items/3",
        "to-self": f"{web}/redirect?to={web}/items/4",
    }
    for name, uri in hops.items():
        await client.register_json(msgspec.json.encode({"name": name, "tasks": [http_task("call", {"uri": uri})]}))
    async with running(conn, http_allow=LOOPBACK):
        to_metadata = await client.wait(await client.start("to-metadata"), within=30)
        to_ipv6_loopback = await client.wait(await client.start("to-ipv6-loopback"), within=30)
        to_self = await client.wait(await client.start("to-self"), within=30)
    assert refused_call(to_metadata).startswith("HTTP task refused: 169.254.169.254 is a link-local address")
    assert refused_call(to_ipv6_loopback) == (
        "HTTP task refused: ::1 is a loopback address; allow it with --http-allow ::1/128 (PARTITA_HTTP_ALLOW)"
    )
    assert to_self.status is WorkflowStatus.COMPLETED, to_self.reason_for_incompletion
    assert [hit.split("?")[0] for hit in web_server.hits] == ["/redirect", "/redirect", "/redirect", "/items/4"]


async def test_partita_node_refuses_loopback_with_a_log_line_and_allows_what_http_allow_names(
    nats_server: EmbeddedServer, client: Client, web: str, tmp_path: Path
) -> None:
    url = nats_server.url
    await client.register_json(msgspec.json.encode({"name": "local", "tasks": [http_task("call", {"uri": web})]}))
    node = Process("--nats", url, "node", log_path=tmp_path / "refusing.log")
    try:
        refused = await client.wait(await client.start("local"), within=60)
    finally:
        assert node.stop() == 0
    assert refused_call(refused).startswith("HTTP task refused: 127.0.0.1 is a loopback address")
    lines = [json.loads(line) for line in (tmp_path / "refusing.log").read_text().splitlines() if line.startswith("{")]
    (logged,) = [line for line in lines if line["event"] == "http_request_refused"]
    assert (logged["address"], logged["kind"], logged["network"]) == ("127.0.0.1", "loopback", "127.0.0.0/8")
    assert logged["workflow_id"] == refused.workflow_id

    allowing = Process("--nats", url, "node", "--http-allow", "127.0.0.0/8", log_path=tmp_path / "allowing.log")
    try:
        allowed = await client.wait(await client.start("local"), within=60)
    finally:
        assert allowing.stop() == 0
    assert allowed.status is WorkflowStatus.COMPLETED, allowed.reason_for_incompletion


def test_a_bad_http_allow_entry_stops_the_node_with_one_line_naming_it() -> None:
    flagged = run_cli("node", "--http-allow", "10.0.0.1/8")
    assert flagged.returncode == 2
    assert "argument --http-allow: '10.0.0.1/8' has bits set past its prefix length: did you mean 10.0.0.0/8?" in (
        flagged.stderr
    )
    from_env = run_cli("dev", env={"PARTITA_HTTP_ALLOW": "127.0.0.0/8, not a host"})
    assert from_env.returncode == 2
    assert from_env.stderr.strip() == (
        "error: PARTITA_HTTP_ALLOW: 'not a host' is not a network (10.0.0.0/8), an address (10.1.2.3, ::1) "
        "or a host name"
    )


def test_partita_dev_allows_loopback_by_default_and_says_so_in_its_help() -> None:
    shown = " ".join(run_cli("dev", "--help").stdout.split())
    assert "--http-allow CIDR_OR_HOST" in shown
    assert "default: 127.0.0.0/8, ::1" in shown
    assert "default: none, public addresses only" in " ".join(run_cli("node", "--help").stdout.split())


async def test_event_tasks_publish_to_nats_jetstream_and_conductor_sinks(conn: Connection, client: Client) -> None:
    await conn.js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    definition = {
        "name": "emit",
        "tasks": [
            {"name": "core", "taskReferenceName": "core", "type": "EVENT", "sink": "nats:alerts.${workflow.input.kind}",
             "inputParameters": {"n": 1}},
            {"name": "js", "taskReferenceName": "js", "type": "EVENT", "sink": "jsm:orders.created",
             "inputParameters": {"order": "${workflow.input.order}"}},
            {"name": "cond", "taskReferenceName": "cond", "type": "EVENT", "sink": "conductor"},
        ],
    }  # fmt: skip
    await client.register_json(msgspec.json.encode(definition))
    alerts = await conn.subscribe("alerts.fire")
    try:
        async with running(conn):
            workflow = await client.wait(await client.start("emit", {"kind": "fire", "order": "o-1"}), within=30)
            with anyio.fail_after(10):
                alert = json.loads(await alerts.next(10))
    finally:
        await alerts.aclose()
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    assert alert["n"] == 1
    assert alert["workflowInstanceId"] == workflow.workflow_id
    stored = await conn.js.get_last_msg("ORDERS", "orders.created")
    assert json.loads(stored.data)["order"] == "o-1"
    emitted = await conn.js.get_last_msg("PARTITA_EMITTED", "partita.event.emit.cond")
    assert json.loads(emitted.data)["workflowType"] == "emit"
    assert workflow.tasks[0].output_data["event_produced"] == "nats:alerts.fire"


async def test_sinks_and_types_that_cannot_work_here_are_refused_at_registration(client: Client) -> None:
    sqs = {"name": "sqs", "tasks": [{"name": "e", "taskReferenceName": "e", "type": "EVENT", "sink": "sqs:q"}]}
    with pytest.raises(DefinitionError, match="provider 'sqs' is not available here"):
        await client.register_json(msgspec.json.encode(sqs))
    kafka = {"name": "k", "tasks": [{"name": "k", "taskReferenceName": "k", "type": "KAFKA_PUBLISH"}]}
    with pytest.raises(DefinitionError, match="KAFKA_PUBLISH needs Kafka"):
        await client.register_json(msgspec.json.encode(kafka))
