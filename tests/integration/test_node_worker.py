"""A worker in a second language: tests/node/worker.mjs, written from docs/protocol.md alone with the `nats` npm
package, runs a 3-task chain to COMPLETED against a real nats-server and a node.

Its TaskDefs have timeouts, so every task message names a ``startedSubject`` and the worker must report its
starts. What it publishes is checked against the exported JSON Schema on the way (a core subscription sees
JetStream publishes too).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import jsonschema
import msgspec
import nats
import pytest

from partita.actors.schema_commands import protocol_schema
from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import Client, Connection, EmbeddedServer

from .harness import REPO, running

NODE_DIR = REPO / "tests" / "node"
TYPES = ("js_reserve", "js_charge", "js_ship")
WORKER_ID = "node-worker-1"


def _locked_nats_version() -> str:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/nats"]["version"])


def _installed_nats_version() -> str | None:
    try:
        return str(json.loads((NODE_DIR / "node_modules" / "nats" / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def install_node_packages() -> None:
    """tests/node/node_modules as package-lock.json pins it: `npm ci` when it is missing or stale. Without npm,
    or when `npm ci` fails, the test fails saying so (a second-language worker is what it proves), not skips."""
    if _installed_nats_version() == _locked_nats_version():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("node and npm are needed for the JavaScript worker (tests/node): neither is optional here")
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("`npm ci` in tests/node took more than 300 s")
    if done.returncode != 0:
        pytest.fail(f"`npm ci` in tests/node failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    assert _installed_nats_version() == _locked_nats_version()


class NodeWorker:
    """``node tests/node/worker.mjs`` as a child process, stopped by PID."""

    def __init__(self, url: str, log_path: Path) -> None:
        node = shutil.which("node")
        assert node is not None
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 -- closed in stop()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "NATS_URL": url,
            "PARTITA_PREFIX": "partita",
            "PARTITA_TASK_TYPES": ",".join(TYPES),
            "PARTITA_WORKER_ID": WORKER_ID,
        }
        self.popen = subprocess.Popen(
            [node, str(NODE_DIR / "worker.mjs")],
            cwd=NODE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``grace``; returns the exit code."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()
        return self.popen.returncode


class Reports:
    """Every result and start report published under the chain's types, with its ``Nats-Msg-Id``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, object], str]] = []

    def of(self, what: str) -> list[tuple[dict[str, object], str]]:
        return [(body, msg_id) for subject, body, msg_id in self.seen if f".{what}." in subject]


@pytest.fixture
async def reports(nats_server: EmbeddedServer) -> AsyncIterator[Reports]:
    found = Reports()

    async def keep(msg: nats.aio.msg.Msg) -> None:
        found.seen.append((msg.subject, json.loads(msg.data), (msg.headers or {}).get("Nats-Msg-Id", "")))

    nc = await nats.connect(nats_server.url, name="test-reports")
    try:
        await nc.subscribe("partita.wf.*.result.>", cb=keep)
        await nc.subscribe("partita.wf.*.started.>", cb=keep)
        await nc.subscribe("partita.workers.>", cb=keep)
        await nc.flush()
        yield found
    finally:
        await nc.close()


def _problems(name: str, instance: object) -> list[str]:
    schema = protocol_schema()
    validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})
    return [error.message for error in validator.iter_errors(instance)]


async def _register_chain(client: Client) -> None:
    for name in TYPES:
        task_def = {"name": name, "retryCount": 0, "timeoutSeconds": 60, "responseTimeoutSeconds": 20}
        await client.register_json(msgspec.json.encode(task_def))
    tasks = []
    previous = "${workflow.input.value}"
    steps = "${workflow.input.steps}"
    for name in TYPES:
        ref = name.removeprefix("js_")
        tasks.append({"name": name, "taskReferenceName": ref, "inputParameters": {"value": previous, "steps": steps}})
        previous, steps = f"${{{ref}.output.value}}", f"${{{ref}.output.steps}}"
    workflow = {"name": "js_chain", "version": 1, "tasks": tasks, "outputParameters": {"value": previous}}
    await client.register_json(msgspec.json.encode(workflow))


async def test_a_javascript_worker_runs_a_three_task_chain(
    conn: Connection, client: Client, nats_server: EmbeddedServer, reports: Reports, tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(install_node_packages)
    assert nats_server.url.startswith("nats://127.0.0.1:"), nats_server.url  # loopback only
    await _register_chain(client)
    node_worker = NodeWorker(nats_server.url, tmp_path / "node-worker.log")
    try:
        await _run_chain(conn, client, node_worker, reports)
    finally:
        node_worker.stop()


async def _run_chain(conn: Connection, client: Client, node_worker: NodeWorker, reports: Reports) -> None:
    started = time.monotonic()
    async with running(conn):
        workflow_id = await client.start("js_chain", {"value": 1, "steps": []})
        try:
            workflow = await client.wait(workflow_id, within=60)
        except Exception as exc:
            raise AssertionError(f"the chain did not finish; the worker said:\n{node_worker.output()}") from exc
        history = await client.history(workflow_id)
    elapsed = time.monotonic() - started

    assert workflow.status is WorkflowStatus.COMPLETED, (workflow.reason_for_incompletion, node_worker.output())
    assert workflow.output == {"value": 4}
    assert [task.task_type for task in workflow.tasks] == list(TYPES)
    for task in workflow.tasks:
        assert task.status is TaskStatus.COMPLETED
        assert task.worker_id == WORKER_ID
        assert task.start_time > 0
        assert task.output_data["runtime"].startswith("node v")  # type: ignore[union-attr]
    assert workflow.tasks[-1].output_data["steps"] == list(TYPES)
    # It reported each start (the TaskDefs' timeouts count from there), before its result.
    causes = [entry.cause for entry in history]
    assert causes.count(f"task started by {WORKER_ID}") == 3, causes
    assert causes.count(f"result COMPLETED from {WORKER_ID}") == 3, causes
    assert elapsed < 60

    # What it published is what docs/protocol.md and the exported schema say, message ids included.
    results, starts = reports.of("result"), reports.of("started")
    assert len(results) == 3, reports.seen
    assert len(starts) == 3, reports.seen
    for body, msg_id in results:
        assert _problems("TaskResult", body) == [], body
        assert re.fullmatch(rf"result:{body['taskId']}:0:COMPLETED:[0-9a-f]{{16}}", msg_id), msg_id
    for body, msg_id in starts:
        assert _problems("TaskStarted", body) == [], body
        assert re.fullmatch(rf"started:{body['taskId']}:0:[0-9a-f]{{16}}", msg_id), msg_id
    announcements = [body for subject, body, _ in reports.seen if subject.startswith("partita.workers.")]
    for body in announcements:  # the node's own HTTP and EVENT workers announce too
        assert _problems("WorkerAnnouncement", body) == [], body
    ours = {(body["taskType"], body["domain"]) for body in announcements if body["workerId"] == WORKER_ID}
    assert ours == {(task_type, None) for task_type in TYPES}

    # It stops on SIGTERM, by PID, cleanly (exit 3 would be a protocol disagreement it found).
    code = await anyio.to_thread.run_sync(node_worker.stop)
    assert code == 0, node_worker.output()
    assert '"event":"worker_stopped"' in node_worker.output()
