"""Script bombs on a real node (issue 7): an INLINE or JSON_JQ_TRANSFORM task that blows a sandbox limit fails
with the limit as its reason, and the node goes on running workflows."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from partita.actors import WorkerSpec
from partita.actors.decider import scripts
from partita.schemas import TaskStatus, Workflow, WorkflowStatus
from partita.transport import Client, Connection

from .harness import running

MiB = 1024 * 1024
# Small limits keep the test quick: each bomb trips in well under a second.
LIMITS = scripts.ScriptLimits(time_seconds=0.5, memory_bytes=8 * MiB, jq_memory_bytes=16 * MiB)


def shout(text: str) -> dict[str, object]:
    return {"text": text.upper()}


def inline(expression: str) -> dict[str, object]:
    inputs = {"evaluatorType": "javascript", "expression": expression, "n": "${workflow.input.n}"}
    return {"name": "script", "taskReferenceName": "script", "type": "INLINE", "inputParameters": inputs}


def jq(program: str) -> dict[str, object]:
    inputs = {"queryExpression": program, "n": "${workflow.input.n}"}
    return {"name": "jq", "taskReferenceName": "jq", "type": "JSON_JQ_TRANSFORM", "inputParameters": inputs}


BOMBS = {
    "js_spin": (inline("while (true) {}"), "script exceeded the time limit of 0.5 s"),
    "js_hog": (
        inline("var a = []; for (;;) a.push(new Array(1000).fill(1));"),
        "script exceeded the memory limit of 8 MiB",
    ),
    "jq_spin": (jq("def f: f; f"), "jq program exceeded the time limit of 0.5 s"),
    "jq_hog": (jq('"x" * 1e8'), "jq program exceeded the memory limit of 16 MiB"),
}


async def test_script_bombs_fail_their_tasks_and_the_node_runs_the_next_workflow(
    conn: Connection, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scripts, "DEFAULT_LIMITS", LIMITS)
    for name, (task, _) in BOMBS.items():
        await client.register_json(msgspec.json.encode({"name": name, "tasks": [task]}))
    after = {"name": "after", "tasks": [
        inline("$.n * 2"),
        jq(".n + 1"),
        {"name": "shout", "taskReferenceName": "shout", "inputParameters": {"text": "ok"}},
    ], "outputParameters": {"js": "${script.output.result}", "jq": "${jq.output.result}",
                            "shout": "${shout.output.text}"}}  # fmt: skip
    await client.register_json(msgspec.json.encode(after))
    finished: dict[str, Workflow] = {}

    async def run(name: str) -> None:
        finished[name] = await client.wait(await client.start(name, {"n": 20}), within=30)

    async with running(conn, [WorkerSpec("shout", shout)]):
        async with anyio.create_task_group() as tg:  # every bomb at once, on the node's script threads
            for name in BOMBS:
                tg.start_soon(run, name)
        await run("after")
    for name, (_, reason) in BOMBS.items():
        workflow = finished[name]
        assert workflow.status is WorkflowStatus.FAILED, name
        assert [t.status for t in workflow.tasks] == [TaskStatus.FAILED], name
        assert reason in (workflow.tasks[0].reason_for_incompletion or ""), name
    assert finished["after"].status is WorkflowStatus.COMPLETED, finished["after"].reason_for_incompletion
    assert finished["after"].output == {"js": 40, "jq": 21, "shout": "OK"}
