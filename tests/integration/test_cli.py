"""The ``partita`` command line, driven as a user would: separate node and worker processes."""

from __future__ import annotations

import json
from pathlib import Path

from partita.transport import EmbeddedServer

from .harness import REPO, Process, run_cli

WORKFLOW = REPO / "examples" / "order_fulfillment" / "workflow.json"
ORDER = {"orderId": "o-1", "customer": {"email": "a@example.com"}, "items": [{"sku": "x", "qty": 2, "price": 1.5}]}


async def test_the_full_flow_from_the_command_line(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    url = nats_server.url
    registered = run_cli("--nats", url, "def", "register", str(WORKFLOW))
    assert registered.returncode == 0, registered.stderr
    assert "registered workflow order_fulfillment v1 (4 tasks)" in registered.stdout
    listed = run_cli("--nats", url, "--json", "def", "list")
    assert {d["name"] for d in json.loads(listed.stdout)} == {"order_fulfillment", "process_payment"}

    node = Process("--nats", url, "node", log_path=tmp_path / "node.log")
    workers = Process("--nats", url, "worker", "examples.order_fulfillment.workers", log_path=tmp_path / "w.log")
    try:
        order_file = tmp_path / "order.json"
        order_file.write_text(json.dumps(ORDER))
        started = run_cli(
            "--nats", url, "--json", "workflow", "start", "order_fulfillment",
            "--input", f"@{order_file}", "--correlation-id", "o-1", "--wait", "--timeout", "60",
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        final = json.loads(started.stdout)
        assert final["status"] == "COMPLETED"
        assert final["output"]["total"] == 3.0
        assert final["output"]["paymentAttempts"] == 1  # the demo gateway fails the first attempt
        assert final["correlationId"] == "o-1"

        shown = run_cli("--nats", url, "workflow", "get", final["workflowId"])
        assert shown.returncode == 0
        assert "COMPLETED" in shown.stdout
        assert "payment" in shown.stdout

        history = run_cli("--nats", url, "workflow", "history", final["workflowId"])
        assert history.returncode == 0, history.stderr
        assert "start order_fulfillment" in history.stdout
        assert "result FAILED" in history.stdout  # the gateway's first attempt, then its retry
        assert "RUNNING -> COMPLETED" in history.stdout
        missing = run_cli("--nats", url, "workflow", "history", "no-such-workflow")
        assert missing.returncode != 0
        assert "no history" in missing.stderr
    finally:
        assert workers.stop() == 0  # SIGTERM: graceful shutdown, clean exit
        assert node.stop() == 0
    assert '"event": "worker_stopped"' in (tmp_path / "w.log").read_text()
    assert '"event": "node_stopped"' in (tmp_path / "node.log").read_text()


async def test_command_line_errors_are_clear_and_exit_non_zero(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "t", "timeoutSeconds": 5, "responseTimeoutSeconds": 10}')
    result = run_cli("--nats", nats_server.url, "def", "register", str(bad))
    assert result.returncode == 2
    assert "responseTimeoutSeconds: 10 must be less than timeoutSeconds: 5" in result.stderr

    result = run_cli("--nats", nats_server.url, "workflow", "start", "x", "--input", "[1]")
    assert result.returncode == 2
    assert "--input must be a JSON object" in result.stderr

    result = run_cli("--nats", nats_server.url, "workflow", "get", "no-such-id")
    assert result.returncode == 1
    assert "not found" in result.stderr

    result = run_cli("--nats", "nats://127.0.0.1:1", "def", "list")
    assert result.returncode == 3
    assert "cannot connect to NATS at nats://127.0.0.1:1" in result.stderr


async def test_a_workflow_that_fails_makes_start_wait_exit_non_zero(nats_server: EmbeddedServer) -> None:
    url = nats_server.url
    definition = '{"name": "doomed", "tasks": [{"name": "h", "taskReferenceName": "h", "type": "LLM_TEXT_COMPLETE"}]}'
    assert run_cli("--nats", url, "def", "register", "-", input_text=definition).returncode == 0
    node = Process("--nats", url, "node")
    try:
        result = run_cli("--nats", url, "workflow", "start", "doomed", "--wait", "--timeout", "30")
    finally:
        node.stop()
    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert "task type LLM_TEXT_COMPLETE is not supported yet" in result.stdout


async def test_partita_dev_serves_nats_and_a_node_until_sigterm(tmp_path: Path) -> None:
    from partita.transport import free_port

    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    dev = Process("dev", "--port", str(port), "--data", str(tmp_path / "data"), log_path=tmp_path / "dev.log")
    workers: Process | None = None
    try:
        registered = None
        for _ in range(200):  # the embedded server takes a moment; poll with a bound, not a fixed sleep
            registered = run_cli("--nats", url, "def", "register", str(WORKFLOW))
            if registered.returncode == 0:
                break
        assert registered is not None
        assert registered.returncode == 0, registered.stderr
        workers = Process("--nats", url, "worker", "examples.order_fulfillment.workers", log_path=tmp_path / "w.log")
        started = run_cli(
            "--nats", url, "workflow", "start", "order_fulfillment", "--input", json.dumps(ORDER), "--wait",
            "--timeout", "60",
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        assert "COMPLETED" in started.stdout
    finally:
        if workers is not None:
            workers.stop()
        assert dev.stop() == 0
    assert (tmp_path / "data" / "jetstream").is_dir()
    assert '"event": "nats_server_stopped"' in (tmp_path / "dev.log").read_text()


async def test_a_human_task_is_completed_from_the_command_line(nats_server: EmbeddedServer) -> None:
    url = nats_server.url
    definition = '{"name": "sign_off", "tasks": [{"name": "h", "taskReferenceName": "sign", "type": "HUMAN"}]}'
    assert run_cli("--nats", url, "def", "register", "-", input_text=definition).returncode == 0
    node = Process("--nats", url, "node")
    try:
        workflow_id = run_cli("--nats", url, "workflow", "start", "sign_off").stdout.strip()
        done = run_cli(
            "--nats", url, "--json", "task", "complete", workflow_id, "sign", "--output", '{"by": "bob"}', "--wait",
            "--timeout", "30",
        )  # fmt: skip
        refused = run_cli("--nats", url, "task", "fail", workflow_id, "sign", "--reason", "too late")
        ended = run_cli("--nats", url, "workflow", "terminate", workflow_id)
        unknown = run_cli("--nats", url, "workflow", "pause", "no-such-workflow")
        unregistered = run_cli("--nats", url, "workflow", "start", "never_registered")
        second_id = run_cli("--nats", url, "workflow", "start", "sign_off").stdout.strip()
        paused = run_cli("--nats", url, "workflow", "pause", second_id)
        terminated = run_cli("--nats", url, "workflow", "terminate", second_id, "--reason", "enough")
        listed = run_cli("--nats", url, "--json", "workflow", "list")
    finally:
        node.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    final = json.loads(done.stdout)
    assert final["status"] == "COMPLETED"
    assert final["tasks"][0]["outputData"] == {"by": "bob"}
    # Every operation answers (as the node that owns the workflow decided it), in Conductor's words.
    assert (refused.returncode, refused.stderr) == (
        1,
        f"error: Found no running task sign of workflow {workflow_id} to update\n",
    )
    assert (ended.returncode, ended.stderr) == (1, "error: Cannot terminate a COMPLETED workflow.\n")
    assert (unknown.returncode, unknown.stderr) == (1, "error: workflow 'no-such-workflow' not found\n")
    assert unregistered.returncode == 2
    assert unregistered.stderr == "error: No such workflow defined. name=never_registered, version=null\n"
    assert (paused.returncode, paused.stdout) == (0, f"paused workflow {second_id} (now PAUSED)\n")
    assert (terminated.returncode, terminated.stdout) == (0, f"terminated workflow {second_id} (now TERMINATED)\n")
    assert sorted(w["workflowId"] for w in json.loads(listed.stdout)) == sorted([workflow_id, second_id])


async def test_dead_letters_are_listed_from_the_command_line(nats_server: EmbeddedServer) -> None:
    url = nats_server.url
    node = Process("--nats", url, "node")
    try:
        assert run_cli("--nats", url, "def", "list").returncode == 0  # provisions the streams
        from partita.transport import connect

        conn = await connect(url)
        try:
            await conn.publish_durable("partita.wf.1.start", b"not json at all")
        finally:
            await conn.aclose()
        listed = None
        for _ in range(100):  # the node needs a moment; poll the CLI with a bound
            listed = run_cli("--nats", url, "--json", "dlq", "list")
            if listed.returncode == 0 and json.loads(listed.stdout):
                break
    finally:
        node.stop()
    assert listed is not None
    (letter,) = json.loads(listed.stdout)
    assert letter["subject"] == "partita.wf.1.start"
    assert letter["data"] == "not json at all"
    assert "malformed StartWorkflow" in letter["reason"]
