"""Large payloads through the JetStream Object Store (Conductor's external payload storage)."""

from __future__ import annotations

import msgspec
import pytest

from partita.actors import WorkerSpec
from partita.schemas import PayloadError, TaskStatus, WorkflowStatus
from partita.transport import Client, Connection

from .harness import running

BIG = 3_000_000  # three times the server's max_payload: only the object store can carry it

FLOW = {
    "name": "bulky",
    "tasks": [
        {"name": "produce", "taskReferenceName": "a", "inputParameters": {"n": BIG}},
        {"name": "consume", "taskReferenceName": "b", "inputParameters": {"blob": "${a.output.blob}"}},
    ],
    "outputParameters": {"blob": "${a.output.blob}", "size": "${b.output.size}", "seed": "${workflow.input.seed}"},
}


def produce(n: int) -> dict[str, object]:
    return {"blob": "x" * n}


def consume(blob: str) -> dict[str, object]:
    return {"size": len(blob)}


SPECS = [WorkerSpec("produce", produce), WorkerSpec("consume", consume)]


async def test_payloads_over_the_threshold_travel_through_the_object_store(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(FLOW))
    seed = "y" * 200_000
    async with running(conn, SPECS):
        workflow_id = await client.start("bulky", {"seed": seed})
        workflow = await client.wait(workflow_id, within=60)
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    assert workflow.output["size"] == BIG  # the consumer received the whole blob as its input
    assert workflow.output["blob"] == "x" * BIG
    assert workflow.output["seed"] == seed
    assert workflow.input == {"seed": seed}
    # The record itself stays small: each large map is a path into the object store, as in Conductor.
    raw = await client.find(workflow_id, payloads=False)
    assert raw is not None
    produced, consumed = raw.tasks
    assert (raw.input, raw.output, produced.output_data, consumed.input_data) == ({}, {}, {}, {})
    assert all(
        path and path.startswith(f"{workflow_id}/")
        for path in (
            raw.external_input_payload_storage_path,
            raw.external_output_payload_storage_path,
            produced.external_output_payload_storage_path,
            consumed.external_input_payload_storage_path,
        )
    )
    assert produced.input_data == {"n": BIG}  # small maps stay inline
    assert produced.external_input_payload_storage_path is None
    entry = await conn.js.key_value(client.layout.workflows_bucket)
    stored = await entry.get(client.layout.workflow_key(workflow_id))
    assert stored.value is not None
    assert len(stored.value) < 64 * 1024
    # Removing the workflow removes its payloads.
    await client.remove(workflow_id)
    with pytest.raises(PayloadError):
        await client.payloads.load(produced.external_output_payload_storage_path or "")


async def test_an_output_over_the_maximum_size_fails_the_task_with_the_sizes(
    conn: Connection, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTITA_PAYLOAD_MAX_SIZE", "1000000")
    await client.register_json(b'{"name": "produce", "retryCount": 0}')
    await client.register_json(
        b'{"name": "too_big", "tasks": [{"name": "produce", "taskReferenceName": "a",'
        b' "inputParameters": {"n": 2000000}}]}'
    )
    async with running(conn, [WorkerSpec("produce", produce)]):
        workflow = await client.wait(await client.start("too_big"), within=30)
    assert workflow.status is WorkflowStatus.FAILED
    (task,) = workflow.tasks
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "task output is 2000011 bytes; the maximum payload size is 1000000 bytes" in (
        task.reason_for_incompletion or ""
    )


async def test_a_state_that_outgrows_the_record_limit_fails_the_workflow_instead_of_losing_it(
    conn: Connection, client: Client
) -> None:
    # 40 outputs of 30 KB: each under the offload threshold, together over the 1 MiB record limit.
    steps = [
        {"name": "fill", "taskReferenceName": f"f{i}", "type": "INLINE",
         "inputParameters": {"evaluatorType": "javascript", "expression": "'x'.repeat(30000)"}}
        for i in range(40)
    ]  # fmt: skip
    await client.register_json(msgspec.json.encode({"name": "hoard", "tasks": steps}))
    async with running(conn):
        workflow = await client.wait(await client.start("hoard", {"blob": "z" * 100_000}), within=30)
    assert workflow.status is WorkflowStatus.FAILED
    assert "bytes; the limit is 1047552 bytes (server max_payload)" in (workflow.reason_for_incompletion or "")
    assert workflow.input == {"blob": "z" * 100_000}  # the input itself went to the object store and is intact


async def test_a_sub_workflow_passes_large_payloads_both_ways(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(FLOW))
    parent = {
        "name": "bulky_parent",
        "tasks": [
            {"name": "bulky", "taskReferenceName": "child", "type": "SUB_WORKFLOW",
             "inputParameters": {"seed": "${workflow.input.seed}"}, "subWorkflowParam": {"name": "bulky"}},
        ],
        "outputParameters": {"size": "${child.output.size}", "seed": "${child.output.seed}"},
    }  # fmt: skip
    await client.register_json(msgspec.json.encode(parent))
    seed = "s" * 100_000
    async with running(conn, SPECS):
        workflow = await client.wait(await client.start("bulky_parent", {"seed": seed}), within=60)
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    assert workflow.output == {"size": BIG, "seed": seed}
    (task,) = workflow.tasks
    assert task.output_data["blob"] == "x" * BIG  # the child's whole output, mirrored onto the task


async def test_storing_a_payload_again_leaves_the_stored_object_alone(client: Client) -> None:
    # nats-py replaces an object by writing new chunks and deleting the old ones, which can strand a reader:
    # a content-addressed path is written once.
    payload: dict[str, object] = {"blob": "q" * 100_000}
    first = await client.payloads.offload("wf-1", payload, "test payload")
    assert first is not None
    store = await client.conn.js.object_store(client.layout.payloads_bucket)
    before = await store.get_info(first)
    again = await client.payloads.offload("wf-1", dict(payload), "test payload")
    after = await store.get_info(first)
    assert again == first
    assert after.nuid == before.nuid  # the same chunks: not rewritten
    assert await client.payloads.load(first) == payload
    assert await client.payloads.delete_workflow("wf-1") == 1
    assert await client.payloads.delete_workflow("wf-1") == 0


async def test_a_payload_altered_in_the_store_is_refused_not_used(client: Client) -> None:
    """Whoever may write the object store (a node, a worker granted --payloads) could overwrite an object;
    paths name the content's SHA-256, so a swapped payload is detected when it is loaded."""
    path = await client.payloads.offload("wf-2", {"blob": "r" * 100_000}, "test payload")
    assert path is not None
    store = await client.conn.js.object_store(client.layout.payloads_bucket)
    await store.put(path, b'{"blob": "forged"}')
    with pytest.raises(PayloadError, match="does not match its content hash"):
        await client.payloads.load(path)
