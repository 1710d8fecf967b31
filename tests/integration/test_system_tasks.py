"""HTTP and EVENT tasks, executed by nodes (not workers, not the decider), against real local peers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import msgspec
import pytest
from nats.js.api import StreamConfig

from partita.schemas import DefinitionError, TaskStatus, WorkflowStatus
from partita.transport import Client, Connection

from .harness import running


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/broken":
            self._reply(500, b"database on fire", "text/plain")
        else:
            self._reply(200, json.dumps({"path": self.path, "ua": self.headers.get("X-Caller")}).encode())

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


@pytest.fixture
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


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
    async with running(conn):
        ok = await client.wait(await client.start("calls"), within=30)
        failed = await client.wait(await client.start("broken"), within=30)
        unreachable = await client.wait(await client.start("refused"), within=30)
    assert ok.status is WorkflowStatus.COMPLETED, ok.reason_for_incompletion
    assert ok.output == {"echo": {"id": "/items/7"}, "status": 201}
    assert ok.tasks[0].output_data["response"]["body"] == {"path": "/items/7", "ua": "partita"}  # type: ignore[index]
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
    async with running(conn):
        workflow_id = await client.start("hook")
        async for state in client.watch(workflow_id):
            if state.tasks and state.tasks[0].status is TaskStatus.IN_PROGRESS and state.tasks[0].output_data:
                break
        await client.complete_task(workflow_id, "call", {"done": True})
        final = await client.wait(workflow_id, within=30)
    assert final.status is WorkflowStatus.COMPLETED
    assert final.tasks[0].output_data["done"] is True
    assert final.tasks[0].output_data["response"]["statusCode"] == 200  # type: ignore[index]


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
