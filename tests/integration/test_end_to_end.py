"""Workflows end to end on a real nats-server with JetStream: node, workers and client in one process."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from partita.actors import TaskMessage, TerminalError, WorkerSpec
from partita.schemas import (
    StartWorkflow,
    TaskResult,
    TaskResultStatus,
    TaskStatus,
    UnknownDefinition,
    WorkflowDef,
    WorkflowStatus,
    WorkflowTimeout,
)
from partita.transport import Client, Connection
from partita.transport.codec import encode_json

from .harness import eventually, running, unprocessed_events

SEQUENCE = {
    "name": "sequence",
    "version": 1,
    "tasks": [
        {"name": "double", "taskReferenceName": "d", "inputParameters": {"n": "${workflow.input.n}"}},
        {"name": "add", "taskReferenceName": "a", "inputParameters": {"n": "${d.output.result}", "k": 3}},
        {"name": "describe", "taskReferenceName": "s", "inputParameters": {"all": "${a.output}", "n": "${a.output.n}"}},
    ],
    "outputParameters": {"answer": "${a.output.n}", "text": "${s.output.text}"},
}


def double(n: int) -> int:
    return n * 2


async def add(n: int, k: int) -> dict[str, object]:
    return {"n": n + k}


def describe(task: TaskMessage) -> dict[str, object]:
    return {"text": f"{task.reference_task_name} saw {task.input_data['n']}", "retry": task.retry_count}


SPECS = [WorkerSpec("double", double), WorkerSpec("add", add), WorkerSpec("describe", describe)]


async def test_a_three_task_workflow_wires_outputs_into_inputs_and_completes(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(SEQUENCE))
    async with running(conn, SPECS):
        workflow_id = await client.start("sequence", {"n": 20}, correlation_id="corr-1")
        workflow = await client.wait(workflow_id, within=30)
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"answer": 43, "text": "s saw 43"}
    assert [t.reference_task_name for t in workflow.tasks] == ["d", "a", "s"]
    assert [t.status for t in workflow.tasks] == [TaskStatus.COMPLETED] * 3
    assert workflow.tasks[2].input_data == {"all": {"n": 43}, "n": 43}
    assert workflow.correlation_id == "corr-1"
    assert all(t.start_time and t.end_time >= t.start_time and t.worker_id for t in workflow.tasks)


async def test_a_failing_task_is_retried_as_a_new_instance_and_the_workflow_completes(
    conn: Connection, client: Client
) -> None:
    calls: list[int] = []

    def flaky(attempt_marker: str) -> dict[str, object]:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"{attempt_marker} failure #{len(calls)}")
        return {"ok": True}

    await client.register_json(b'{"name": "flaky", "retryCount": 3, "retryDelaySeconds": 1}')
    await client.register_json(
        b'{"name": "retrying", "tasks": [{"name": "flaky", "taskReferenceName": "f",'
        b' "inputParameters": {"attempt_marker": "transient"}}]}'
    )
    async with running(conn, [WorkerSpec("flaky", flaky)]):
        workflow = await client.wait(await client.start("retrying"), within=30)
    assert workflow.status is WorkflowStatus.COMPLETED
    assert [(t.status, t.retry_count) for t in workflow.tasks] == [
        (TaskStatus.FAILED, 0),
        (TaskStatus.FAILED, 1),
        (TaskStatus.COMPLETED, 2),
    ]
    assert workflow.tasks[0].reason_for_incompletion == "transient failure #1"
    assert len({t.task_id for t in workflow.tasks}) == 3
    assert workflow.tasks[1].retried_task_id == workflow.tasks[0].task_id
    # The retry waited out retryDelaySeconds (a JetStream message schedule), at second resolution.
    assert workflow.tasks[1].start_time - workflow.tasks[0].end_time >= 900


async def test_a_terminal_error_fails_the_workflow_without_retries(conn: Connection, client: Client) -> None:
    def refuse(order: str) -> None:
        raise TerminalError(f"order {order} is not allowed")

    await client.register_json(b'{"name": "refuse", "retryCount": 5, "retryDelaySeconds": 0}')
    await client.register_json(
        b'{"name": "refusing", "tasks": [{"name": "refuse", "taskReferenceName": "r",'
        b' "inputParameters": {"order": "${workflow.input.order}"}}]}'
    )
    async with running(conn, [WorkerSpec("refuse", refuse)]):
        workflow = await client.wait(await client.start("refusing", {"order": "o-9"}), within=30)
    assert workflow.status is WorkflowStatus.FAILED
    assert len(workflow.tasks) == 1
    assert workflow.tasks[0].status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "order o-9 is not allowed" in (workflow.reason_for_incompletion or "")
    assert workflow.failed_reference_task_names == ["r"]


async def test_a_domain_worker_receives_only_tasks_routed_to_its_domain(conn: Connection, client: Client) -> None:
    seen: dict[str, list[str]] = {"john": [], "none": []}

    def johns(tag: str) -> dict[str, object]:
        seen["john"].append(tag)
        return {"by": "john"}

    def anyones(tag: str) -> dict[str, object]:
        seen["none"].append(tag)
        return {"by": "default"}

    await client.register_json(
        b'{"name": "routed", "tasks": [{"name": "greet", "taskReferenceName": "g",'
        b' "inputParameters": {"tag": "${workflow.input.tag}"}}]}'
    )
    specs = [WorkerSpec("greet", johns, domain="john"), WorkerSpec("greet", anyones)]
    async with running(conn, specs):
        to_john = await client.start("routed", {"tag": "j1"}, task_to_domain={"*": "john"})
        to_john_by_name = await client.start("routed", {"tag": "j2"}, task_to_domain={"greet": "john"})
        to_default = await client.start("routed", {"tag": "d1"})
        results = [await client.wait(w, within=30) for w in (to_john, to_john_by_name, to_default)]
    assert [w.output for w in results] == [{"by": "john"}, {"by": "john"}, {"by": "default"}]
    assert [w.tasks[0].domain for w in results] == ["john", "john", None]
    assert sorted(seen["john"]) == ["j1", "j2"]
    assert seen["none"] == ["d1"]


async def test_a_start_that_cannot_run_fails_visibly_with_a_clear_reason(conn: Connection, client: Client) -> None:
    await client.register_json(
        b'{"name": "uses_http", "tasks": [{"name": "call", "taskReferenceName": "call", "type": "LLM_TEXT_COMPLETE"}]}'
    )
    await client.register_json(
        b'{"name": "uses_mystery", "tasks": [{"name": "m", "taskReferenceName": "m", "type": "TELEPORT"}]}'
    )
    async with running(conn):
        http = await client.wait(await client.start("uses_http"), within=30)
        mystery = await client.wait(await client.start("uses_mystery"), within=30)
        with pytest.raises(UnknownDefinition, match=r"No such workflow defined\. name=never_registered, version=4"):
            await client.start("never_registered", version=4)  # refused before anything is stored
        # A start published by other means (any NATS client) is recorded FAILED with the same reason.
        request = StartWorkflow(workflow_id="raw-start", name="never_registered", version=4)
        await conn.publish_durable(client.layout.start_subject("raw-start"), encode_json(request))
        missing = await client.wait("raw-start", within=30)
    assert http.status is WorkflowStatus.FAILED
    assert http.reason_for_incompletion == "task 'call': task type LLM_TEXT_COMPLETE is not supported yet by Partita"
    # Conductor's USER_DEFINED: a type it does not know runs as a task of that type, if its TaskDef exists.
    assert (
        mystery.reason_for_incompletion == "Invalid task specified. Cannot find task by name m in the task definitions"
    )
    assert missing.status is WorkflowStatus.FAILED
    assert missing.reason_for_incompletion == "No such workflow defined. name=never_registered, version=4"


async def test_starting_twice_with_one_idempotency_key_runs_one_workflow(conn: Connection, client: Client) -> None:
    calls: list[str] = []

    def once(tag: str) -> None:
        calls.append(tag)

    await client.register_json(
        b'{"name": "idem", "tasks": [{"name": "once", "taskReferenceName": "o",'
        b' "inputParameters": {"tag": "${workflow.input.tag}"}}]}'
    )
    async with running(conn, [WorkerSpec("once", once)]):
        first = await client.start("idem", {"tag": "a"}, idempotency_key="order-7")
        second = await client.start("idem", {"tag": "a"}, idempotency_key="order-7")
        other = await client.start("idem", {"tag": "b"}, idempotency_key="order-8")
        await client.wait(first, within=30)
        await client.wait(other, within=30)
    assert first == second
    assert first != other
    assert sorted(calls) == ["a", "b"]


async def test_an_inline_definition_runs_without_registration(conn: Connection, client: Client) -> None:
    inline = msgspec.convert(
        {"name": "adhoc", "tasks": [{"name": "double", "taskReferenceName": "d", "inputParameters": {"n": 4}}]},
        WorkflowDef,
    )
    async with running(conn, [WorkerSpec("double", double)]):
        workflow = await client.wait(await client.start("adhoc", workflow_def=inline), within=30)
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"result": 8}


async def test_a_malformed_event_is_terminated_and_logged_and_the_node_carries_on(
    conn: Connection, client: Client
) -> None:
    await client.register_json(msgspec.json.encode(SEQUENCE))
    async with running(conn, SPECS) as env:
        await conn.publish_durable(client.layout.start_subject("junk"), b"{not json")
        await conn.publish_durable(client.layout.start_subject("junk2"), encode_json({"workflowId": 5}))
        workflow = await client.wait(await client.start("sequence", {"n": 1}), within=30)
        assert env.node is not None
        assert env.node.statistics().events_rejected == 2
    assert workflow.status is WorkflowStatus.COMPLETED
    assert await unprocessed_events(conn, client.layout) == 0  # nothing left hanging for redelivery


async def test_waiting_past_the_deadline_raises_workflow_timeout(conn: Connection, client: Client) -> None:
    await client.register_json(b'{"name": "stalled", "tasks": [{"name": "nobody", "taskReferenceName": "n"}]}')
    async with running(conn):
        workflow_id = await client.start("stalled")
        with pytest.raises(WorkflowTimeout):
            await client.wait(workflow_id, within=0.5)
        workflow = await client.get(workflow_id)
    assert workflow.status is WorkflowStatus.RUNNING
    assert workflow.tasks[0].status is TaskStatus.SCHEDULED


async def test_watch_pushes_every_state_until_the_end(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(SEQUENCE))
    async with running(conn, SPECS):
        workflow_id = await client.start("sequence", {"n": 2})
        states = []
        with anyio.fail_after(30):
            async for workflow in client.watch(workflow_id):
                states.append(workflow)
    assert states[-1].status is WorkflowStatus.COMPLETED
    assert len(states) >= 2
    assert [len(s.tasks) for s in states] == sorted(len(s.tasks) for s in states)


async def test_duplicate_and_forged_results_after_the_end_change_nothing(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(SEQUENCE))
    async with running(conn, SPECS):
        workflow = await client.wait(await client.start("sequence", {"n": 5}), within=30)
        before = await client.conn.kv(client.layout.workflows_bucket)
        entry = await before.get(workflow.workflow_id)
        assert entry is not None
        last = workflow.tasks[-1]
        late = TaskResult(
            workflow_instance_id=workflow.workflow_id,
            task_id=last.task_id,
            task_type=last.task_type,
            status=TaskResultStatus.FAILED,
            reason_for_incompletion="late duplicate",
        )
        for _ in range(5):  # a burst, so several land in the finished actor's mailbox at once
            await conn.publish_durable(
                client.layout.result_subject(workflow.workflow_id, last.task_type, last.domain), encode_json(late)
            )
        forged = msgspec.structs.replace(late, task_id=workflow.tasks[0].task_id)
        await conn.publish_durable(
            client.layout.result_subject(workflow.workflow_id, "describe", None), encode_json(forged)
        )

        async def all_acked() -> bool:
            return await unprocessed_events(conn, client.layout) == 0

        await eventually(all_acked, what="the late results to be processed")
        after = await before.get(workflow.workflow_id)
    assert after is not None
    assert after.revision == entry.revision  # not rewritten
    assert (await client.get(workflow.workflow_id)).status is WorkflowStatus.COMPLETED


async def test_domain_fallback_lists_route_to_the_first_domain_with_a_live_worker(
    conn: Connection, client: Client
) -> None:
    seen: list[str] = []

    def marys(tag: str) -> dict[str, object]:
        seen.append(f"mary:{tag}")
        return {"by": "mary"}

    def default(tag: str) -> dict[str, object]:
        seen.append(f"default:{tag}")
        return {"by": "default"}

    await client.register_json(
        b'{"name": "fallback", "tasks": [{"name": "greet", "taskReferenceName": "g",'
        b' "inputParameters": {"tag": "${workflow.input.tag}"}}]}'
    )
    specs = [WorkerSpec("greet", marys, domain="mary"), WorkerSpec("greet", default)]
    async with running(conn, specs) as env:
        assert env.node is not None
        # Workers announce themselves at start; wait until the node has heard mary's.
        from .harness import eventually

        presence = env.node._presence
        await eventually(lambda: presence is not None and presence.is_active("greet", "mary"), what="mary's worker")
        to_mary = await client.start("fallback", {"tag": "1"}, task_to_domain={"greet": "john,mary,NO_DOMAIN"})
        to_default = await client.start("fallback", {"tag": "2"}, task_to_domain={"greet": "john,NO_DOMAIN"})
        results = [await client.wait(w, within=30) for w in (to_mary, to_default)]
    assert [w.tasks[0].domain for w in results] == ["mary", None]
    assert sorted(seen) == ["default:2", "mary:1"]
