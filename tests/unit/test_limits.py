"""Payload and definition limits: the Limits struct, the depth measures, registration and the decider."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from partita.actors.decider import Decision, decide, snapshot_definition
from partita.schemas import (
    ChildFinished,
    DefinitionError,
    DispatchTask,
    Limits,
    PayloadError,
    RerunWorkflow,
    SkipTask,
    StartWorkflow,
    TaskDef,
    TaskResult,
    TaskResultReceived,
    TaskResultStatus,
    TaskStatus,
    UpdateTask,
    Workflow,
    WorkflowDef,
    WorkflowStartRequested,
    WorkflowStatus,
    WorkflowTask,
    configured_limits,
    json_depth,
    json_text_depth,
    parse_definitions,
    prune_json,
    validate,
)
from partita.schemas.limits import ENV_VARS, MAX_SAFE_DEPTH

NOW = 1_700_000_000_000
HOSTILE = 100_000  # levels: far beyond the interpreter's recursion limit


def nested(levels: int) -> dict[str, object]:
    """A map nested exactly ``levels`` deep (``{}`` is 1), built without recursion."""
    value: dict[str, object] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_text(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def simple(ref: str, **fields: object) -> dict[str, object]:
    return {"name": fields.pop("name", ref), "taskReferenceName": ref, **fields}


def start(
    definition: Mapping[str, object], workflow_input: dict[str, object] | None = None, limits: Limits | None = None
) -> Workflow:
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), {})
    request = StartWorkflow(workflow_id="wf", name=str(definition["name"]), input=workflow_input or {})
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW, limits=limits)
    assert decision.workflow is not None
    return decision.workflow


def report(
    workflow: Workflow,
    ref: str,
    output: dict[str, object] | None = None,
    status: TaskResultStatus = TaskResultStatus.COMPLETED,
    limits: Limits | None = None,
) -> Decision:
    task = next(t for t in reversed(workflow.tasks) if t.reference_task_name == ref)
    result = TaskResult(
        workflow_instance_id=workflow.workflow_id, task_id=task.task_id, status=status, output_data=output or {}
    )
    event = TaskResultReceived(result=result, subject_task_type=task.task_type)
    return decide(workflow, event, NOW + 1, limits=limits)


def complete(
    workflow: Workflow, ref: str, output: dict[str, object] | None = None, limits: Limits | None = None
) -> Workflow:
    decision = report(workflow, ref, output, limits=limits)
    assert decision.workflow is not None, decision.note
    return decision.workflow


def trail(workflow: Workflow) -> list[tuple[str, str]]:
    return [(t.reference_task_name, str(t.status)) for t in workflow.tasks]


# --- the struct ----------------------------------------------------------------------------------


def test_the_defaults_are_the_documented_ones() -> None:
    assert Limits() == Limits(
        max_definition_bytes=1024 * 1024,
        max_definition_depth=128,
        max_definition_tasks=1000,
        max_payload_depth=64,
        max_loop_iterations=1000,
        max_fork_width=1000,
        max_workflow_tasks=10_000,
    )
    assert Limits().max_message_depth == 132
    assert set(ENV_VARS) == {field.name for field in msgspec.structs.fields(Limits)}


def test_the_environment_overrides_each_limit_by_its_own_variable() -> None:
    environ = {name: str(index + 10) for index, name in enumerate(ENV_VARS.values())}
    limits = Limits.from_env(environ)
    assert [getattr(limits, field) for field in ENV_VARS] == list(range(10, 10 + len(ENV_VARS)))
    assert Limits.from_env({"PARTITA_LIMIT_WORKFLOW_TASKS": " 20_000 "}).max_workflow_tasks == 20_000
    assert Limits.from_env({"PARTITA_LIMIT_FORK_WIDTH": ""}) == Limits()
    assert Limits.from_env({}) == Limits()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PARTITA_LIMIT_FORK_WIDTH": "lots"}, "PARTITA_LIMIT_FORK_WIDTH must be a whole number, got 'lots'"),
        ({"PARTITA_LIMIT_LOOP_ITERATIONS": "0"}, "PARTITA_LIMIT_LOOP_ITERATIONS: max_loop_iterations must be at least"),
        ({"PARTITA_LIMIT_PAYLOAD_DEPTH": "513"}, "PARTITA_LIMIT_PAYLOAD_DEPTH: max_payload_depth must be at most 512"),
    ],
)
def test_a_bad_override_is_refused_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits.from_env(environ)


def test_depth_limits_cannot_be_raised_past_what_the_decoders_survive() -> None:
    assert Limits(max_payload_depth=MAX_SAFE_DEPTH).max_payload_depth == MAX_SAFE_DEPTH
    with pytest.raises(ValueError, match="max_definition_depth must be at most"):
        Limits(max_definition_depth=MAX_SAFE_DEPTH + 1)


def test_this_process_uses_the_limits_of_its_environment() -> None:
    assert configured_limits() == Limits.from_env(os.environ)


# --- measuring depth -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("[{", 0),
        (None, 0),
        ({}, 1),
        ([], 1),
        ({"a": 1, "b": "x"}, 1),
        ({"a": [1, {"b": []}]}, 4),
        ([[], [[[]]], {}], 4),
        ((1, (2,)), 2),
    ],
)
def test_json_depth_counts_levels_of_maps_and_lists(value: object, depth: int) -> None:
    assert json_depth(value) == depth
    assert json_text_depth(json.dumps(value)) == depth


def test_json_depth_measures_structs_as_the_json_they_encode_to() -> None:
    definition = msgspec.convert({"name": "w", "tasks": [simple("a", inputParameters={"x": {"y": 1}})]}, WorkflowDef)
    assert json_depth(definition) == 5
    assert json_text_depth(msgspec.json.encode(definition)) == 5


def test_a_hostile_depth_is_measured_without_recursion() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(HOSTILE - 1):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    assert json_depth(deep) == HOSTILE
    assert json_depth(nested(HOSTILE)) == HOSTILE
    assert json_text_depth(b"[" * HOSTILE + b"]" * HOSTILE) == HOSTILE
    assert json_text_depth(nested_text(HOSTILE)) == HOSTILE


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'{"a": "[[[{{{"}', 1),
        (b'{"a": "quote \\" then [[["}', 1),
        (b'{"a": "backslash \\\\", "b": [[1]]}', 3),
        (b'{"a": "\\\\\\"[[", "b": []}', 2),
        (b'["\\u005c", [[]]]', 3),
        (b"  7  ", 0),
        (b"[[[", 3),  # malformed: measured anyway, refused by the decoder afterwards
    ],
)
def test_json_text_depth_ignores_brackets_inside_strings(text: bytes, depth: int) -> None:
    assert json_text_depth(text) == depth


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\a'), children),
    max_leaves=30,
)


@given(JSON)
def test_json_text_depth_agrees_with_the_decoded_depth(value: object) -> None:
    text = json.dumps(value)
    assert json_text_depth(text) == json_depth(json.loads(text))
    assert json_text_depth(json.dumps(value, indent=2)) == json_depth(value)


def test_msgspec_raises_recursion_error_not_decode_error_on_deep_json() -> None:
    """Why depth is measured before decoding: msgspec's decoders and encoders recurse per level and raise
    RecursionError (outside the DecodeError a caller catches) near the interpreter's recursion limit."""
    deep = b"[" * HOSTILE + b"]" * HOSTILE
    with pytest.raises(RecursionError):
        msgspec.json.decode(deep)
    with pytest.raises(RecursionError):
        msgspec.msgpack.decode(b"\x91" * HOSTILE + b"\xc0")
    with pytest.raises(RecursionError):
        msgspec.json.encode(nested(HOSTILE))
    msgspec.json.decode(nested_text(MAX_SAFE_DEPTH + 4))  # the deepest a limit allows decodes fine


def test_prune_json_keeps_the_top_of_a_message_too_deep_to_decode() -> None:
    start = b'{"workflowId": "w-1", "input": {"x": ' + b"[" * HOSTILE + b"]" * HOSTILE + b'}, "name": "n"}'
    pruned = prune_json(start, 2)
    assert pruned == b'{"workflowId": "w-1", "input": {"x": null}, "name": "n"}'
    assert msgspec.json.decode(pruned) == {"workflowId": "w-1", "input": {"x": None}, "name": "n"}
    assert prune_json(b'{"a": "[[[", "b": [[1], {"c": [2]}], "d": 3}', 2) == b'{"a": "[[[", "b": [null, null], "d": 3}'
    assert prune_json(b"[1, 2]", 2) == b"[1, 2]"
    assert prune_json(b"[[[[[[", 2) == b"[[null"  # unterminated: cut, no longer deep, still malformed


# --- registration --------------------------------------------------------------------------------


def one_task(**fields: object) -> dict[str, object]:
    return {"name": "w", "tasks": [simple("a", **fields)]}


def test_a_definition_over_the_size_limit_is_refused_at_parse_with_its_size() -> None:
    definition = one_task(description="x" * 500)
    size = len(msgspec.json.encode(definition))
    text = json.dumps(definition, indent=4).encode()  # indentation does not count
    assert len(parse_definitions(text, limits=Limits(max_definition_bytes=size))) == 1
    with pytest.raises(DefinitionError) as refused:
        parse_definitions(text, source="w.json", limits=Limits(max_definition_bytes=size - 1))
    assert refused.value.problems == [
        f"$ ('w'): the definition is {size} bytes; the limit is {size - 1} bytes (PARTITA_LIMIT_DEFINITION_BYTES)"
    ]
    with pytest.raises(DefinitionError, match=r"\[1\] \('w'\): the definition is"):
        parse_definitions(json.dumps([{"name": "t"}, definition]), limits=Limits(max_definition_bytes=size - 1))


def test_a_definition_over_the_size_limit_is_refused_by_validation_too() -> None:
    definition = msgspec.convert(one_task(description="x" * 500), WorkflowDef)
    size = len(msgspec.json.encode(definition))
    validate(definition, Limits(max_definition_bytes=size))
    with pytest.raises(DefinitionError, match=f"the definition is {size} bytes; the limit is {size - 1} bytes"):
        validate(definition, Limits(max_definition_bytes=size - 1))
    with pytest.raises(DefinitionError, match="the definition is"):
        validate(TaskDef(name="t", description="x" * 500), Limits(max_definition_bytes=100))


def test_the_number_of_tasks_counts_nested_ones() -> None:
    definition = msgspec.convert(
        {"name": "w", "tasks": [
            {"name": "f", "taskReferenceName": "f", "type": "FORK_JOIN",
             "forkTasks": [[simple("a"), simple("b")], [simple("c")]]},
            {"name": "j", "taskReferenceName": "j", "type": "JOIN", "joinOn": ["b", "c"]},
        ]},
        WorkflowDef,
    )  # fmt: skip
    validate(definition, Limits(max_definition_tasks=5))
    with pytest.raises(DefinitionError) as refused:
        validate(definition, Limits(max_definition_tasks=4))
    assert refused.value.problems == [
        "the definition has 5 tasks, nested ones included; the limit is 4 (PARTITA_LIMIT_DEFINITION_TASKS)"
    ]


def test_input_parameters_nested_too_deeply_are_refused_with_their_path() -> None:
    validate(msgspec.convert(one_task(inputParameters=nested(64)), WorkflowDef))
    with pytest.raises(DefinitionError) as refused:
        validate(msgspec.convert(one_task(inputParameters=nested(65)), WorkflowDef))
    assert refused.value.problems == [
        "tasks[a].inputParameters is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)"
    ]
    too_deep = {**one_task(), "outputParameters": nested(65), "variables": nested(66)}
    with pytest.raises(DefinitionError) as refused:
        validate(msgspec.convert(too_deep, WorkflowDef))
    assert refused.value.problems == [
        "outputParameters is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)",
        "variables is nested 66 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)",
    ]
    with pytest.raises(DefinitionError, match="inputTemplate is nested 65 levels deep"):
        validate(TaskDef(name="t", input_template=nested(65)))


def test_a_hostile_definition_is_refused_without_recursion() -> None:
    text = b'{"name": "w", "tasks": [{"name": "a", "taskReferenceName": "a", "inputParameters": ' + nested_text(
        HOSTILE
    ) + b"}]}"  # fmt: skip
    with pytest.raises(DefinitionError) as refused:
        parse_definitions(text)
    assert refused.value.problems == [
        f"the definition JSON is nested {HOSTILE + 3} levels deep; the limit is 128 (PARTITA_LIMIT_DEFINITION_DEPTH)"
    ]
    # Built in Python: switches nested two thousand deep, which the recursive checks could not walk.
    task = WorkflowTask(name="leaf", task_reference_name="leaf")
    for level in range(2000):
        task = WorkflowTask(
            name=f"s{level}", task_reference_name=f"s{level}", type="SWITCH", evaluator_type="value-param",
            expression="x", decision_cases={"a": [task]},
        )  # fmt: skip
    with pytest.raises(DefinitionError, match=r"the definition is nested \d{4} levels deep; the limit is 128"):
        validate(WorkflowDef(name="w", tasks=[task]))


def switches(levels: int, leaf_input: dict[str, object]) -> dict[str, object]:
    """SWITCHes nested ``levels`` deep: each adds three levels (decisionCases, the case's list, the task)."""
    task: dict[str, object] = simple("leaf", inputParameters=leaf_input)
    for level in range(levels):
        task = {"name": f"s{level}", "taskReferenceName": f"s{level}", "type": "SWITCH",
                "evaluatorType": "value-param", "expression": "x", "decisionCases": {"a": [task]}}  # fmt: skip
    return {"name": "w", "tasks": [task]}


def test_a_definition_at_the_depth_limit_parses_and_validates_and_one_level_more_does_not() -> None:
    fits = json.dumps(switches(41, {"x": {"y": 1}}))  # the workflow, tasks, 41 * 3, the leaf's input: 128
    assert json_text_depth(fits) == 128
    (definition,) = parse_definitions(fits)
    validate(definition)
    (deeper,) = parse_definitions(json.dumps(switches(41, {"x": {"y": {"z": 1}}})))  # parsing leaves a level
    with pytest.raises(DefinitionError) as refused:
        validate(deeper)
    assert refused.value.problems == [
        "the definition is nested 129 levels deep; the limit is 128 (PARTITA_LIMIT_DEFINITION_DEPTH)"
    ]
    with pytest.raises(DefinitionError, match="the definition JSON is nested 130 levels deep"):
        parse_definitions(json.dumps(switches(41, {"x": {"y": {"z": {"w": 1}}}})))


def test_the_definition_store_refuses_to_decode_a_hostile_entry() -> None:
    from partita.transport.definitions import _workflow_def

    with pytest.raises(PayloadError, match=f"malformed WorkflowDef: nested {HOSTILE} levels deep"):
        _workflow_def(nested_text(HOSTILE))


# --- the decider: starts and results ---------------------------------------------------------------


def test_a_start_whose_input_is_too_deep_is_recorded_failed_without_it() -> None:
    definition = {"name": "w", "tasks": [simple("a")]}
    assert start(definition, nested(64)).status is WorkflowStatus.RUNNING
    workflow = start(definition, nested(65))
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.reason_for_incompletion == (
        "workflow input is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH); the input was not kept"
    )
    assert (workflow.input, workflow.tasks) == ({}, ())
    hostile = start(definition, nested(HOSTILE))
    assert hostile.status is WorkflowStatus.FAILED
    assert f"nested {HOSTILE} levels deep" in (hostile.reason_for_incompletion or "")


def test_a_start_of_a_definition_over_the_task_limit_fails() -> None:
    workflow = start({"name": "w", "tasks": [simple("a"), simple("b")]}, limits=Limits(max_definition_tasks=1))
    assert workflow.status is WorkflowStatus.FAILED
    assert "the definition has 2 tasks" in (workflow.reason_for_incompletion or "")


def test_a_result_nested_too_deeply_fails_the_task_terminally_without_retries() -> None:
    definition = {"name": "w", "tasks": [simple("a", taskDefinition={"name": "a", "retryCount": 3}), simple("b")]}
    workflow = start(definition)
    fine = complete(workflow, "a", nested(64))
    assert trail(fine) == [("a", "COMPLETED"), ("b", "SCHEDULED")]

    decision = report(workflow, "a", nested(65))
    failed = decision.workflow
    assert failed is not None
    assert trail(failed) == [("a", "FAILED_WITH_TERMINAL_ERROR")]
    reason = "task output is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)"
    assert failed.tasks[0].reason_for_incompletion == reason
    assert failed.tasks[0].output_data == {}
    assert failed.status is WorkflowStatus.FAILED
    assert reason in (failed.reason_for_incompletion or "")
    assert not [e for e in decision.effects if isinstance(e, DispatchTask)]  # no retry

    in_progress = report(workflow, "a", nested(HOSTILE), TaskResultStatus.IN_PROGRESS).workflow
    assert in_progress is not None
    assert in_progress.tasks[0].status is TaskStatus.FAILED_WITH_TERMINAL_ERROR


def test_an_optional_task_with_a_too_deep_result_completes_with_errors() -> None:
    workflow = start({"name": "w", "tasks": [simple("a", optional=True), simple("b")]})
    decision = report(workflow, "a", nested(65))
    assert decision.workflow is not None
    assert trail(decision.workflow) == [("a", "COMPLETED_WITH_ERRORS"), ("b", "SCHEDULED")]


def test_an_update_from_outside_nested_too_deeply_fails_the_task() -> None:
    workflow = start({"name": "w", "tasks": [{"name": "h", "taskReferenceName": "h", "type": "HUMAN"}]})
    update = UpdateTask(workflow_id="wf", task_ref_name="h", status=TaskResultStatus.COMPLETED, output_data=nested(65))
    decision = decide(workflow, update, NOW + 1)
    assert decision.workflow is not None
    assert trail(decision.workflow) == [("h", "FAILED_WITH_TERMINAL_ERROR")]
    assert decision.workflow.status is WorkflowStatus.FAILED


def test_a_task_input_that_combines_payloads_too_deeply_fails_before_dispatch() -> None:
    definition = {"name": "w", "tasks": [
        simple("ok", inputParameters={"x": "${workflow.input.x}"}),
        simple("deeper", inputParameters={"wrap": {"x": "${workflow.input.x}"}}),
    ]}  # fmt: skip
    workflow = start(definition, {"x": nested(63)})  # input: 64 levels
    assert trail(workflow) == [("ok", "SCHEDULED")]
    decision = report(workflow, "ok")
    assert decision.workflow is not None
    assert trail(decision.workflow) == [("ok", "COMPLETED"), ("deeper", "FAILED_WITH_TERMINAL_ERROR")]
    assert decision.workflow.tasks[1].reason_for_incompletion == (
        "task input is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)"
    )
    assert decision.workflow.tasks[1].input_data == {}
    assert not [e for e in decision.effects if isinstance(e, DispatchTask)]


def test_a_loop_feeding_a_task_its_own_input_cannot_nest_it_without_bound() -> None:
    definition = {"name": "w", "tasks": [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopCondition": "true",
         "loopOver": [{"name": "grow", "taskReferenceName": "grow", "type": "INLINE",
                       "inputParameters": {"evaluatorType": "javascript", "expression": "1",
                                           "prev": "${grow.input}"}}]},
    ]}  # fmt: skip
    workflow = start(definition)
    assert workflow.status is WorkflowStatus.FAILED
    last = workflow.tasks[-1]
    assert (last.reference_task_name, last.status) == ("grow__65", TaskStatus.FAILED_WITH_TERMINAL_ERROR)
    assert "task input is nested 65 levels deep" in (last.reason_for_incompletion or "")


def test_a_script_result_nested_too_deeply_fails_the_task() -> None:
    def inline(expression: str) -> Workflow:
        return start({"name": "w", "tasks": [{"name": "s", "taskReferenceName": "s", "type": "INLINE",
                                              "inputParameters": {"expression": expression}}]})  # fmt: skip

    build = "var a = {}; for (var i = 1; i < %d; i++) a = {a: a}; a"
    assert inline(build % 63).status is WorkflowStatus.COMPLETED  # output {"result": 63 levels}: 64
    too_deep = inline(build % 64)
    assert trail(too_deep) == [("s", "FAILED_WITH_TERMINAL_ERROR")]
    assert too_deep.tasks[0].reason_for_incompletion == (
        "task output is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)"
    )
    unreadable = inline(build % 3000)  # past what Python's json module reads back
    assert trail(unreadable) == [("s", "FAILED")]
    assert unreadable.tasks[0].reason_for_incompletion == "the script's result is nested too deeply to read"

    program = "reduce range(0; 70) as $i (0; [.])"
    jq = start({"name": "w", "tasks": [{"name": "q", "taskReferenceName": "q", "type": "JSON_JQ_TRANSFORM",
                                        "inputParameters": {"queryExpression": program}}]})  # fmt: skip
    assert trail(jq) == [("q", "FAILED_WITH_TERMINAL_ERROR")]
    assert "task output is nested 72 levels deep" in (jq.tasks[0].reason_for_incompletion or "")


def test_a_workflow_output_nested_too_deeply_fails_the_workflow() -> None:
    definition = {"name": "w", "tasks": [simple("a")], "outputParameters": {"wrap": "${a.output}"}}
    workflow = start(definition)
    assert complete(workflow, "a", nested(63)).status is WorkflowStatus.COMPLETED
    failed = complete(workflow, "a", nested(64))
    assert failed.status is WorkflowStatus.FAILED
    assert failed.reason_for_incompletion == (
        "workflow output is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)"
    )
    assert failed.output == {}


def test_a_sub_workflow_output_nested_too_deeply_fails_its_task() -> None:
    workflow = start({"name": "w", "tasks": [{"name": "kid", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                                              "subWorkflowParam": {"name": "kid"}}]})  # fmt: skip
    sub = workflow.tasks[0]
    done = ChildFinished(workflow_id="wf", task_id=sub.task_id, child_workflow_id=sub.sub_workflow_id or "",
                         status=WorkflowStatus.COMPLETED, output=nested(65))  # fmt: skip
    decision = decide(workflow, done, NOW + 1)
    assert decision.workflow is not None
    assert trail(decision.workflow) == [("sub", "FAILED_WITH_TERMINAL_ERROR")]
    assert "sub-workflow output is nested 65 levels deep" in (decision.workflow.tasks[0].reason_for_incompletion or "")


def test_operator_commands_carrying_too_deep_payloads_are_refused() -> None:
    workflow = start({"name": "w", "tasks": [simple("a"), simple("b")]})
    skip = decide(workflow, SkipTask(workflow_id="wf", task_ref_name="b", task_output=nested(65)), NOW + 1)
    assert skip.workflow is None
    assert (
        skip.note == "skip refused: taskOutput is nested 65 levels deep; the limit is 64 (PARTITA_LIMIT_PAYLOAD_DEPTH)"
    )
    ended = report(workflow, "a", status=TaskResultStatus.FAILED_WITH_TERMINAL_ERROR).workflow
    assert ended is not None
    rerun = decide(ended, RerunWorkflow(workflow_id="wf", workflow_input=nested(65)), NOW + 2)
    assert rerun.workflow is None
    assert (rerun.note or "").startswith("rerun refused: workflowInput is nested 65 levels deep")


# --- the decider: loops, forks, the task list --------------------------------------------------------


def noop_loop(condition: str) -> dict[str, object]:
    return {"name": "loops", "tasks": [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopCondition": condition,
         "loopOver": [{"name": "step", "taskReferenceName": "step", "type": "NOOP"}]},
    ]}  # fmt: skip


def test_a_runaway_do_while_fails_at_the_iteration_limit() -> None:
    workflow = start(noop_loop("true"), limits=Limits(max_loop_iterations=5))
    assert workflow.status is WorkflowStatus.FAILED
    loop = workflow.tasks[0]
    reason = (
        "DO_WHILE ran 5 iterations and would run another; the limit is 5 iterations (PARTITA_LIMIT_LOOP_ITERATIONS)"
    )
    assert (loop.status, loop.reason_for_incompletion) == (TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason)
    assert loop.output_data["iteration"] == 5
    assert [t.reference_task_name for t in workflow.tasks[1:]] == [f"step__{i}" for i in range(1, 6)]
    assert workflow.reason_for_incompletion == (
        f"Task {loop.task_id} failed with status: FAILED and reason: '{reason}'"
    )


def test_a_do_while_may_run_exactly_as_many_iterations_as_the_limit() -> None:
    workflow = start(noop_loop("$.loop.iteration < 5"), limits=Limits(max_loop_iterations=5))
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.tasks[0].output_data["iteration"] == 5


def test_a_loop_of_worker_tasks_counts_iterations_across_decisions() -> None:
    definition = {"name": "w", "tasks": [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopCondition": "true",
         "loopOver": [simple("work")]},
    ]}  # fmt: skip
    limits = Limits(max_loop_iterations=3)
    workflow = start(definition, limits=limits)
    for iteration in (1, 2):
        workflow = complete(workflow, f"work__{iteration}", limits=limits)
        assert workflow.status is WorkflowStatus.RUNNING
    workflow = complete(workflow, "work__3", limits=limits)
    assert workflow.status is WorkflowStatus.FAILED
    assert "DO_WHILE ran 3 iterations" in (workflow.reason_for_incompletion or "")


def test_a_do_while_over_more_items_than_the_limit_fails_before_its_first_iteration() -> None:
    definition = {"name": "w", "tasks": [
        {"name": "each", "taskReferenceName": "each", "type": "DO_WHILE", "items": "${workflow.input.items}",
         "loopOver": [{"name": "n", "taskReferenceName": "n", "type": "NOOP"}]},
    ]}  # fmt: skip
    limits = Limits(max_loop_iterations=3)
    assert start(definition, {"items": [1, 2, 3]}, limits).status is WorkflowStatus.COMPLETED
    workflow = start(definition, {"items": [1, 2, 3, 4]}, limits)
    assert trail(workflow) == [("each", "FAILED_WITH_TERMINAL_ERROR")]
    assert workflow.tasks[0].reason_for_incompletion == (
        "DO_WHILE items has 4 entries; the limit is 3 iterations (PARTITA_LIMIT_LOOP_ITERATIONS)"
    )


FAN_OUT = {
    "name": "fan",
    "tasks": [
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
         "inputParameters": {"forkTaskName": "work", "forkTaskInputs": "${workflow.input.items}"}},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ],
}  # fmt: skip


def test_a_dynamic_fork_wider_than_the_limit_fails_without_forking() -> None:
    limits = Limits(max_fork_width=3)
    fits = start(FAN_OUT, {"items": [{}] * 3}, limits)
    assert [t.reference_task_name for t in fits.tasks] == ["fan", "_work_0", "_work_1", "_work_2", "join"]
    workflow = start(FAN_OUT, {"items": [{}] * 4}, limits)
    assert trail(workflow) == [("fan", "FAILED_WITH_TERMINAL_ERROR")]
    reason = "FORK_JOIN_DYNAMIC would fork 4 branches; the limit is 3 (PARTITA_LIMIT_FORK_WIDTH)"
    assert workflow.tasks[0].reason_for_incompletion == reason
    assert workflow.status is WorkflowStatus.FAILED
    assert reason in (workflow.reason_for_incompletion or "")

    given_tasks = {"name": "given", "tasks": [
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC", "dynamicForkTasksParam": "tasks",
         "inputParameters": {"tasks": "${workflow.input.tasks}"}},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ]}  # fmt: skip
    four = [simple(f"t{i}") for i in range(4)]
    assert start(given_tasks, {"tasks": four[:3]}, limits).status is WorkflowStatus.RUNNING
    assert "would fork 4 branches" in (start(given_tasks, {"tasks": four}, limits).reason_for_incompletion or "")


def test_the_default_fork_width_is_a_thousand() -> None:
    assert start(FAN_OUT, {"items": [{}] * 1000}).status is WorkflowStatus.RUNNING
    assert "would fork 1001 branches" in (start(FAN_OUT, {"items": [{}] * 1001}).reason_for_incompletion or "")


def test_a_workflow_fails_rather_than_grow_past_the_task_limit() -> None:
    definition = {"name": "w", "tasks": [
        {"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopCondition": "true",
         "loopOver": [simple("work")]},
    ]}  # fmt: skip
    limits = Limits(max_workflow_tasks=4)
    workflow = start(definition, limits=limits)
    for iteration in (1, 2):
        workflow = complete(workflow, f"work__{iteration}", limits=limits)
    assert workflow.status is WorkflowStatus.RUNNING
    assert len(workflow.tasks) == 4
    decision = report(workflow, "work__3", limits=limits)
    failed = decision.workflow
    assert failed is not None
    assert failed.status is WorkflowStatus.FAILED
    assert len(failed.tasks) == 4  # never past the limit
    assert failed.reason_for_incompletion == (
        "the workflow has reached its limit of 4 tasks (PARTITA_LIMIT_WORKFLOW_TASKS); task 'work__4' was not scheduled"
    )
    assert not [e for e in decision.effects if isinstance(e, DispatchTask)]


def test_a_wide_fork_sharing_one_large_input_measures_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from partita.actors.decider import state

    big = {"rows": [{"id": i, "tags": ["a", "b"]} for i in range(1000)]}
    measured: list[object] = []

    def counting(value: object) -> int:
        measured.append(value)
        return json_depth(value)

    monkeypatch.setattr(state, "json_depth", counting)
    definition = {"name": "fan", "tasks": [
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC", "dynamicForkTasksParam": "tasks",
         "inputParameters": {"tasks": "${workflow.input.tasks}"}},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ]}  # fmt: skip
    tasks = [simple(f"w{i}", name="work", inputParameters={"big": "${workflow.input.big}"}) for i in range(100)]
    workflow = start(definition, {"big": big, "tasks": tasks})
    assert workflow.status is WorkflowStatus.RUNNING
    assert len(workflow.tasks) == 102
    assert sum(1 for value in measured if value is workflow.input["big"]) == 1


def test_a_task_type_too_long_for_a_subject_fails_its_task_and_is_refused_at_registration() -> None:
    from partita.schemas.limits import MAX_NAME_TOKEN, name_problem

    assert name_problem("task type", "a" * MAX_NAME_TOKEN) is None
    assert name_problem("task type", "é" * 200) is not None  # 2 bytes each, 3 characters per byte escaped
    definition = {
        "name": "dyn",
        "tasks": [{"name": "dyn", "taskReferenceName": "dyn", "type": "DYNAMIC", "dynamicTaskNameParam": "which",
                   "inputParameters": {"which": "${workflow.input.which}"}}],
    }  # fmt: skip
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), {})
    request = StartWorkflow(workflow_id="wf", name="dyn", input={"which": "x" * 5000})
    workflow = decide(None, WorkflowStartRequested(request=request, definition=snapshot), 1_700_000_000_000).workflow
    assert workflow is not None
    (task,) = workflow.tasks
    assert task.status is TaskStatus.FAILED_WITH_TERMINAL_ERROR
    assert "5000 bytes as a subject token; the limit is 1024" in (task.reason_for_incompletion or "")
    assert workflow.status is WorkflowStatus.FAILED
    (long_named,) = parse_definitions(json.dumps({"name": "t" * 2000}).encode())
    with pytest.raises(DefinitionError) as refused:
        validate(long_named)
    assert any("as a subject token" in problem for problem in refused.value.problems)


def test_a_script_too_large_to_compile_quickly_is_refused_before_it_is_compiled() -> None:
    # QuickJS compiles many private class fields in quadratic time (40,000 took 6 s) and cannot be interrupted.
    fields = " ".join(f"#f{i};" for i in range(40_000))
    definition = {
        "name": "slow_compile",
        "tasks": [{"name": "js", "taskReferenceName": "js", "type": "INLINE",
                   "inputParameters": {"evaluatorType": "javascript", "expression": f"class C {{ {fields} }} 1"}}],
    }  # fmt: skip
    (parsed,) = parse_definitions(json.dumps(definition).encode())
    with pytest.raises(DefinitionError) as refused:
        validate(parsed)
    assert any("script is" in p and "the limit is 65536" in p for p in refused.value.problems)
