"""Limits on a real nats-server: a workflow that breaks one fails with the reason, and the node keeps serving."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import msgspec
import pytest

from partita.actors import WorkerSpec
from partita.schemas import DefinitionError, Limits, PayloadError, StartWorkflow, TaskStatus, WorkflowStatus
from partita.schemas import limits as limits_module
from partita.transport import Client, Connection
from partita.transport.codec import encode_json

from .harness import running


def shout(text: str) -> dict[str, object]:
    return {"text": text.upper()}


def count(n: int | None) -> dict[str, object]:
    return {"n": (n or 0) + 1}


def deepen(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


WORKERS = [
    WorkerSpec("shout", shout, concurrency=2),
    WorkerSpec("count", count, concurrency=2),
    WorkerSpec("deepen", deepen, concurrency=2),
]
NORMAL = {
    "name": "normal",
    "tasks": [{"name": "shout", "taskReferenceName": "s", "inputParameters": {"text": "${workflow.input.text}"}}],
    "outputParameters": {"loud": "${s.output.text}"},
}
RUNAWAY = {
    "name": "runaway",
    "tasks": [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopCondition": "true",
         "loopOver": [{"name": "count", "taskReferenceName": "c", "inputParameters": {"n": "${c.output.n}"}}]},
    ],
}  # fmt: skip
FAN_OUT = {
    "name": "fan_out",
    "tasks": [
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
         "inputParameters": {"forkTaskName": "shout", "forkTaskInputs": "${workflow.input.items}"}},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ],
}  # fmt: skip
DEEP_RESULT = {
    "name": "deep_result",
    "tasks": [{"name": "deepen", "taskReferenceName": "d", "inputParameters": {"levels": "${workflow.input.levels}"},
               "taskDefinition": {"name": "deepen", "retryCount": 2, "retryDelaySeconds": 0}}],
}  # fmt: skip


async def register(client: Client, *definitions: Mapping[str, object]) -> None:
    for definition in definitions:
        await client.register_json(msgspec.json.encode(definition))


async def serves_normally(client: Client) -> None:
    done = await client.wait(await client.start("normal", {"text": "still here"}), within=30)
    assert done.status is WorkflowStatus.COMPLETED, done.reason_for_incompletion
    assert done.output == {"loud": "STILL HERE"}


async def test_a_runaway_loop_and_an_over_wide_fork_fail_their_workflows_while_the_node_keeps_serving(
    conn: Connection, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loop limit lowered so that the runaway ends in seconds (the node runs in this process); the fork
    # meets the default limit of 1000 branches.
    monkeypatch.setattr(limits_module, "_LIMITS", Limits(max_loop_iterations=5))
    await register(client, NORMAL, RUNAWAY, FAN_OUT)
    async with running(conn, WORKERS):
        runaway_id = await client.start("runaway")
        fan_id = await client.start("fan_out", {"items": [{"text": str(i)} for i in range(1001)]})
        await serves_normally(client)
        runaway = await client.wait(runaway_id, within=30)
        fan = await client.wait(fan_id, within=30)
        await serves_normally(client)

    loop_reason = (
        "DO_WHILE ran 5 iterations and would run another; the limit is 5 iterations (PARTITA_LIMIT_LOOP_ITERATIONS)"
    )
    assert runaway.status is WorkflowStatus.FAILED
    loop = runaway.tasks[0]
    assert (loop.status, loop.reason_for_incompletion) == (TaskStatus.FAILED_WITH_TERMINAL_ERROR, loop_reason)
    assert loop_reason in (runaway.reason_for_incompletion or "")
    assert [(t.reference_task_name, t.output_data) for t in runaway.tasks[1:]] == [
        (f"c__{i}", {"n": i}) for i in range(1, 6)
    ]

    fan_reason = "FORK_JOIN_DYNAMIC would fork 1001 branches; the limit is 1000 (PARTITA_LIMIT_FORK_WIDTH)"
    assert fan.status is WorkflowStatus.FAILED
    assert [(t.reference_task_name, t.status, t.reason_for_incompletion) for t in fan.tasks] == [
        ("fan", TaskStatus.FAILED_WITH_TERMINAL_ERROR, fan_reason)
    ]
    assert fan_reason in (fan.reason_for_incompletion or "")


async def test_payloads_nested_too_deeply_fail_only_their_own_workflow(conn: Connection, client: Client) -> None:
    await register(client, NORMAL, DEEP_RESULT)
    async with running(conn, WORKERS):
        deep_input = {"text": "x", "deep": deepen(99)}
        with pytest.raises(PayloadError, match="workflow input is nested 100 levels deep; the limit is 64"):
            await client.start("normal", deep_input)  # the Python client refuses it up front
        # Any other NATS client may still send it: the node records the workflow FAILED.
        start = StartWorkflow(workflow_id="deep-start", name="normal", input=deep_input)
        await conn.publish_durable(client.layout.start_subject("deep-start"), encode_json(start))
        deep_start = await client.wait("deep-start", within=30)
        deep_result = await client.wait(await client.start("deep_result", {"levels": 100}), within=30)
        fine = await client.wait(await client.start("deep_result", {"levels": 64}), within=30)
        await serves_normally(client)

    assert deep_start.status is WorkflowStatus.FAILED  # recorded, with the reason, not lost
    assert deep_start.reason_for_incompletion == (
        "workflow input is nested 100 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH); "
        "the input was not kept"
    )
    assert (deep_start.input, deep_start.tasks) == ({}, ())

    assert deep_result.status is WorkflowStatus.FAILED
    (attempt,) = deep_result.tasks  # terminal: no retry although the TaskDef allows two
    reason = "task output is nested 100 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)"
    assert (attempt.status, attempt.reason_for_incompletion, attempt.output_data) == (
        TaskStatus.FAILED_WITH_TERMINAL_ERROR,
        reason,
        {},
    )
    assert fine.status is WorkflowStatus.COMPLETED, fine.reason_for_incompletion


async def test_registration_refuses_a_definition_over_a_limit_with_the_reason(client: Client) -> None:
    too_many = {"name": "huge", "tasks": [{"name": "n", "taskReferenceName": f"n{i}", "type": "NOOP"}
                                          for i in range(1001)]}  # fmt: skip
    with pytest.raises(DefinitionError, match=r"the definition has 1001 tasks, nested ones included; the limit is"):
        await register(client, too_many)
    with anyio.fail_after(5):
        assert await client.definitions.workflow_def("huge") is None
