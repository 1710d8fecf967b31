"""Conductor JSON in and out of the schemas, and registration-time validation."""

from __future__ import annotations

import json

import msgspec
import pytest

from partita.schemas import (
    DefinitionError,
    RetryLogic,
    TaskDef,
    TaskTimeoutPolicy,
    WorkflowDef,
    WorkflowTimeoutPolicy,
    parse_definitions,
    unsupported_problems,
    validate_task_def,
    validate_workflow_def,
)

KITCHEN_SINK = {
    "name": "kitchensink",
    "description": "every kind of field Conductor writes",
    "version": 3,
    "schemaVersion": 2,
    "ownerEmail": "team@example.com",
    "inputParameters": ["a", "b"],
    "outputParameters": {"out": "${t1.output.x}"},
    "inputTemplate": {"a": 1},
    "failureWorkflow": "cleanup",
    "restartable": False,
    "workflowStatusListenerEnabled": True,
    "timeoutPolicy": "TIME_OUT_WF",
    "timeoutSeconds": 600,
    "variables": {"counter": 0},
    "someFieldFromTheFuture": {"ignored": True},
    "tasks": [
        {
            "name": "t1",
            "taskReferenceName": "t1",
            "type": "SIMPLE",
            "inputParameters": {"p": "${workflow.input.a}"},
            "startDelay": 5,
            "optional": True,
            "retryCount": 1,
            "taskDefinition": {"name": "t1", "retryCount": 7, "responseTimeoutSeconds": 10, "timeoutSeconds": 20},
        },
        {
            "name": "decide",
            "taskReferenceName": "decide",
            "type": "SWITCH",
            "evaluatorType": "value-param",
            "expression": "switchCaseValue",
            "inputParameters": {"switchCaseValue": "${t1.output.kind}"},
            "decisionCases": {"x": [{"name": "t2", "taskReferenceName": "t2"}]},
            "defaultCase": [{"name": "t3", "taskReferenceName": "t3"}],
        },
        {
            "name": "fork",
            "taskReferenceName": "fork",
            "type": "FORK_JOIN",
            "forkTasks": [[{"name": "t4", "taskReferenceName": "t4"}], [{"name": "t5", "taskReferenceName": "t5"}]],
        },
        {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["t4", "t5"]},
        {
            "name": "sub",
            "taskReferenceName": "sub",
            "type": "SUB_WORKFLOW",
            "subWorkflowParam": {"name": "child", "version": 2, "taskToDomain": {"*": "d"}},
        },
    ],
}


def test_a_conductor_workflow_definition_round_trips_with_camel_case_and_code_defaults() -> None:
    (definition,) = parse_definitions(json.dumps(KITCHEN_SINK))
    assert isinstance(definition, WorkflowDef)
    assert definition.version == 3
    assert definition.timeout_policy is WorkflowTimeoutPolicy.TIME_OUT_WF
    first = definition.tasks[0]
    assert first.task_reference_name == "t1"
    assert first.start_delay == 5
    assert first.task_definition is not None
    assert first.task_definition.retry_count == 7
    assert definition.tasks[1].decision_cases["x"][0].name == "t2"
    assert definition.tasks[2].fork_tasks[1][0].task_reference_name == "t5"
    assert definition.tasks[4].sub_workflow_param is not None
    assert definition.tasks[4].sub_workflow_param.task_to_domain == {"*": "d"}
    encoded = json.loads(msgspec.json.encode(definition))
    assert encoded["tasks"][0]["taskReferenceName"] == "t1"
    assert encoded["outputParameters"] == {"out": "${t1.output.x}"}
    assert "someFieldFromTheFuture" not in encoded  # tolerated on the way in, not invented on the way out
    assert parse_definitions(msgspec.json.encode(definition)) == [definition]


def test_defaults_follow_conductors_code_not_its_docs() -> None:
    task_def = msgspec.convert({"name": "t"}, TaskDef)
    assert task_def.retry_count == 3
    assert task_def.retry_delay_seconds == 60
    assert task_def.retry_logic is RetryLogic.FIXED
    assert task_def.response_timeout_seconds == 3600  # docs say 600, code says 3600
    assert task_def.timeout_policy is TaskTimeoutPolicy.TIME_OUT_WF
    workflow_def = msgspec.convert({"name": "w", "tasks": [{"name": "a", "taskReferenceName": "a"}]}, WorkflowDef)
    assert workflow_def.timeout_policy is WorkflowTimeoutPolicy.ALERT_ONLY  # docs say TIME_OUT_WF
    assert workflow_def.version == 1
    assert workflow_def.tasks[0].type == "SIMPLE"


def test_a_list_mixing_task_and_workflow_definitions_is_split_by_shape() -> None:
    parsed = parse_definitions(b'[{"name": "t"}, {"name": "w", "tasks": [{"name": "t", "taskReferenceName": "r"}]}]')
    assert [type(item) for item in parsed] == [TaskDef, WorkflowDef]


def test_malformed_json_and_wrong_types_name_the_source_and_the_field() -> None:
    with pytest.raises(DefinitionError, match=r"defs\.json.*not valid JSON"):
        parse_definitions(b"{nope", source="defs.json")
    with pytest.raises(DefinitionError) as caught:
        parse_definitions(b'[{"name": "t", "retryCount": "many"}, 7]')
    assert any("retryCount" in problem for problem in caught.value.problems)
    assert any("expected a JSON object" in problem for problem in caught.value.problems)


def test_response_timeout_longer_than_timeout_is_rejected_in_conductors_words() -> None:
    with pytest.raises(DefinitionError, match="responseTimeoutSeconds: 30 must be less than timeoutSeconds: 10"):
        validate_task_def(TaskDef(name="t", timeout_seconds=10, response_timeout_seconds=30))
    validate_task_def(TaskDef(name="t", timeout_seconds=0, response_timeout_seconds=30))  # 0 = no timeout


def test_workflow_validation_reports_every_problem_at_once() -> None:
    definition = msgspec.convert(
        {
            "name": "w",
            "schemaVersion": 1,
            "tasks": [
                {"name": "a", "taskReferenceName": "dup"},
                {"name": "b", "taskReferenceName": "dup"},
                {"name": "s", "taskReferenceName": "s", "type": "SWITCH"},
                {"name": "e", "taskReferenceName": "e", "type": "EVENT"},
                {"name": "t", "taskReferenceName": "t", "type": "TERMINATE", "optional": True},
            ],
        },
        WorkflowDef,
    )
    with pytest.raises(DefinitionError) as caught:
        validate_workflow_def(definition)
    text = str(caught.value)
    assert "schemaVersion: must be 2" in text
    assert "'dup' is used 2 times" in text
    assert "SWITCH task requires 'evaluatorType'" in text
    assert "EVENT task requires 'sink'" in text
    assert "TERMINATE task cannot be optional" in text
    assert "terminationStatus" in text


def test_nested_reference_names_must_be_unique_too() -> None:
    definition = msgspec.convert(KITCHEN_SINK, WorkflowDef)
    validate_workflow_def(definition)
    clash = json.loads(json.dumps(KITCHEN_SINK))
    clash["tasks"][2]["forkTasks"][0][0]["taskReferenceName"] = "t1"
    with pytest.raises(DefinitionError, match="'t1' is used 2 times"):
        validate_workflow_def(msgspec.convert(clash, WorkflowDef))


def test_types_not_run_yet_are_named_and_unknown_types_are_user_defined() -> None:
    definition = msgspec.convert(KITCHEN_SINK, WorkflowDef)
    problems = unsupported_problems(definition)
    assert problems == []  # every type in it runs now
    assert not any("'t1'" in p for p in problems)  # SIMPLE runs
    odd = msgspec.convert(
        {"name": "w", "tasks": [{"name": "x", "taskReferenceName": "x", "type": "QUANTUM"}]}, WorkflowDef
    )
    assert unsupported_problems(odd) == []  # Conductor's USER_DEFINED: run by a worker of type QUANTUM
    ai = msgspec.convert(
        {"name": "w", "tasks": [{"name": "x", "taskReferenceName": "x", "type": "LLM_CHAT_COMPLETE"}]}, WorkflowDef
    )
    assert unsupported_problems(ai) == ["task 'x': task type LLM_CHAT_COMPLETE is not supported yet by Partita"]


def test_registration_checks_javascript_syntax_and_that_a_fork_is_followed_by_a_join() -> None:
    definition = msgspec.convert(
        {
            "name": "w",
            "tasks": [
                {"name": "s", "taskReferenceName": "s", "type": "SWITCH", "evaluatorType": "javascript",
                 "expression": "$.a >", "decisionCases": {"x": []}},
                {"name": "f", "taskReferenceName": "f", "type": "FORK_JOIN", "forkTasks": [[]]},
                {"name": "i", "taskReferenceName": "i", "type": "INLINE", "inputParameters": {"expression": "1 +"}},
                {"name": "l", "taskReferenceName": "l", "type": "LAMBDA", "scriptExpression": "return $.x;"},
            ],
        },
        WorkflowDef,
    )  # fmt: skip
    with pytest.raises(DefinitionError) as caught:
        validate_workflow_def(definition)
    text = str(caught.value)
    assert "tasks[s].expression: JavaScript syntax error" in text
    assert "tasks[i].inputParameters.expression: JavaScript syntax error" in text
    assert "tasks[f]: FORK_JOIN must be followed by a JOIN task" in text
    assert "tasks[l]" not in text  # a valid LAMBDA body (a function body, with return) passes


def test_a_loop_inside_a_loop_is_refused_at_registration() -> None:
    inner = {"name": "inner", "taskReferenceName": "inner", "type": "DO_WHILE", "loopCondition": "false",
             "loopOver": [{"name": "b", "taskReferenceName": "b"}]}  # fmt: skip
    outer = {"name": "w", "tasks": [{"name": "outer", "taskReferenceName": "outer", "type": "DO_WHILE",
                                     "loopCondition": "false", "loopOver": [inner]}]}  # fmt: skip
    with pytest.raises(DefinitionError, match="cannot contain another DO_WHILE"):
        validate_workflow_def(msgspec.convert(outer, WorkflowDef))


def test_every_command_kind_round_trips_through_the_command_decoder() -> None:
    import typing

    from partita.schemas import Command
    from partita.transport.codec import command_decoder, encode_json

    kinds = typing.get_args(Command)
    assert len(kinds) >= 9
    for kind in kinds:
        fields = {"workflow_id": "w"}
        if "task_ref_name" in kind.__struct_fields__:
            fields["task_ref_name"] = "r"
        if "task_id" in kind.__struct_fields__:
            fields |= {"task_id": "t", "child_workflow_id": "c"}
        if "status" in kind.__struct_fields__:
            fields["status"] = "COMPLETED"
        if "observed_update_time" in kind.__struct_fields__:
            fields["observed_update_time"] = 1
        message = kind(**fields)
        assert command_decoder.decode(encode_json(message)) == message, kind.__name__
