"""Conductor definitions with operators, end to end on a real nats-server: final status, output, and the
sequence of (referenceTaskName, status) Conductor would produce."""

from __future__ import annotations

import msgspec

from partita.actors import WorkerSpec
from partita.schemas import Workflow, WorkflowStatus
from partita.transport import Client, Connection

from .harness import running


def shout(text: str) -> dict[str, object]:
    return {"text": text.upper()}


def count(n: int) -> dict[str, object]:
    return {"n": n + 1}


ITERATION = "${loop.output.iteration}"
FIRST_WORD = "${prep.output.result.words[0]}"
WORD_COUNT = "${jq.output.result}"
WORKERS = [WorkerSpec("shout", shout, concurrency=4), WorkerSpec("count", count, concurrency=4)]


def trail(workflow: Workflow) -> list[tuple[str, str]]:
    return [(t.reference_task_name, str(t.status)) for t in workflow.tasks]


async def run(client: Client, definition: dict[str, object], workflow_input: dict[str, object]) -> Workflow:
    await client.register_json(msgspec.json.encode(definition))
    return await client.wait(await client.start(str(definition["name"]), workflow_input), within=30)


async def test_a_switch_inside_a_fork_inside_a_loop(conn: Connection, client: Client) -> None:
    definition = {
        "name": "combo",
        "tasks": [
            {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE",
             "loopCondition": "$.loop.iteration < 2", "loopOver": [
                {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN", "forkTasks": [
                    [{"name": "count", "taskReferenceName": "c", "inputParameters": {"n": ITERATION}}],
                    [{"name": "pick", "taskReferenceName": "pick", "type": "SWITCH", "evaluatorType": "javascript",
                      "expression": "$.i == 1 ? 'first' : 'later'", "inputParameters": {"i": ITERATION},
                      "decisionCases": {"first": [{"name": "shout", "taskReferenceName": "s",
                                                   "inputParameters": {"text": "first"}}]},
                      "defaultCase": [{"name": "set", "taskReferenceName": "v", "type": "SET_VARIABLE",
                                       "inputParameters": {"later": True}}]}],
                ]},
                {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["c", "pick"]},
            ]},
        ],
        "outputParameters": {"loop": "${loop.output}", "vars": "${workflow.variables}"},
    }  # fmt: skip
    async with running(conn, WORKERS):
        workflow = await run(client, definition, {})
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    assert trail(workflow) == [
        ("loop", "COMPLETED"),
        ("fork__1", "COMPLETED"), ("c__1", "COMPLETED"), ("pick__1", "COMPLETED"), ("s__1", "COMPLETED"),
        ("join__1", "COMPLETED"),
        ("fork__2", "COMPLETED"), ("c__2", "COMPLETED"), ("pick__2", "COMPLETED"), ("v__2", "COMPLETED"),
        ("join__2", "COMPLETED"),
    ]  # fmt: skip
    assert workflow.output["vars"] == {"later": True}
    loop_output = workflow.output["loop"]
    assert isinstance(loop_output, dict)
    assert loop_output["iteration"] == 2
    first, second = loop_output["1"], loop_output["2"]
    assert first["c"] == {"n": 2}
    assert first["s"] == {"text": "FIRST"}  # the JOIN on the switch waited for its case to finish
    assert second["c"] == {"n": 3}
    assert second["pick"] == {"evaluationResult": ["later"], "selectedCase": "later"}


async def test_terminate_in_a_branch_and_scripts_on_a_node(conn: Connection, client: Client) -> None:
    definition = {
        "name": "stop_early",
        "tasks": [
            {"name": "prep", "taskReferenceName": "prep", "type": "INLINE",
             "inputParameters": {"expression": "({words: $.text.split(' ')})", "text": "${workflow.input.text}"}},
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN", "forkTasks": [
                [{"name": "shout", "taskReferenceName": "loud", "inputParameters": {"text": FIRST_WORD}}],
                [{"name": "jq", "taskReferenceName": "jq", "type": "JSON_JQ_TRANSFORM",
                  "inputParameters": {"w": "${prep.output.result.words}", "queryExpression": ".w | length"}},
                 {"name": "stop", "taskReferenceName": "stop", "type": "TERMINATE",
                  "inputParameters": {"terminationStatus": "COMPLETED", "workflowOutput": {"words": WORD_COUNT}}}],
            ]},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["loud", "stop"]},
        ],
    }  # fmt: skip
    async with running(conn, WORKERS):
        workflow = await run(client, definition, {"text": "hello brave world"})
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"words": 3}
    # Conductor's order: every branch head, then the JOIN, then what follows a head
    assert trail(workflow) == [
        ("prep", "COMPLETED"), ("fork", "COMPLETED"), ("loud", "CANCELED"), ("jq", "COMPLETED"),
        ("join", "CANCELED"), ("stop", "COMPLETED"),
    ]  # fmt: skip


async def test_a_timed_wait_fires_from_a_jetstream_schedule_and_a_human_task_is_completed_from_outside(
    conn: Connection, client: Client
) -> None:
    definition = {
        "name": "approval",
        "tasks": [
            {"name": "pause", "taskReferenceName": "pause", "type": "WAIT", "inputParameters": {"duration": "1s"}},
            {"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"},
            {"name": "shout", "taskReferenceName": "tell", "inputParameters": {"text": "${approve.output.by}"}},
        ],
        "outputParameters": {"told": "${tell.output.text}"},
    }
    await client.register_json(msgspec.json.encode(definition))
    async with running(conn, WORKERS):
        workflow_id = await client.start("approval")
        async for workflow in client.watch(workflow_id):
            if any(t.reference_task_name == "approve" for t in workflow.tasks):
                break
        pause = workflow.tasks[0]
        assert (pause.reference_task_name, pause.status) == ("pause", "COMPLETED")
        assert pause.end_time - pause.start_time >= 900  # the timer, not the decision, completed it
        await client.complete_task(workflow_id, "approve", {"by": "ada"})
        final = await client.wait(workflow_id, within=30)
    assert final.status is WorkflowStatus.COMPLETED
    assert final.output == {"told": "ADA"}
    assert trail(final) == [("pause", "COMPLETED"), ("approve", "COMPLETED"), ("tell", "COMPLETED")]


async def test_sub_workflows_registered_and_inline_and_a_terminated_parent_terminates_its_child(
    conn: Connection, client: Client
) -> None:
    child = {
        "name": "child",
        "tasks": [{"name": "shout", "taskReferenceName": "s", "inputParameters": {"text": "${workflow.input.word}"}}],
        "outputParameters": {"loud": "${s.output.text}", "corr": "${workflow.correlationId}"},
    }
    parent = {
        "name": "parent",
        "tasks": [
            {"name": "child", "taskReferenceName": "registered", "type": "SUB_WORKFLOW",
             "inputParameters": {"word": "${workflow.input.word}"}, "subWorkflowParam": {"name": "child"}},
            {"name": "inline", "taskReferenceName": "inline", "type": "SUB_WORKFLOW",
             "inputParameters": {"word": "${registered.output.loud}"},
             "subWorkflowParam": {"workflowDefinition": {**child, "name": "inline_child"}}},
        ],
        "outputParameters": {"twice": "${inline.output.loud}", "corr": "${inline.output.corr}"},
    }  # fmt: skip
    stuck = {
        "name": "stuck_parent",
        "tasks": [{"name": "waiter", "taskReferenceName": "w", "type": "SUB_WORKFLOW",
                   "subWorkflowParam": {"workflowDefinition": {"name": "waits", "tasks": [
                       {"name": "h", "taskReferenceName": "h", "type": "HUMAN"}]}}}],
    }  # fmt: skip
    for definition in (child, parent, stuck):
        await client.register_json(msgspec.json.encode(definition))
    async with running(conn, WORKERS):
        done = await client.wait(await client.start("parent", {"word": "hi"}, correlation_id="c-9"), within=30)
        stuck_id = await client.start("stuck_parent")
        async for state in client.watch(stuck_id):
            if state.tasks and state.tasks[0].sub_workflow_id:
                break
        child_id = state.tasks[0].sub_workflow_id
        assert child_id is not None
        await client.terminate(stuck_id, "changed my mind")
        stopped = await client.wait(stuck_id, within=30)
        orphan = await client.wait(child_id, within=30)
    assert done.status is WorkflowStatus.COMPLETED, done.reason_for_incompletion
    assert done.output == {"twice": "HI", "corr": "c-9"}
    assert trail(done) == [("registered", "COMPLETED"), ("inline", "COMPLETED")]
    sub = await client.get(str(done.tasks[0].sub_workflow_id))
    assert (sub.parent_workflow_id, sub.parent_workflow_task_id) == (done.workflow_id, done.tasks[0].task_id)
    assert stopped.status is WorkflowStatus.TERMINATED
    assert stopped.reason_for_incompletion == "changed my mind"
    assert trail(stopped) == [("w", "CANCELED")]
    assert orphan.status is WorkflowStatus.TERMINATED
    assert trail(orphan) == [("h", "CANCELED")]


async def test_a_dynamic_fork_fans_out_sub_workflows_and_joins_their_outputs(conn: Connection, client: Client) -> None:
    child = {
        "name": "shout_child",
        "tasks": [{"name": "shout", "taskReferenceName": "s", "inputParameters": {"text": "${workflow.input.word}"}}],
    }
    fan = {
        "name": "fan_out",
        "tasks": [
            {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"forkTaskWorkflow": "shout_child", "forkTaskInputs": "${workflow.input.words}"}},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
        ],
    }  # fmt: skip
    for definition in (child, fan):
        await client.register_json(msgspec.json.encode(definition))
    async with running(conn, WORKERS):
        workflow = await run(client, fan, {"words": [{"word": "a"}, {"word": "b"}, {"word": "c"}]})
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    join = workflow.tasks[-1]
    assert sorted(join.output_data) == ["_shout_child_0", "_shout_child_1", "_shout_child_2"]
    assert [join.output_data[f"_shout_child_{i}"]["text"] for i in range(3)] == ["A", "B", "C"]  # type: ignore[index]
    assert {t.task_type for t in workflow.tasks[1:-1]} == {"SUB_WORKFLOW"}


async def test_legacy_decision_dynamic_exclusive_join_lambda_noop_and_start_workflow(
    conn: Connection, client: Client
) -> None:
    other = {"name": "other", "tasks": [{"name": "count", "taskReferenceName": "c", "inputParameters": {"n": 41}}]}
    legacy = {
        "name": "legacy",
        "tasks": [
            {"name": "route", "taskReferenceName": "route", "type": "DECISION", "caseValueParam": "mode",
             "inputParameters": {"mode": "${workflow.input.mode}"},
             "decisionCases": {
                 "dyn": [{"name": "dyn", "taskReferenceName": "dyn", "type": "DYNAMIC",
                          "dynamicTaskNameParam": "which", "inputParameters": {"which": "shout", "text": "dynamic"}}],
                 "plain": [{"name": "noop", "taskReferenceName": "noop", "type": "NOOP"}]}},
            {"name": "xjoin", "taskReferenceName": "xjoin", "type": "EXCLUSIVE_JOIN", "joinOn": ["dyn", "noop"]},
            {"name": "calc", "taskReferenceName": "calc", "type": "LAMBDA", "scriptExpression": "return $.t + '!';",
             "inputParameters": {"t": "${xjoin.output.text}"}},
            {"name": "kick", "taskReferenceName": "kick", "type": "START_WORKFLOW",
             "inputParameters": {"startWorkflow": {"name": "other"}}},
        ],
        "outputParameters": {"calc": "${calc.output.result}", "started": "${kick.output.workflowId}"},
    }  # fmt: skip
    for definition in (other, legacy):
        await client.register_json(msgspec.json.encode(definition))
    async with running(conn, WORKERS):
        workflow = await run(client, legacy, {"mode": "dyn"})
        started = await client.wait(str(workflow.output["started"]), within=30)
    assert workflow.status is WorkflowStatus.COMPLETED, workflow.reason_for_incompletion
    assert trail(workflow) == [
        ("route", "COMPLETED"), ("dyn", "COMPLETED"), ("xjoin", "COMPLETED"), ("calc", "COMPLETED"),
        ("kick", "COMPLETED"),
    ]  # fmt: skip
    assert workflow.tasks[1].task_type == "shout"
    assert workflow.output["calc"] == "DYNAMIC!"
    assert started.status is WorkflowStatus.COMPLETED
    assert started.output == {"n": 42}


async def test_a_runaway_script_fails_its_task_and_the_node_stays_healthy(conn: Connection, client: Client) -> None:
    runaway = {
        "name": "runaway",
        "tasks": [{"name": "spin", "taskReferenceName": "spin", "type": "INLINE",
                   "inputParameters": {"expression": "while (true) {}"}}],
    }  # fmt: skip
    escape = {
        "name": "escape",
        "tasks": [{"name": "peek", "taskReferenceName": "peek", "type": "INLINE",
                   "inputParameters": {"expression": "globalThis.process || std.getenv('HOME')"}}],
    }  # fmt: skip
    for definition in (runaway, escape):
        await client.register_json(msgspec.json.encode(definition))
    async with running(conn, WORKERS):
        spun = await client.wait(await client.start("runaway"), within=30)
        peeked = await client.wait(await client.start("escape"), within=30)
        healthy = await run(client, {"name": "after", "tasks": [
            {"name": "shout", "taskReferenceName": "s", "inputParameters": {"text": "ok"}}]}, {})  # fmt: skip
    assert spun.status is WorkflowStatus.FAILED
    assert "time limit of 4 s" in (spun.tasks[0].reason_for_incompletion or "")
    assert peeked.status is WorkflowStatus.FAILED
    assert "std is not defined" in (peeked.tasks[0].reason_for_incompletion or "")
    assert healthy.status is WorkflowStatus.COMPLETED
