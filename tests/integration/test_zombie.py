"""A zombie node: frozen past its lease (SIGSTOP, as a long GC pause or a network partition), then woken.

Its partitions move to the other node while it sleeps, with the events it held; the other node decides them and
performs their effects. When the zombie wakes it still holds those events, some already decided and written by
itself just before it froze. Acting on them now would dispatch their tasks a second time: long after the first
publish, so JetStream's message-id dedupe no longer catches it. It must notice and drop them instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import msgspec

from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import Client, Connection, EmbeddedServer

from .harness import Process, eventually

# The tasks stream forgets message ids after this long here (120 s in production), so that a freeze a few times
# longer than a node's lease outlasts it, as a freeze of minutes would in production. Still longer than a
# takeover (lease 5 s), whose replays of the frozen node's effects dedupe must still catch.
DEDUPE_SECONDS = 12.0
FROZEN_SECONDS = 20.0
WORKFLOWS = 200
STEPS = 4


async def test_a_node_frozen_past_its_lease_does_nothing_twice_when_it_wakes(
    nats_server: EmbeddedServer, conn: Connection, client: Client, tmp_path: Path
) -> None:
    await client.register_json(msgspec.json.encode({"name": "step", "responseTimeoutSeconds": 60,
                                                    "timeoutSeconds": 300, "retryCount": 0}))  # fmt: skip
    steps = [
        {"name": "step", "taskReferenceName": f"s{i}", "inputParameters": {"marker_dir": "${workflow.input.dir}",
                                                                           "n": i}}
        for i in range(STEPS)
    ]  # fmt: skip
    await client.register_json(msgspec.json.encode({"name": "zombie_chain", "tasks": steps}))
    tasks = await conn.js.stream_info(client.layout.tasks_stream)
    tasks.config.duplicate_window = DEDUPE_SECONDS
    await conn.js.update_stream(tasks.config)
    markers = tmp_path / "markers"
    markers.mkdir()
    url = nats_server.url
    workers = Process("--nats", url, "worker", "tests.integration.slow_workers", log_path=tmp_path / "w.log")
    zombie = Process("--nats", url, "node", "--name", "zombie", log_path=tmp_path / "zombie.log")
    other = Process("--nats", url, "node", "--name", "other", log_path=tmp_path / "other.log")
    try:
        await eventually(lambda: _logged(tmp_path / "zombie.log", "node_started")
                         and _logged(tmp_path / "other.log", "node_started"), within=30, what="both nodes")  # fmt: skip
        # All at once, so that the zombie is busy when it freezes: events fetched, decided, written, half done.
        ids = [await client.start("zombie_chain", {"dir": str(markers)}) for _ in range(WORKFLOWS)]
        await eventually(lambda: len(os.listdir(markers)) >= 40, within=60, what="40 steps to run")
        zombie.pause()
        await anyio.sleep(FROZEN_SECONDS)  # the fault itself: how long the node stays frozen
        zombie.resume()
        with anyio.fail_after(120):
            finals = [await client.wait(workflow_id) for workflow_id in ids]
    finally:
        for process in (workers, zombie, other):
            process.stop()
    taken_over = (tmp_path / "zombie.log").read_bytes().count(b'"event_taken_over"')
    assert [w.status for w in finals] == [WorkflowStatus.COMPLETED] * WORKFLOWS
    for workflow in finals:
        assert [t.reference_task_name for t in workflow.tasks] == [f"s{i}" for i in range(STEPS)]
        assert [t.status for t in workflow.tasks] == [TaskStatus.COMPLETED] * STEPS
    # Exactly once, at the workers too: not one task dispatched a second time.
    executed = sorted(os.listdir(markers))
    assert len(executed) == WORKFLOWS * STEPS, f"{len(executed) - WORKFLOWS * STEPS} extra executions"
    # The interleaving happened: the zombie woke holding events the other node had taken over, and dropped them.
    assert taken_over >= 1


def _logged(path: Path, event: str) -> bool:
    return path.exists() and f'"event": "{event}"'.encode() in path.read_bytes()
