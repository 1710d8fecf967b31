"""Timeouts on a real server: durable timers fire, whatever the workers do."""

from __future__ import annotations

import itertools

import anyio
import msgspec

from partita.actors import WorkerSpec
from partita.schemas import TaskStatus, WorkflowStatus
from partita.transport import Client, Connection

from .harness import running


async def test_a_poll_timeout_fires_when_no_worker_exists(conn: Connection, client: Client) -> None:
    await client.register_json(b'{"name": "orphan", "pollTimeoutSeconds": 1, "retryCount": 0}')
    await client.register_json(b'{"name": "lonely", "tasks": [{"name": "orphan", "taskReferenceName": "o"}]}')
    async with running(conn):
        workflow = await client.wait(await client.start("lonely"), within=30)
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert workflow.tasks[0].status is TaskStatus.TIMED_OUT
    assert "pollTimeoutSeconds" in (workflow.tasks[0].reason_for_incompletion or "")


async def test_a_task_timeout_counts_from_the_start_the_worker_reports(conn: Connection, client: Client) -> None:
    async def slow() -> dict[str, object]:
        await anyio.Event().wait()  # never finishes: the task overruns its timeout; shutdown cancels it
        return {}

    task_def = {"name": "slow", "timeoutSeconds": 1, "responseTimeoutSeconds": 1, "timeoutPolicy": "TIME_OUT_WF"}
    await client.register_json(msgspec.json.encode(task_def))
    await client.register_json(b'{"name": "overrun", "tasks": [{"name": "slow", "taskReferenceName": "s"}]}')
    async with running(conn, [WorkerSpec("slow", slow)], stop_grace=0.5):
        workflow = await client.wait(await client.start("overrun"), within=30)
    assert workflow.status is WorkflowStatus.TIMED_OUT
    task = workflow.tasks[0]
    assert task.status is TaskStatus.TIMED_OUT
    assert task.start_time > 0  # it did start: the worker reported it
    assert task.end_time - task.start_time >= 900


async def test_the_workflow_timeout_fires_while_a_human_task_waits(conn: Connection, client: Client) -> None:
    await client.register_json(
        b'{"name": "deadline", "timeoutSeconds": 1, "timeoutPolicy": "TIME_OUT_WF",'
        b' "tasks": [{"name": "h", "taskReferenceName": "h", "type": "HUMAN"}]}'
    )
    async with running(conn):
        workflow = await client.wait(await client.start("deadline"), within=30)
    assert workflow.status is WorkflowStatus.TIMED_OUT
    assert workflow.reason_for_incompletion == "Workflow timed out after 1 seconds (timeoutSeconds)"
    assert workflow.tasks[0].status is TaskStatus.CANCELED


async def test_a_failed_workflow_starts_its_failure_workflow(conn: Connection, client: Client) -> None:
    seen: list[dict[str, object]] = []

    def clean(workflowId: str, failureStatus: str, reason: str) -> None:
        seen.append({"workflowId": workflowId, "failureStatus": failureStatus, "reason": reason})

    def breaks() -> None:
        raise RuntimeError("disk full")

    await client.register_json(b'{"name": "breaks", "retryCount": 0}')
    await client.register_json(
        b'{"name": "cleanup", "tasks": [{"name": "clean", "taskReferenceName": "c", "inputParameters":'
        b' {"workflowId": "${workflow.input.workflowId}", "failureStatus": "${workflow.input.failureStatus}",'
        b' "reason": "${workflow.input.reason}"}}]}'
    )
    await client.register_json(
        b'{"name": "fragile", "failureWorkflow": "cleanup", "tasks": [{"name": "breaks", "taskReferenceName": "b"}]}'
    )
    async with running(conn, [WorkerSpec("breaks", breaks), WorkerSpec("clean", clean)]):
        failed = await client.wait(await client.start("fragile"), within=30)
        cleanup = await client.wait(str(failed.output["conductor.failure_workflow"]), within=30)
    assert failed.status is WorkflowStatus.FAILED
    assert cleanup.status is WorkflowStatus.COMPLETED
    assert seen == [
        {"workflowId": failed.workflow_id, "failureStatus": "FAILED", "reason": failed.reason_for_incompletion}
    ]


async def test_exponential_backoff_delays_are_observed(conn: Connection, client: Client) -> None:
    def stubborn() -> None:
        raise RuntimeError("not yet")

    await client.register_json(
        b'{"name": "stubborn", "retryCount": 2, "retryLogic": "EXPONENTIAL_BACKOFF", "retryDelaySeconds": 1}'
    )
    await client.register_json(b'{"name": "backoff", "tasks": [{"name": "stubborn", "taskReferenceName": "s"}]}')
    async with running(conn, [WorkerSpec("stubborn", stubborn)]):
        workflow = await client.wait(await client.start("backoff"), within=60)
    assert workflow.status is WorkflowStatus.FAILED
    attempts = workflow.tasks
    assert [t.retry_count for t in attempts] == [0, 1, 2]
    gaps = [(later.start_time - earlier.end_time) / 1000 for earlier, later in itertools.pairwise(attempts)]
    # retryDelaySeconds x 2^n: 1 s, then 2 s. Never shorter; the upper bound only tells them from the 60 s
    # default and leaves room for a loaded machine (schedules fire on whole seconds).
    assert 0.9 <= gaps[0] <= 5
    assert 1.9 <= gaps[1] <= 6
