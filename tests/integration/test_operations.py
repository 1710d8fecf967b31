"""Steering running workflows on a real server: pause/resume, retry, restart, and refusals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec
import pytest

from partita.actors import WorkerSpec
from partita.schemas import (
    CommandAnswer,
    CommandNotConfirmed,
    CommandOutcome,
    CommandRefused,
    TaskStatus,
    WorkflowError,
    WorkflowNotFound,
    WorkflowStatus,
)
from partita.transport import Client, Connection

from .harness import eventually, running

FLOW = {
    "name": "steered",
    "tasks": [
        {"name": "gate", "taskReferenceName": "gate", "type": "HUMAN"},
        {"name": "step", "taskReferenceName": "step"},
    ],
}


async def test_pause_stops_scheduling_and_resume_continues(conn: Connection, client: Client) -> None:
    steps: list[str] = []

    def step() -> None:
        steps.append("ran")

    await client.register_json(msgspec.json.encode(FLOW))
    async with running(conn, [WorkerSpec("step", step)]):
        workflow_id = await client.start("steered")

        async def gated() -> bool:
            found = await client.find(workflow_id)
            return found is not None and bool(found.tasks)

        await eventually(gated, what="the HUMAN task")
        await client.pause(workflow_id)

        async def paused() -> bool:
            return (await client.get(workflow_id)).status is WorkflowStatus.PAUSED

        await eventually(paused, what="PAUSED")
        await client.complete_task(workflow_id, "gate")

        async def gate_done() -> bool:
            return (await client.get(workflow_id)).tasks[0].status is TaskStatus.COMPLETED

        await eventually(gate_done, what="the gate to complete while paused")
        assert len((await client.get(workflow_id)).tasks) == 1  # nothing scheduled while paused
        again = await client.pause(workflow_id)  # Conductor: pausing a PAUSED workflow is no error
        assert (again.outcome, again.message) == (CommandOutcome.DONE, f"Workflow {workflow_id} is already PAUSED")
        resumed = await client.resume(workflow_id)
        assert resumed.outcome is CommandOutcome.DONE
        final = await client.wait(workflow_id, within=30)
    assert final.status is WorkflowStatus.COMPLETED
    assert steps == ["ran"]


async def test_retry_and_restart_a_failed_workflow(conn: Connection, client: Client) -> None:
    attempts: list[int] = []

    def step() -> dict[str, object]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first time unlucky")
        return {"attempt": len(attempts)}

    await client.register_json(b'{"name": "step", "retryCount": 0}')
    await client.register_json(
        msgspec.json.encode({"name": "once", "tasks": [{"name": "step", "taskReferenceName": "s"}]})
    )
    async with running(conn, [WorkerSpec("step", step)]):
        workflow_id = await client.start("once")
        failed = await client.wait(workflow_id, within=30)
        assert failed.status is WorkflowStatus.FAILED
        await client.retry(workflow_id)

        async def running_again() -> bool:
            return (await client.get(workflow_id)).status is not WorkflowStatus.FAILED

        await eventually(running_again, what="the retry to be applied")
        retried = await client.wait(workflow_id, within=30)
        assert retried.status is WorkflowStatus.COMPLETED
        assert [(t.status, t.retry_count) for t in retried.tasks] == [(TaskStatus.FAILED, 0), (TaskStatus.COMPLETED, 1)]
        with pytest.raises(CommandRefused, match="There are no retryable tasks"):
            await client.retry(workflow_id)
        await client.restart(workflow_id)

        async def restarted() -> bool:
            return (await client.get(workflow_id)).run_count == 2  # the retry was run 1, the restart run 2

        await eventually(restarted, what="the restart to be applied")
        again = await client.wait(workflow_id, within=30)
    assert again.status is WorkflowStatus.COMPLETED
    assert again.output == {"attempt": 3}
    assert [t.status for t in again.tasks] == [TaskStatus.COMPLETED]


async def test_list_filters_workflows_and_remove_deletes_ended_ones(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(FLOW))
    await client.register_json(b'{"name": "quick", "tasks": [{"name": "n", "taskReferenceName": "n", "type": "NOOP"}]}')
    async with running(conn):
        done = await client.wait(await client.start("quick", correlation_id="c-1"), within=30)
        waiting = await client.start("steered", correlation_id="c-2")

        async def started() -> bool:
            return await client.find(waiting) is not None

        await eventually(started, what="the second workflow")
        everything = await client.list()
        completed = await client.list(status="COMPLETED")
        by_name = await client.list(name="steered")
        by_correlation = await client.list(correlation_id="c-1")
        with pytest.raises(WorkflowError, match="terminate it first"):
            await client.remove(waiting)
        await client.remove(done.workflow_id)
        assert await client.find(done.workflow_id) is None
    assert {w.workflow_id for w in everything} == {done.workflow_id, waiting}
    assert [w.workflow_id for w in completed] == [done.workflow_id]
    assert [w.workflow_id for w in by_name] == [waiting]
    assert [w.workflow_id for w in by_correlation] == [done.workflow_id]


async def test_idempotency_strategies(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(FLOW))
    await client.register_json(b'{"name": "quick", "tasks": [{"name": "n", "taskReferenceName": "n", "type": "NOOP"}]}')
    async with running(conn):
        first = await client.start("quick", idempotency_key="k")
        await client.wait(first, within=30)
        assert await client.start("quick", idempotency_key="k") == first  # RETURN_EXISTING
        with pytest.raises(WorkflowError, match="refuses another"):
            await client.start("quick", idempotency_key="k", idempotency_strategy="FAIL")
        again = await client.start("quick", idempotency_key="k", idempotency_strategy="FAIL_ON_RUNNING")
        assert again != first  # the first one ended: a new run
        await client.wait(again, within=30)
        held = await client.start("steered", idempotency_key="h", idempotency_strategy="FAIL_ON_RUNNING")

        async def exists() -> bool:
            return await client.find(held) is not None

        await eventually(exists, what="the held workflow")
        with pytest.raises(WorkflowError, match="RUNNING"):
            await client.start("steered", idempotency_key="h", idempotency_strategy="FAIL_ON_RUNNING")


async def test_rerun_from_a_failed_task_and_skip_a_future_one(conn: Connection, client: Client) -> None:
    calls: list[str] = []

    def judge(verdict: str) -> dict[str, object]:
        calls.append(verdict)
        if verdict == "no":
            raise RuntimeError("said no")
        return {"verdict": verdict}

    await client.register_json(b'{"name": "judge", "retryCount": 0}')
    await client.register_json(
        b'{"name": "trial", "tasks": [{"name": "judge", "taskReferenceName": "j",'
        b' "inputParameters": {"verdict": "${workflow.input.verdict}"}},'
        b' {"name": "h", "taskReferenceName": "h", "type": "HUMAN"},'
        b' {"name": "n", "taskReferenceName": "n", "type": "NOOP"}]}'
    )
    async with running(conn, [WorkerSpec("judge", judge)]):
        workflow_id = await client.start("trial", {"verdict": "no"})
        failed = await client.wait(workflow_id, within=30)
        assert failed.status is WorkflowStatus.FAILED
        await client.rerun(workflow_id, from_task_id=failed.tasks[0].task_id, task_input={"verdict": "yes"})

        async def human_pending() -> bool:
            tasks = (await client.get(workflow_id)).tasks
            return len(tasks) == 2 and tasks[1].status is TaskStatus.IN_PROGRESS

        await eventually(human_pending, what="the rerun to reach the HUMAN task")
        await client.skip_task(workflow_id, "n", task_output={"skipped": True})

        async def skipped() -> bool:
            return len((await client.get(workflow_id)).tasks) == 3

        await eventually(skipped, what="the skip to be recorded")
        await client.complete_task(workflow_id, "h")
        final = await client.wait(workflow_id, within=30)
        with pytest.raises(CommandRefused, match=f"The workflow {workflow_id} is not running so the task referenced"):
            await client.skip_task(workflow_id, "n")
    assert calls == ["no", "yes"]
    assert final.status is WorkflowStatus.COMPLETED
    assert [(t.reference_task_name, t.status) for t in final.tasks] == [
        ("j", TaskStatus.COMPLETED),
        ("h", TaskStatus.COMPLETED),
        ("n", TaskStatus.SKIPPED),
    ]
    assert final.tasks[0].task_id == failed.tasks[0].task_id  # the rerun task keeps its id, as in Conductor
    assert final.output == {"skipped": True}


async def test_a_terminated_workflows_queued_task_never_reaches_a_worker(conn: Connection, client: Client) -> None:
    ran: list[str] = []

    def step() -> None:
        ran.append("step")

    await client.register_json(b'{"name": "queued", "tasks": [{"name": "step", "taskReferenceName": "s"}]}')
    async with running(conn):  # no worker yet: the task waits in the queue
        workflow_id = await client.start("queued")

        async def scheduled() -> bool:
            found = await client.find(workflow_id)
            return found is not None and bool(found.tasks)

        await eventually(scheduled, what="the task to be queued")
        await client.terminate(workflow_id, "not needed")
        stopped = await client.wait(workflow_id, within=30)
    assert stopped.tasks[0].status is TaskStatus.CANCELED
    consumer = await conn.js.consumer_info(client.layout.tasks_stream, client.layout.task_consumer("step", None))
    assert consumer.num_pending == 0  # purged from the queue: a worker starting now finds nothing
    async with running(conn, [WorkerSpec("step", step)], node=False):
        pass
    assert ran == []


async def test_a_restarted_workflow_gets_a_fresh_timeout(conn: Connection, client: Client) -> None:
    await client.register_json(
        b'{"name": "hurry", "timeoutSeconds": 1, "timeoutPolicy": "TIME_OUT_WF",'
        b' "tasks": [{"name": "h", "taskReferenceName": "h", "type": "HUMAN"}]}'
    )
    async with running(conn):
        workflow_id = await client.start("hurry")
        first = await client.wait(workflow_id, within=30)
        await client.restart(workflow_id)

        async def restarted() -> bool:
            return (await client.get(workflow_id)).run_count == 1

        await eventually(restarted, what="the restart")
        second = await client.wait(workflow_id, within=30)  # within the 2-minute dedupe window of the first timer
    assert first.status is WorkflowStatus.TIMED_OUT
    assert second.status is WorkflowStatus.TIMED_OUT
    assert second.run_count == 1


async def test_the_history_records_every_transition_once_and_in_order(conn: Connection, client: Client) -> None:
    calls: list[int] = []

    def flaky() -> dict[str, object]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try fails")
        return {"ok": True}

    await client.register_json(b'{"name": "flaky", "retryCount": 1, "retryDelaySeconds": 0}')
    await client.register_json(
        b'{"name": "recorded", "tasks": [{"name": "flaky", "taskReferenceName": "f"},'
        b' {"name": "note", "taskReferenceName": "n", "type": "SET_VARIABLE", "inputParameters": {"x": 1}}]}'
    )
    async with running(conn, [WorkerSpec("flaky", flaky)]):
        workflow_id = await client.start("recorded")
        workflow = await client.wait(workflow_id, within=30)
    entries = await client.history(workflow_id)
    assert [e.cause for e in entries] == ["start recorded", "result FAILED from " + str(workflow.tasks[0].worker_id),
                                          "result COMPLETED from " + str(workflow.tasks[1].worker_id)]  # fmt: skip
    assert [(e.previous_status, e.status) for e in entries] == [
        (None, WorkflowStatus.RUNNING),
        (WorkflowStatus.RUNNING, WorkflowStatus.RUNNING),
        (WorkflowStatus.RUNNING, WorkflowStatus.COMPLETED),
    ]
    changes = [[(t.reference_task_name, t.previous_status, t.status, t.retry_count) for t in e.tasks] for e in entries]
    assert changes == [
        [("f", None, TaskStatus.SCHEDULED, 0)],
        [("f", TaskStatus.SCHEDULED, TaskStatus.FAILED, 0), ("f", None, TaskStatus.SCHEDULED, 1)],
        [("f", TaskStatus.SCHEDULED, TaskStatus.COMPLETED, 1), ("n", None, TaskStatus.COMPLETED, 0)],
    ]
    assert entries[1].tasks[0].reason_for_incompletion == "first try fails"
    assert len({e.event_seq for e in entries}) == 3
    assert await client.history("never-started") == []


async def test_every_operation_answers_with_what_the_owning_node_decided(conn: Connection, client: Client) -> None:
    await client.register_json(msgspec.json.encode(FLOW))
    async with running(conn):
        parked = await client.start("steered")
        await eventually(lambda: client.find(parked), what="the start to be recorded")
    with pytest.raises(CommandNotConfirmed, match=r"no node answered within 0\.5 s"):  # stored, nobody to apply it
        await client.pause(parked, within=0.5)
    async with running(conn):

        async def is_paused() -> bool:
            return (await client.get(parked)).status is WorkflowStatus.PAUSED

        await eventually(is_paused, what="the stored pause to be applied once a node runs")
        with pytest.raises(WorkflowNotFound):
            await client.terminate("no-such-workflow")
        refusals = {
            "retry": lambda: client.retry(parked),
            "restart": lambda: client.restart(parked),
            "rerun": lambda: client.rerun(parked),
        }
        for what, call in refusals.items():
            with pytest.raises(CommandRefused) as refused:
                await call()
            assert refused.value.outcome == CommandOutcome.CONFLICT, what
        assert "Workflow is still running.  status=PAUSED" in str(await _refusal(client.retry(parked)))
        resumed = await client.resume(parked)
        assert (resumed.outcome, resumed.status) == (CommandOutcome.DONE, WorkflowStatus.RUNNING)
        missing_task = await _refusal(client.complete_task(parked, "no_such_ref"))
        assert (missing_task.outcome, str(missing_task)) == (
            CommandOutcome.NOT_FOUND,
            f"Found no running task no_such_ref of workflow {parked} to update",
        )
        bad_skip = await _refusal(client.skip_task(parked, "zzz"))
        assert bad_skip.outcome == CommandOutcome.INVALID
        assert str(bad_skip) == "The task referenced by zzz does not exist in the WorkflowDefinition steered"
        terminated = await client.terminate(parked, "enough")
        assert (terminated.outcome, terminated.status) == (CommandOutcome.DONE, WorkflowStatus.TERMINATED)
        again = await client.terminate(parked)  # Conductor: terminating a TERMINATED workflow is no error
        assert again.message == f"Workflow {parked} is already TERMINATED"
        bad_rerun = await _refusal(client.rerun(parked, from_task_id="nope"))
        assert (bad_rerun.outcome, str(bad_rerun)) == (CommandOutcome.INVALID, "Task nope not found")


async def test_racing_commands_are_answered_as_the_final_state_shows(conn: Connection, client: Client) -> None:
    # A completion and a terminate sent at once: whichever the node applies first wins, and the other is
    # refused for exactly that reason (the answers are written in the decisions' compare-and-set).
    await client.register_json(msgspec.json.encode(FLOW))
    async with running(conn, [WorkerSpec("step", lambda: None)]):
        for _ in range(3):
            await _race_complete_and_terminate(client, await client.start("steered"))


async def _race_complete_and_terminate(client: Client, workflow_id: str) -> None:
    await eventually(lambda: client.find(workflow_id), what="the start to be recorded")
    outcomes: dict[str, BaseException | CommandAnswer] = {}

    async def send(name: str, call: Callable[[], Awaitable[CommandAnswer]]) -> None:
        try:
            outcomes[name] = await call()
        except CommandRefused as exc:
            outcomes[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(send, "complete", lambda: client.complete_task(workflow_id, "gate"))
        tg.start_soon(send, "terminate", lambda: client.terminate(workflow_id, "race"))
    final = await client.wait(workflow_id, within=30)
    if final.status is WorkflowStatus.TERMINATED:
        # Terminated first (the completion is refused), or the gate completed first and the terminate came
        # while the next task ran: the terminate is DONE either way.
        assert isinstance(outcomes["terminate"], CommandAnswer)
        gate_canceled = final.tasks[0].status is TaskStatus.CANCELED
        assert isinstance(outcomes["complete"], CommandRefused if gate_canceled else CommandAnswer)
    else:
        assert final.status is WorkflowStatus.COMPLETED
        assert isinstance(outcomes["complete"], CommandAnswer)
        assert isinstance(outcomes["terminate"], CommandRefused)
        assert str(outcomes["terminate"]) == "Cannot terminate a COMPLETED workflow."


async def _refusal(call: Awaitable[CommandAnswer]) -> CommandRefused:
    try:
        answer = await call
    except CommandRefused as exc:
        return exc
    raise AssertionError(f"expected a refusal, got {answer}")
