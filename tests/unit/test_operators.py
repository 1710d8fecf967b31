"""Operators and sync system tasks in the pure decider, against Conductor's semantics (reference §3)."""

from __future__ import annotations

import msgspec
import pytest

from partita.actors.decider import Decision, decide, snapshot_definition
from partita.schemas import (
    DispatchTask,
    StartWorkflow,
    TaskDef,
    TaskResult,
    TaskResultReceived,
    TaskResultStatus,
    TaskStatus,
    Workflow,
    WorkflowDef,
    WorkflowStartRequested,
    WorkflowStatus,
)

NOW = 1_700_000_000_000


def start(definition: dict[str, object], workflow_input: dict[str, object] | None = None) -> Decision:
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), {})
    request = StartWorkflow(workflow_id="wf", name=str(definition["name"]), input=workflow_input or {})
    return decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW)


def run(definition: dict[str, object], workflow_input: dict[str, object] | None = None) -> Workflow:
    decision = start(definition, workflow_input)
    assert decision.workflow is not None
    return decision.workflow


def pending(workflow: Workflow) -> list[str]:
    return [t.reference_task_name for t in workflow.tasks if t.status is TaskStatus.SCHEDULED]


def complete(
    workflow: Workflow,
    ref: str,
    output: dict[str, object] | None = None,
    status: TaskResultStatus = TaskResultStatus.COMPLETED,
    reason: str | None = None,
) -> Workflow:
    task = next(t for t in reversed(workflow.tasks) if t.reference_task_name == ref)
    result = TaskResult(
        workflow_instance_id=workflow.workflow_id,
        task_id=task.task_id,
        status=status,
        output_data=output or {},
        reason_for_incompletion=reason,
    )
    decision: Decision = decide(workflow, TaskResultReceived(result=result, subject_task_type=task.task_type), NOW + 1)
    assert decision.workflow is not None, decision.note
    return decision.workflow


def trail(workflow: Workflow) -> list[tuple[str, str]]:
    return [(t.reference_task_name, str(t.status)) for t in workflow.tasks]


def simple(ref: str, **fields: object) -> dict[str, object]:
    return {"name": fields.pop("name", ref), "taskReferenceName": ref, **fields}


def test_switch_by_value_param_runs_the_matching_case_then_continues_after_the_switch() -> None:
    definition = {
        "name": "sw",
        "tasks": [
            {
                "name": "sw", "taskReferenceName": "sw", "type": "SWITCH", "evaluatorType": "value-param",
                "expression": "kind", "inputParameters": {"kind": "${workflow.input.kind}"},
                "decisionCases": {"a": [simple("in_a")], "b": [simple("in_b")]},
                "defaultCase": [simple("in_default")],
            },
            simple("after"),
        ],
    }  # fmt: skip
    workflow = run(definition, {"kind": "b"})
    assert trail(workflow) == [("sw", "COMPLETED"), ("in_b", "SCHEDULED")]
    assert workflow.tasks[0].output_data == {"evaluationResult": ["b"], "selectedCase": "b"}
    workflow = complete(workflow, "in_b")
    assert pending(workflow) == ["after"]
    workflow = complete(complete(run(definition, {"kind": "zzz"}), "in_default"), "after")
    assert workflow.status is WorkflowStatus.COMPLETED
    assert [r for r, _ in trail(workflow)] == ["sw", "in_default", "after"]


def test_switch_in_javascript_and_an_empty_case_that_runs_nothing() -> None:
    definition = {
        "name": "js",
        "tasks": [
            {
                "name": "sw", "taskReferenceName": "sw", "type": "SWITCH", "evaluatorType": "javascript",
                "expression": "$.n > 10 ? 'big' : 'small'", "inputParameters": {"n": "${workflow.input.n}"},
                "decisionCases": {"big": [simple("big")], "small": []}, "defaultCase": [simple("never")],
            }
        ],
    }  # fmt: skip
    assert pending(run(definition, {"n": 11})) == ["big"]
    small = run(definition, {"n": 1})
    assert small.status is WorkflowStatus.COMPLETED
    assert trail(small) == [("sw", "COMPLETED")]


def test_a_script_error_in_a_switch_fails_the_task_and_the_workflow() -> None:
    definition = {
        "name": "bad",
        "tasks": [
            {"name": "sw", "taskReferenceName": "sw", "type": "SWITCH", "evaluatorType": "javascript",
             "expression": "$.missing.deeper", "decisionCases": {"x": [simple("x")]}}
        ],
    }  # fmt: skip
    workflow = run(definition)
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.tasks[0].status is TaskStatus.FAILED
    assert "TypeError" in (workflow.tasks[0].reason_for_incompletion or "")


def test_legacy_decision_by_case_value_param_and_by_case_expression() -> None:
    by_param = {
        "name": "d1",
        "tasks": [
            {"name": "d", "taskReferenceName": "d", "type": "DECISION", "caseValueParam": "flag",
             "inputParameters": {"flag": "${workflow.input.flag}"}, "decisionCases": {"true": [simple("yes")]},
             "defaultCase": [simple("no")]}
        ],
    }  # fmt: skip
    workflow = run(by_param, {"flag": True})
    assert pending(workflow) == ["yes"]  # Conductor stringifies true as "true"
    assert workflow.tasks[0].output_data == {"caseOutput": ["true"]}
    assert workflow.tasks[0].input_data["case"] == "true"
    by_expression = {
        "name": "d2",
        "tasks": [
            {"name": "d", "taskReferenceName": "d", "type": "DECISION",
             "caseExpression": "$.n % 2 == 0 ? 'even' : 'odd'", "inputParameters": {"n": 3},
             "decisionCases": {"odd": [simple("odd")], "even": [simple("even")]}}
        ],
    }  # fmt: skip
    assert pending(run(by_expression)) == ["odd"]


FORK = {
    "name": "fork",
    "tasks": [
        {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
         "forkTasks": [[simple("a1"), simple("a2")], [simple("b1", optional=True, retryCount=0)]]},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["a2", "b1"]},
        simple("after", inputParameters={"joined": "${join.output}"}),
    ],
}  # fmt: skip


def test_fork_runs_branches_in_parallel_and_join_waits_for_its_join_on_tasks() -> None:
    workflow = run(FORK)
    assert trail(workflow) == [("fork", "COMPLETED"), ("a1", "SCHEDULED"), ("b1", "SCHEDULED"), ("join", "IN_PROGRESS")]
    workflow = complete(workflow, "b1", {"b": 1})
    workflow = complete(workflow, "a1")
    assert pending(workflow) == ["a2"]
    assert workflow.tasks[3].status is TaskStatus.IN_PROGRESS  # the JOIN still waits for a2
    workflow = complete(workflow, "a2", {"a": 2})
    join = next(t for t in workflow.tasks if t.reference_task_name == "join")
    assert join.status is TaskStatus.COMPLETED
    assert join.output_data == {"a2": {"a": 2}, "b1": {"b": 1}}
    assert workflow.tasks[-1].input_data == {"joined": {"a2": {"a": 2}, "b1": {"b": 1}}}


def test_an_optional_branch_failure_completes_the_join_with_errors() -> None:
    workflow = run(FORK)
    workflow = complete(workflow, "b1", status=TaskResultStatus.FAILED)
    workflow = complete(complete(workflow, "a1"), "a2")
    statuses = dict(trail(workflow))
    assert statuses["b1"] == "COMPLETED_WITH_ERRORS"
    assert statuses["join"] == "COMPLETED_WITH_ERRORS"
    assert pending(workflow) == ["after"]


def test_a_failing_branch_fails_the_workflow_and_cancels_the_rest() -> None:
    definition = {**FORK, "tasks": [dict(FORK["tasks"][0]), *FORK["tasks"][1:]]}  # type: ignore[index]
    workflow = run(definition)
    failed = complete(workflow, "a1", status=TaskResultStatus.FAILED_WITH_TERMINAL_ERROR)
    assert failed.status is WorkflowStatus.FAILED
    statuses = dict(trail(failed))
    assert statuses["a1"] == "FAILED_WITH_TERMINAL_ERROR"
    assert statuses["b1"] == "CANCELED"
    assert statuses["join"] == "CANCELED"


LOOP = {
    "name": "loop",
    "tasks": [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE",
         "loopCondition": "$.loop['iteration'] < $.times", "inputParameters": {"times": "${workflow.input.times}"},
         "loopOver": [simple("body", inputParameters={"i": "${loop.output.iteration}"})]},
        simple("after", inputParameters={"last": "${body.output.i}"}),
    ],
}  # fmt: skip


def test_do_while_runs_its_body_per_iteration_with_suffixed_refs_and_per_iteration_output() -> None:
    workflow = run(LOOP, {"times": 3})
    for i in (1, 2, 3):
        assert pending(workflow) == [f"body__{i}"]
        assert workflow.tasks[-1].input_data == {"i": i}
        assert workflow.tasks[-1].iteration == i
        workflow = complete(workflow, f"body__{i}", {"i": i * 10})
    loop = workflow.tasks[0]
    assert loop.status is TaskStatus.COMPLETED
    assert loop.output_data == {
        "1": {"body": {"i": 10}},
        "2": {"body": {"i": 20}},
        "3": {"body": {"i": 30}},
        "iteration": 3,
    }
    assert workflow.tasks[-1].input_data == {"last": 30}  # ${body...} reads the latest iteration


def test_do_while_keep_last_n_trims_old_iterations() -> None:
    definition = msgspec.json.decode(msgspec.json.encode(LOOP))
    definition["tasks"][0]["inputParameters"]["keepLastN"] = 2
    workflow = run(definition, {"times": 4})
    for i in (1, 2, 3, 4):
        workflow = complete(workflow, f"body__{i}", {"i": i})
    loop = workflow.tasks[0]
    assert sorted(k for k in loop.output_data if k.isdigit()) == ["3", "4"]
    assert [t.reference_task_name for t in workflow.tasks if t.reference_task_name.startswith("body")] == [
        "body__3",
        "body__4",
    ]


def test_a_broken_loop_condition_fails_the_loop_terminally() -> None:
    definition = msgspec.json.decode(msgspec.json.encode(LOOP))
    definition["tasks"][0]["loopCondition"] = "$.nothing.here"
    workflow = complete(run(definition, {"times": 2}), "body__1")
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.tasks[0].status is TaskStatus.FAILED_WITH_TERMINAL_ERROR


def test_terminate_ends_the_workflow_with_its_status_reason_and_output() -> None:
    definition = {
        "name": "term",
        "tasks": [
            {"name": "t", "taskReferenceName": "t", "type": "TERMINATE",
             "inputParameters": {"terminationStatus": "COMPLETED", "terminationReason": "early",
                                 "workflowOutput": {"why": "${workflow.input.why}"}}},
            simple("never"),
        ],
    }  # fmt: skip
    workflow = run(definition, {"why": "done"})
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.reason_for_incompletion == "early"
    assert workflow.output == {"why": "done"}
    assert trail(workflow) == [("t", "COMPLETED")]


def test_terminate_inside_a_fork_branch_cancels_the_other_branch() -> None:
    definition = {
        "name": "ft",
        "tasks": [
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN", "forkTasks": [
                [simple("work")],
                [{"name": "stop", "taskReferenceName": "stop", "type": "TERMINATE",
                  "inputParameters": {"terminationStatus": "FAILED", "workflowOutput": "nope"}}],
            ]},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["work", "stop"]},
        ],
    }  # fmt: skip
    workflow = run(definition)
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.output == {"output": "nope"}
    assert dict(trail(workflow)) == {"fork": "COMPLETED", "work": "CANCELED", "stop": "COMPLETED", "join": "CANCELED"}


def test_set_variable_inline_lambda_and_jq_run_inside_the_decision() -> None:
    definition = {
        "name": "sys",
        "tasks": [
            {"name": "set", "taskReferenceName": "set", "type": "SET_VARIABLE", "inputParameters": {"count": 2}},
            {"name": "inline", "taskReferenceName": "inline", "type": "INLINE",
             "inputParameters": {"evaluatorType": "javascript", "n": "${workflow.variables.count}",
                                 "expression": "(function () { return {double: $.n * 2}; })();"}},
            {"name": "lambda", "taskReferenceName": "lambda", "type": "LAMBDA",
             "scriptExpression": "return $.v + 1;", "inputParameters": {"v": "${inline.output.result.double}"}},
            {"name": "jq", "taskReferenceName": "jq", "type": "JSON_JQ_TRANSFORM",
             "inputParameters": {"items": [1, 2, 3], "queryExpression": ".items | map(. * 10) | .[]"}},
            {"name": "noop", "taskReferenceName": "noop", "type": "NOOP"},
        ],
        "outputParameters": {"vars": "${workflow.variables}", "lambda": "${lambda.output.result}",
                             "jq": "${jq.output}"},
    }  # fmt: skip
    workflow = run(definition)
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.variables == {"count": 2}
    assert workflow.tasks[1].output_data == {"result": {"double": 4}}
    assert workflow.output == {"vars": {"count": 2}, "lambda": 5, "jq": {"result": 10, "resultList": [10, 20, 30]}}
    assert [t.status for t in workflow.tasks] == [TaskStatus.COMPLETED] * 5


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("while (true) {}", "time limit"),
        ("var a = []; while (true) { a.push(new Array(100000).fill(1)); }", "memory limit"),
        ("std.open('/etc/passwd', 'r')", "std is not defined"),
        ("require('fs')", "require is not defined"),
    ],
)
def test_the_script_sandbox_fails_the_task_with_a_clear_reason(expression: str, reason: str) -> None:
    from partita.actors.decider import scripts

    limits = scripts.ScriptLimits(time_seconds=0.2)
    with pytest.raises(scripts.ScriptError, match=reason):
        scripts.evaluate_javascript(expression, {}, now=NOW, limits=limits)


def test_a_sandboxed_script_failure_fails_the_inline_task_with_its_error_output() -> None:
    definition = {
        "name": "oops",
        "tasks": [
            {"name": "i", "taskReferenceName": "i", "type": "INLINE",
             "inputParameters": {"expression": "process.exit(1)"}, "optional": True},
            simple("next"),
        ],
    }  # fmt: skip
    workflow = run(definition)
    inline = workflow.tasks[0]
    assert inline.status is TaskStatus.COMPLETED_WITH_ERRORS  # optional: the workflow goes on
    assert "process is not defined" in str(inline.output_data["error"])
    assert pending(workflow) == ["next"]


def test_scripts_see_a_frozen_clock_so_replays_decide_the_same() -> None:
    definition = {
        "name": "clock",
        "tasks": [{"name": "i", "taskReferenceName": "i", "type": "INLINE",
                   "inputParameters": {"expression": "[Date.now(), Math.random()]"}}],
    }  # fmt: skip
    first, second = run(definition), run(definition)
    assert first.output == second.output
    assert first.output["result"][0] == NOW  # type: ignore[index]


def test_set_variable_over_the_size_limit_fails_terminally() -> None:
    definition = {
        "name": "big",
        "tasks": [{"name": "s", "taskReferenceName": "s", "type": "SET_VARIABLE",
                   "inputParameters": {"blob": "${workflow.input.blob}"}}],
    }  # fmt: skip
    workflow = run(definition, {"blob": "x" * 300_000})
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.tasks[0].status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert workflow.variables == {}


def test_dynamic_resolves_the_task_name_from_its_input() -> None:
    definition = {
        "name": "dyn",
        "tasks": [{"name": "dyn", "taskReferenceName": "dyn", "type": "DYNAMIC", "dynamicTaskNameParam": "which",
                   "inputParameters": {"which": "${workflow.input.which}", "x": 1}}],
    }  # fmt: skip
    workflow = run(definition, {"which": "resize_image"})
    (task,) = workflow.tasks
    assert (task.task_type, task.reference_task_name, task.status) == ("resize_image", "dyn", TaskStatus.SCHEDULED)
    missing = run(definition, {})
    assert missing.status is WorkflowStatus.FAILED
    assert "Cannot map a dynamic task" in (missing.tasks[0].reason_for_incompletion or "")


def test_exclusive_join_takes_the_output_of_the_branch_that_ran() -> None:
    definition = {
        "name": "xj",
        "tasks": [
            {"name": "d", "taskReferenceName": "d", "type": "SWITCH", "evaluatorType": "value-param",
             "expression": "k", "inputParameters": {"k": "${workflow.input.k}"},
             "decisionCases": {"a": [simple("a")], "b": [simple("b")]}},
            {"name": "xj", "taskReferenceName": "xj", "type": "EXCLUSIVE_JOIN", "joinOn": ["a", "b"]},
        ],
    }  # fmt: skip
    workflow = complete(run(definition, {"k": "b"}), "b", {"from": "b"})
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.tasks[-1].output_data == {"from": "b"}


def test_worker_tasks_in_branches_are_dispatched_once_each() -> None:
    snapshot = snapshot_definition(msgspec.convert(FORK, WorkflowDef), {"a1": TaskDef(name="a1")})
    request = StartWorkflow(workflow_id="wf", name="fork")
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW)
    dispatched = [e.task.reference_task_name for e in decision.effects if isinstance(e, DispatchTask)]
    assert dispatched == ["a1", "b1"]


def test_wait_for_a_duration_is_in_progress_with_a_durable_timer_and_completes_when_it_fires() -> None:
    from partita.schemas import ScheduleTimer, TimerFired

    definition = {"name": "w", "tasks": [{"name": "w", "taskReferenceName": "w", "type": "WAIT",
                                          "inputParameters": {"duration": "1h 30m"}}, simple("after")]}  # fmt: skip
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), {})
    decision = decide(
        None, WorkflowStartRequested(request=StartWorkflow(workflow_id="wf", name="w"), definition=snapshot), NOW
    )
    workflow = decision.workflow
    assert workflow is not None
    assert trail(workflow) == [("w", "IN_PROGRESS")]
    (timer,) = decision.effects
    assert isinstance(timer, ScheduleTimer)
    assert timer.at == NOW + 5_400_000
    fired = decide(workflow, TimerFired(workflow_id="wf", task_id=workflow.tasks[0].task_id), NOW + 5_400_000)
    assert fired.workflow is not None
    assert trail(fired.workflow) == [("w", "COMPLETED"), ("after", "SCHEDULED")]
    late = decide(fired.workflow, TimerFired(workflow_id="wf", task_id=workflow.tasks[0].task_id), NOW + 5_400_001)
    assert late.workflow is None  # a timer for a finished task changes nothing


def test_wait_until_a_date_and_wait_without_either_until_completed_from_outside() -> None:
    from partita.schemas import ScheduleTimer, UpdateTask

    until = {"name": "u", "tasks": [{"name": "w", "taskReferenceName": "w", "type": "WAIT",
                                     "inputParameters": {"until": "2030-01-02 03:04 +01:00"}}]}  # fmt: skip
    snapshot = snapshot_definition(msgspec.convert(until, WorkflowDef), {})
    decision = decide(
        None, WorkflowStartRequested(request=StartWorkflow(workflow_id="wf", name="u"), definition=snapshot), NOW
    )
    (timer,) = decision.effects
    assert isinstance(timer, ScheduleTimer)
    assert timer.at == 1893549840000  # 2030-01-02T02:04:00Z
    forever = run({"name": "f", "tasks": [{"name": "w", "taskReferenceName": "w", "type": "WAIT"},
                                          {"name": "h", "taskReferenceName": "h", "type": "HUMAN"}]})  # fmt: skip
    assert trail(forever) == [("w", "IN_PROGRESS")]
    update = UpdateTask(workflow_id="wf", task_ref_name="w", status=TaskResultStatus.COMPLETED, output_data={"ok": 1})
    after = decide(forever, update, NOW + 5)
    assert after.workflow is not None
    assert trail(after.workflow) == [("w", "COMPLETED"), ("h", "IN_PROGRESS")]
    assert after.workflow.tasks[0].output_data == {"ok": 1}
    human = UpdateTask(
        workflow_id="wf", task_ref_name="h", status=TaskResultStatus.FAILED, reason_for_incompletion="no"
    )
    failed = decide(after.workflow, human, NOW + 6)
    assert failed.workflow is not None
    assert failed.workflow.status is WorkflowStatus.FAILED
    nobody = decide(
        after.workflow, UpdateTask(workflow_id="wf", task_ref_name="zzz", status=TaskResultStatus.COMPLETED), NOW
    )
    assert nobody.workflow is None
    assert nobody.note == "Found no running task zzz of workflow wf to update"


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ({"duration": "5s", "until": "2030-01-01"}, "both"),
        ({"duration": "five minutes"}, "cannot parse duration"),
        ({"until": "tomorrow"}, "cannot parse until"),
        ({"until": "2030-01-01 10:00 Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_bad_wait_inputs_fail_the_task_terminally(inputs: dict[str, object], reason: str) -> None:
    workflow = run({"name": "bad", "tasks": [{"name": "w", "taskReferenceName": "w", "type": "WAIT",
                                              "inputParameters": inputs}]})  # fmt: skip
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.tasks[0].status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert reason in (workflow.tasks[0].reason_for_incompletion or "")


def test_durations_parse_like_conductors() -> None:
    from partita.actors.decider.waits import parse_duration

    assert parse_duration("1d 2h 3m 4s") == 93784
    assert parse_duration("30 seconds") == 30
    assert parse_duration("2 hours") == 7200
    assert parse_duration("90 mins") == 5400


def test_a_sub_workflow_starts_its_child_and_mirrors_how_it_ends() -> None:
    from partita.schemas import ChildFinished, SendCommand, StartChild

    definition = {
        "name": "parent",
        "tasks": [{"name": "child", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                   "inputParameters": {"x": "${workflow.input.x}"},
                   "subWorkflowParam": {"name": "kid", "version": 2}}],
    }  # fmt: skip
    decision = start(definition, {"x": 1})
    parent = decision.workflow
    assert parent is not None
    (effect,) = decision.effects
    assert isinstance(effect, StartChild)
    child_id = effect.request.workflow_id
    assert (effect.request.name, effect.request.version, effect.request.input) == ("kid", 2, {"x": 1})
    assert (effect.request.parent_workflow_id, effect.request.parent_workflow_task_id) == (
        "wf",
        parent.tasks[0].task_id,
    )
    assert parent.tasks[0].status is TaskStatus.IN_PROGRESS
    assert parent.tasks[0].sub_workflow_id == child_id
    assert start(definition, {"x": 1}).effects == decision.effects  # the child id is deterministic

    done = ChildFinished(workflow_id="wf", task_id=parent.tasks[0].task_id, child_workflow_id=child_id,
                         status=WorkflowStatus.COMPLETED, output={"y": 2})  # fmt: skip
    finished = decide(parent, done, NOW + 5)
    assert finished.workflow is not None
    assert finished.workflow.status is WorkflowStatus.COMPLETED
    assert finished.workflow.output == {"subWorkflowId": child_id, "y": 2}

    terminated = msgspec.structs.replace(done, status=WorkflowStatus.TERMINATED, reason_for_incompletion="stop")
    mirrored = decide(parent, terminated, NOW + 5)
    assert mirrored.workflow is not None
    assert mirrored.workflow.tasks[0].status is TaskStatus.CANCELED
    assert mirrored.workflow.status is WorkflowStatus.TERMINATED

    from partita.schemas import TerminateWorkflow

    stopped = decide(parent, TerminateWorkflow(workflow_id="wf", reason="operator"), NOW + 5)
    assert stopped.workflow is not None
    assert stopped.workflow.status is WorkflowStatus.TERMINATED
    commands = [e.command for e in stopped.effects if isinstance(e, SendCommand)]
    assert commands == [
        TerminateWorkflow(workflow_id=child_id, reason="Parent workflow has been terminated with reason: operator")
    ]


def test_a_child_reports_to_its_parent_when_it_ends() -> None:
    from partita.schemas import ChildFinished, SendCommand

    snapshot = snapshot_definition(msgspec.convert({"name": "kid", "tasks": [simple("k")]}, WorkflowDef), {})
    request = StartWorkflow(workflow_id="child", name="kid", parent_workflow_id="p", parent_workflow_task_id="t")
    child = decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW).workflow
    assert child is not None
    assert child.parent_workflow_id == "p"
    ended = complete(child, "k", {"v": 1})
    ended_effects = decide(
        child,
        TaskResultReceived(
            result=TaskResult(workflow_instance_id="child", task_id=child.tasks[0].task_id,
                              status=TaskResultStatus.COMPLETED, output_data={"v": 1}),
            subject_task_type="k",
        ),
        NOW + 1,
    ).effects  # fmt: skip
    assert ended.status is WorkflowStatus.COMPLETED
    reports = [e.command for e in ended_effects if isinstance(e, SendCommand)]
    assert reports == [ChildFinished(workflow_id="p", task_id="t", child_workflow_id="child",
                                     status=WorkflowStatus.COMPLETED, output={"v": 1})]  # fmt: skip


def test_start_workflow_fires_and_forgets_with_inherited_correlation_and_domains() -> None:
    from partita.schemas import StartChild

    definition = {
        "name": "starter",
        "tasks": [{"name": "go", "taskReferenceName": "go", "type": "START_WORKFLOW",
                   "inputParameters": {"startWorkflow": {"name": "other", "input": {"a": "${workflow.input.a}"}}}}],
    }  # fmt: skip
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), {})
    request = StartWorkflow(workflow_id="wf", name="starter", input={"a": 5}, correlation_id="c-1",
                            task_to_domain={"*": "blue"})  # fmt: skip
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW)
    assert decision.workflow is not None
    assert decision.workflow.status is WorkflowStatus.COMPLETED
    started = next(e for e in decision.effects if isinstance(e, StartChild)).request
    assert (started.name, started.input, started.correlation_id, started.task_to_domain) == (
        "other",
        {"a": 5},
        "c-1",
        {"*": "blue"},
    )
    assert decision.workflow.tasks[0].output_data == {"workflowId": started.workflow_id}
    assert started.parent_workflow_id is None  # fire and forget: no link back


def test_a_dynamic_fork_over_a_list_forks_one_task_per_item_and_the_join_waits_for_all() -> None:
    definition = {
        "name": "fan",
        "tasks": [
            {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"forkTaskName": "resize", "forkTaskInputs": "${workflow.input.images}"}},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
            simple("after", inputParameters={"all": "${join.output}"}),
        ],
    }  # fmt: skip
    workflow = run(definition, {"images": [{"url": "a"}, {"url": "b"}]})
    assert trail(workflow) == [
        ("fan", "COMPLETED"), ("_resize_0", "SCHEDULED"), ("_resize_1", "SCHEDULED"), ("join", "IN_PROGRESS")
    ]  # fmt: skip
    assert workflow.tasks[0].input_data["forkedTasks"] == ["_resize_0", "_resize_1"]
    assert workflow.tasks[2].input_data == {"url": "b", "__index": 1}
    assert workflow.tasks[2].task_type == "resize"
    workflow = complete(workflow, "_resize_1", {"w": 2})
    assert pending(workflow) == ["_resize_0"]
    workflow = complete(workflow, "_resize_0", {"w": 1})
    assert workflow.tasks[-1].input_data == {"all": {"_resize_0": {"w": 1}, "_resize_1": {"w": 2}}}


def test_a_dynamic_fork_of_given_tasks_with_their_inputs_and_a_sub_workflow_fan_out() -> None:
    definition = {
        "name": "given",
        "tasks": [
            {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
             "dynamicForkTasksParam": "tasks", "dynamicForkTasksInputParamName": "inputs",
             "inputParameters": {"tasks": "${workflow.input.tasks}", "inputs": "${workflow.input.inputs}"}},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
        ],
    }  # fmt: skip
    tasks = [{"name": "a", "taskReferenceName": "a1"}, {"name": "kid", "taskReferenceName": "k1",
             "type": "SUB_WORKFLOW", "subWorkflowParam": {"name": "kid"}}]  # fmt: skip
    workflow = run(definition, {"tasks": tasks, "inputs": {"a1": {"x": 1}, "k1": {"y": 2}}})
    assert trail(workflow) == [
        ("fan", "COMPLETED"),
        ("a1", "SCHEDULED"),
        ("k1", "IN_PROGRESS"),
        ("join", "IN_PROGRESS"),
    ]
    assert workflow.tasks[1].input_data == {"x": 1}
    assert workflow.tasks[2].input_data == {"y": 2}
    bad = run(definition, {"tasks": tasks, "inputs": [1]})
    assert bad.status is WorkflowStatus.FAILED
    # Conductor's mapper throws TerminateWorkflowException: FAILED, and no FORK recorded (DynamicForkJoinSpec).
    assert bad.tasks == ()
    assert "Input to the dynamically forked tasks is not a map" in (bad.reason_for_incompletion or "")
    per_branch = run(definition, {"tasks": tasks, "inputs": {"a1": "v1", "k1": {"y": 2}}})
    assert (per_branch.status, per_branch.tasks) == (WorkflowStatus.FAILED, ())
    assert (per_branch.reason_for_incompletion or "").startswith(
        "Tasks could not be dynamically forked due to invalid input"
    )


def test_do_while_over_items_runs_once_per_item_with_loop_item_and_index() -> None:
    definition = {
        "name": "each",
        "tasks": [{"name": "each", "taskReferenceName": "each", "type": "DO_WHILE", "items": "${workflow.input.xs}",
                   "loopOver": [simple("use", inputParameters={"item": "${each.output.loopItem}",
                                                               "index": "${each.output.loopIndex}"})]}],
    }  # fmt: skip
    workflow = run(definition, {"xs": ["a", "b", "c"]})
    for index, item in enumerate(["a", "b", "c"]):
        assert pending(workflow) == [f"use__{index + 1}"]
        assert workflow.tasks[-1].input_data == {"item": item, "index": index}
        workflow = complete(workflow, f"use__{index + 1}")
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.tasks[0].output_data["iteration"] == 3
    empty = run(definition, {"xs": []})
    assert empty.status is WorkflowStatus.COMPLETED
    assert trail(empty) == [("each", "COMPLETED")]
    wrong = run(definition, {"xs": "abc"})
    assert wrong.status is WorkflowStatus.FAILED
    assert "must resolve to a list" in (wrong.tasks[0].reason_for_incompletion or "")


def test_a_fork_branch_its_join_does_not_wait_for_still_finishes_before_the_workflow() -> None:
    definition = {
        "name": "loose",
        "tasks": [
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
             "forkTasks": [[simple("a")], [simple("b"), simple("c")]]},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["a"]},
        ],
    }  # fmt: skip
    workflow = complete(run(definition), "a")
    assert workflow.status is WorkflowStatus.RUNNING  # Conductor: every task must be terminal
    workflow = complete(complete(workflow, "b"), "c")
    assert workflow.status is WorkflowStatus.COMPLETED


def test_a_permissive_failure_lets_the_other_branches_end_then_fails_the_join_and_the_workflow() -> None:
    """ForkJoinSpec's permissive flow: the JOIN waits for every joined task to end, then fails (Conductor's
    Join.execute), and the workflow fails with it: the task after the JOIN is never scheduled."""
    definition = {
        "name": "perm",
        "tasks": [
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN",
             "forkTasks": [[simple("a", permissive=True, retryCount=0)], [simple("b")]]},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["a", "b"]},
            simple("after"),
        ],
    }  # fmt: skip
    workflow = complete(run(definition), "a", status=TaskResultStatus.FAILED, reason="bad input")
    assert workflow.status is WorkflowStatus.RUNNING
    assert dict(trail(workflow))["join"] == "IN_PROGRESS"
    assert pending(workflow) == ["b"]
    workflow = complete(workflow, "b")
    assert workflow.status is WorkflowStatus.FAILED
    assert dict(trail(workflow))["join"] == "FAILED"
    assert "after" not in dict(trail(workflow))
    (join,) = [t for t in workflow.tasks if t.reference_task_name == "join"]
    assert join.reason_for_incompletion == "bad input"  # the joined tasks' reasons
    assert workflow.reason_for_incompletion == f"Task {join.task_id} failed with status: FAILED and reason: 'bad input'"
    assert "a" in workflow.failed_reference_task_names


def test_loop_conditions_follow_conductors_truthiness_and_see_fresh_inputs_and_latest_outputs() -> None:
    definition = {
        "name": "more",
        "tasks": [{"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE",
                   "inputParameters": {"more": "${body.output.more}"}, "loopCondition": "$.more",
                   "loopOver": [simple("body")]}],
    }  # fmt: skip
    workflow = complete(run(definition), "body__1", {"more": True})
    assert pending(workflow) == ["body__2"]  # $.more re-resolved from the body's output
    assert complete(workflow, "body__2", {"more": "true"}).status is WorkflowStatus.COMPLETED  # a string: false
    counted = complete(run(definition), "body__1", {"more": 2})
    assert pending(counted) == ["body__2"]  # a number > 0: true
    assert complete(counted, "body__2", {"more": -1}).status is WorkflowStatus.COMPLETED


def test_a_retry_inside_a_dynamic_fork_in_a_loop_keeps_its_own_iterations_input() -> None:
    definition = {
        "name": "dynloop",
        "tasks": [{"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE",
                   "loopCondition": "$.loop.iteration < 2", "loopOver": [
                       {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
                        "dynamicForkTasksParam": "tasks", "dynamicForkTasksInputParamName": "inputs",
                        "inputParameters": {"tasks": [{"name": "w", "taskReferenceName": "w"}],
                                            "inputs": {"w": {"v": "${loop.output.iteration}"}}}},
                       {"name": "join", "taskReferenceName": "join", "type": "JOIN"}]}],
    }  # fmt: skip
    workflow = complete(run(definition), "w__1")
    assert workflow.tasks[-2].input_data == {"v": 2}  # w__2
    workflow = complete(workflow, "w__2", status=TaskResultStatus.FAILED)
    retry = workflow.tasks[-1]
    assert (retry.reference_task_name, retry.status, retry.input_data) == ("w__2", TaskStatus.SCHEDULED, {"v": 2})


def test_registered_task_defs_apply_to_system_tasks_too() -> None:
    call = {"name": "call", "taskReferenceName": "call", "type": "HTTP",
            "inputParameters": {"http_request": {"uri": "http://127.0.0.1:1"}}}  # fmt: skip
    registered = {"call": TaskDef(name="call", retry_count=2, retry_delay_seconds=0)}
    snapshot = snapshot_definition(msgspec.convert({"name": "h", "tasks": [call]}, WorkflowDef), registered)
    request = StartWorkflow(workflow_id="wf", name="h")
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW)
    assert decision.workflow is not None
    retried = complete(decision.workflow, "call", status=TaskResultStatus.FAILED)
    assert trail(retried) == [("call", "FAILED"), ("call", "SCHEDULED")]


def test_scripts_cannot_read_the_real_clock_through_date() -> None:
    from partita.actors.decider.scripts import evaluate_javascript

    assert evaluate_javascript("new Date().getTime()", {}, now=NOW) == NOW
    assert evaluate_javascript("new Date(0).getTime()", {}, now=NOW) == 0
    assert "2023" in str(evaluate_javascript("Date()", {}, now=NOW))
    one = evaluate_javascript("Math.random()", {}, now=NOW, seed="task-1")
    assert one == evaluate_javascript("Math.random()", {}, now=NOW, seed="task-1")
    assert one != evaluate_javascript("Math.random()", {}, now=NOW, seed="task-2")


def test_switches_nest_and_a_start_delay_defers_the_dispatch() -> None:
    definition = {
        "name": "nest",
        "tasks": [{"name": "outer", "taskReferenceName": "outer", "type": "SWITCH", "evaluatorType": "value-param",
                   "expression": "a", "inputParameters": {"a": "x"},
                   "decisionCases": {"x": [{"name": "inner", "taskReferenceName": "inner", "type": "SWITCH",
                                            "evaluatorType": "value-param", "expression": "b",
                                            "inputParameters": {"b": "y"},
                                            "decisionCases": {"y": [simple("late", startDelay=30)]}}]}}],
    }  # fmt: skip
    decision = start(definition)
    assert decision.workflow is not None
    assert trail(decision.workflow) == [("outer", "COMPLETED"), ("inner", "COMPLETED"), ("late", "SCHEDULED")]
    (dispatch,) = decision.effects
    assert isinstance(dispatch, DispatchTask)
    assert dispatch.not_before == NOW + 30_000
    assert decision.workflow.tasks[-1].start_delay_in_seconds == 30


def test_with_the_nodes_key_a_child_id_is_deterministic_but_nobody_else_can_compute_it() -> None:
    """Without a key a child's id is uuid5 of the parent's id and the task's, which anyone who can read the
    parent can compute, and start a workflow of that id first; sealed, it is the same on every node only."""
    import uuid

    from partita.actors.decider.operators import _CHILD_NAMESPACE
    from partita.schemas import StartChild

    definition = {"name": "parent", "tasks": [{"name": "child", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                                               "subWorkflowParam": {"name": "kid"}}]}  # fmt: skip
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), {})
    requested = WorkflowStartRequested(request=StartWorkflow(workflow_id="wf", name="parent"), definition=snapshot)

    def child_id(key: bytes) -> tuple[str, str]:
        decision = decide(None, requested, NOW, id_key=key)
        assert decision.workflow is not None
        (effect,) = decision.effects
        assert isinstance(effect, StartChild)
        return effect.request.workflow_id, decision.workflow.tasks[0].task_id

    plain, task_id = child_id(b"")
    assert plain == str(uuid.uuid5(_CHILD_NAMESPACE, f"wf/{task_id}"))  # what an attacker computes
    sealed, _ = child_id(b"the nodes' key")
    assert sealed != plain
    assert child_id(b"the nodes' key")[0] == sealed  # a replay on any node starts the same child
    assert child_id(b"another deployment")[0] != sealed


def test_scripts_read_lists_as_conductor_hands_them_java_lists() -> None:
    from partita.actors.decider.scripts import evaluate_javascript

    bindings = {"list": ["a", "b"], "empty": []}
    assert evaluate_javascript("$.list.get(1) + $.list.size()", bindings, now=NOW) == "b2"
    assert evaluate_javascript(
        "[$.empty.isEmpty(), $.list.contains('a'), $.list.contains('z')]", bindings, now=NOW
    ) == [
        True,
        True,
        False,
    ]
    assert evaluate_javascript("Object.keys($.list).join()", bindings, now=NOW) == "0,1"  # not enumerable
