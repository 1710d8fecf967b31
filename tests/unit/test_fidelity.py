"""What Conductor records, in the pure decider: task records as its mappers make them, output and failure
bookkeeping on every end, its words, and the registered TaskDef for tasks named at run time (issue 15)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import pytest

from partita.actors.decider import Decision, decide, snapshot_definition
from partita.schemas import (
    DefinitionError,
    StartChild,
    StartWorkflow,
    TaskDef,
    TaskResult,
    TaskResultReceived,
    TaskResultStatus,
    TaskStatus,
    TerminateWorkflow,
    Workflow,
    WorkflowDef,
    WorkflowStartRequested,
    WorkflowStatus,
    validate_task_def,
    validate_workflow_def,
)

NOW = 1_700_000_000_000


def run(
    definition: dict[str, object],
    workflow_input: dict[str, object] | None = None,
    task_defs: Mapping[str, TaskDef] | None = None,
) -> Workflow:
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), dict(task_defs or {}))
    request = StartWorkflow(workflow_id="wf", name=str(definition["name"]), input=workflow_input or {})
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW, task_defs=task_defs)
    assert decision.workflow is not None
    return decision.workflow


def report(
    workflow: Workflow,
    ref: str,
    status: TaskResultStatus = TaskResultStatus.COMPLETED,
    output: dict[str, object] | None = None,
    reason: str | None = None,
    task_defs: Mapping[str, TaskDef] | None = None,
) -> Workflow:
    task = next(t for t in reversed(workflow.tasks) if t.reference_task_name == ref)
    result = TaskResult(
        workflow_instance_id=workflow.workflow_id,
        task_id=task.task_id,
        status=status,
        output_data=output or {},
        reason_for_incompletion=reason,
    )
    event = TaskResultReceived(result=result, subject_task_type=task.task_type)
    decision: Decision = decide(workflow, event, NOW + 1, task_defs=task_defs)
    assert decision.workflow is not None, decision.note
    return decision.workflow


def records(workflow: Workflow) -> list[tuple[str, str, str]]:
    return [(t.reference_task_name, t.task_type, t.task_def_name) for t in workflow.tasks]


def test_both_fork_kinds_are_recorded_as_fork_and_a_join_records_what_it_joins() -> None:
    # ForkJoinTaskMapper / ForkJoinDynamicTaskMapper set TASK_TYPE_FORK; JoinTaskMapper's input is {joinOn}.
    static = run({"name": "f", "tasks": [
        {"name": "fork_it", "taskReferenceName": "fork", "type": "FORK_JOIN",
         "forkTasks": [[{"name": "a", "taskReferenceName": "a"}], [{"name": "b", "taskReferenceName": "b"}]]},
        {"name": "join_it", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["a", "b"],
         "inputParameters": {"ignored": "by Conductor's JoinTaskMapper"}},
    ]})  # fmt: skip
    assert records(static) == [("fork", "FORK", "FORK"), ("a", "a", "a"), ("b", "b", "b"), ("join", "JOIN", "JOIN")]
    assert static.tasks[3].input_data == {"joinOn": ["a", "b"]}
    dynamic = run(
        {"name": "d", "tasks": [
            {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"forkTaskName": "resize", "forkTaskInputs": ["x", {"url": "y"}]}},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
        ]},
    )  # fmt: skip
    fork, first, second, join = dynamic.tasks
    assert (fork.task_type, fork.task_def_name, join.task_type) == ("FORK", "FORK", "JOIN")
    assert fork.input_data["forkedTasks"] == ["_resize_0", "_resize_1"]
    assert fork.output_data == {}
    assert join.input_data == {"joinOn": ["_resize_0", "_resize_1"]}
    assert first.input_data == {"input": "x", "__index": 0}  # a value that is not a map is wrapped
    assert second.input_data == {"url": "y", "__index": 1}
    joined = report(report(dynamic, "_resize_0", output={"n": 0}), "_resize_1", output={"n": 1})
    assert joined.status is WorkflowStatus.COMPLETED  # the JOIN waited for what its input names


def test_switch_and_decision_record_their_case_as_conductors_mappers_do() -> None:
    cases = {"decisionCases": {"a": [{"name": "in_a", "taskReferenceName": "in_a"}], "b": []},
             "defaultCase": [{"name": "other", "taskReferenceName": "other"}]}  # fmt: skip
    switch = run({"name": "s", "tasks": [{"name": "pick", "taskReferenceName": "pick", "type": "SWITCH",
        "evaluatorType": "value-param", "expression": "k", "inputParameters": {"k": "a"}, **cases}]})  # fmt: skip
    assert records(switch)[0] == ("pick", "SWITCH", "SWITCH")
    assert switch.tasks[0].input_data == {"k": "a", "case": "a", "hasChildren": "true"}
    decision = run({"name": "d", "tasks": [{"name": "pick", "taskReferenceName": "pick", "type": "DECISION",
        "caseValueParam": "k", "inputParameters": {"k": "b"}, **cases}]})  # fmt: skip
    assert records(decision)[0] == ("pick", "DECISION", "DECISION")
    # DecisionTaskMapper records only the case; an empty case list takes the default case.
    assert decision.tasks[0].input_data == {"case": "b", "hasChildren": "true"}
    assert [t.reference_task_name for t in decision.tasks] == ["pick", "other"]


def test_a_failed_workflow_evaluates_its_output_parameters_and_words_the_reason_as_conductor() -> None:
    # SimpleWorkflowSpec.groovy:162: FAILED_WITH_TERMINAL_ERROR; output from outputParameters; Conductor's words.
    definition = {"name": "f", "tasks": [{"name": "t", "taskReferenceName": "t1"}],
                  "outputParameters": {"o1": "${workflow.input.p}", "why": "${t1.output.ErrorMessage}"}}  # fmt: skip
    workflow = run(definition, {"p": "p1 value"}, {"t": TaskDef(name="t", retry_count=1)})
    task = workflow.tasks[0]
    output = {"ErrorMessage": "There was a terminal error"}
    failed = report(workflow, "t1", TaskResultStatus.FAILED_WITH_TERMINAL_ERROR, output, reason="bad input")
    assert failed.status is WorkflowStatus.FAILED
    assert failed.output == {"o1": "p1 value", "why": "There was a terminal error"}
    assert failed.reason_for_incompletion == f"Task {task.task_id} failed with status: FAILED and reason: 'bad input'"
    assert (failed.failed_reference_task_names, failed.failed_task_names) == (["t1"], ["t"])
    assert len(failed.tasks) == 1  # a terminal error is not retried


def test_a_workflow_that_completes_after_a_retried_failure_still_names_the_failed_task() -> None:
    # SimpleWorkflowSpec.groovy:546 (task retries): failedReferenceTaskNames kept on COMPLETED.
    definition = {"name": "r", "tasks": [{"name": "t", "taskReferenceName": "t1"}]}
    defs = {"t": TaskDef(name="t", retry_count=2, retry_delay_seconds=0)}
    workflow = report(run(definition, task_defs=defs), "t1", TaskResultStatus.FAILED, reason="flaky")
    done = report(workflow, "t1", output={"ok": True})
    assert done.status is WorkflowStatus.COMPLETED
    assert (done.failed_reference_task_names, done.failed_task_names) == (["t1"], ["t"])
    assert done.output == {"ok": True}


def test_terminate_by_operator_evaluates_output_parameters_and_a_terminate_task_words_its_reason() -> None:
    definition = {"name": "t", "tasks": [{"name": "w", "taskReferenceName": "w", "type": "WAIT"}],
                  "outputParameters": {"seen": "${workflow.input.x}"}}  # fmt: skip
    workflow = run(definition, {"x": 1})
    ended = decide(workflow, TerminateWorkflow(workflow_id="wf", reason="stop"), NOW + 1).workflow
    assert ended is not None
    assert (ended.status, ended.output) == (WorkflowStatus.TERMINATED, {"seen": 1})
    terminating = run({"name": "tt", "tasks": [{"name": "end", "taskReferenceName": "end", "type": "TERMINATE",
        "inputParameters": {"terminationStatus": "FAILED", "workflowOutput": {"o": 1}}}]})  # fmt: skip
    (task,) = terminating.tasks
    assert terminating.reason_for_incompletion == f"Workflow is FAILED by TERMINATE task: {task.task_id}"
    assert terminating.output == {"o": 1}


def test_dynamically_forked_and_dynamic_tasks_use_their_registered_task_def() -> None:
    # ForkJoinDynamicTaskMapper / DynamicTaskMapper look the TaskDef up by the resolved name: retryCount 0 means
    # the first failure fails the workflow (the ad-hoc defaults would retry 3 times, 60 s apart).
    defs = {"resize": TaskDef(name="resize", retry_count=0, response_timeout_seconds=7)}
    forked = run({"name": "d", "tasks": [
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
         "inputParameters": {"forkTaskName": "resize", "forkTaskInputs": [{"url": "a"}]}},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ]}, task_defs=defs)  # fmt: skip
    assert forked.tasks[1].response_timeout_seconds == 7
    failed = report(forked, "_resize_0", TaskResultStatus.FAILED, reason="no", task_defs=defs)
    assert failed.status is WorkflowStatus.FAILED
    assert [t.status for t in failed.tasks if t.reference_task_name == "_resize_0"] == [TaskStatus.FAILED]
    dynamic = run({"name": "dy", "tasks": [{"name": "pick", "taskReferenceName": "dyn", "type": "DYNAMIC",
        "dynamicTaskNameParam": "which", "inputParameters": {"which": "resize"}}]}, task_defs=defs)  # fmt: skip
    assert records(dynamic) == [("dyn", "resize", "resize")]
    assert dynamic.tasks[0].response_timeout_seconds == 7
    assert report(dynamic, "dyn", TaskResultStatus.FAILED, task_defs=defs).status is WorkflowStatus.FAILED


SCRIPT = "if ($.a == 1) { return {testvalue: true} } else { return 0 }"


def test_a_lambda_reads_its_script_from_input_parameters() -> None:
    # LambdaAndTerminateTaskSpec's fixture: the script is inputParameters.scriptExpression, $ is the input.
    definition = {"name": "l", "tasks": [{"name": "lam", "taskReferenceName": "lam", "type": "LAMBDA",
        "inputParameters": {"a": "${workflow.input.a}", "scriptExpression": SCRIPT}}]}  # fmt: skip
    validate_workflow_def(msgspec.convert(definition, WorkflowDef))
    workflow = run(definition, {"a": 1})
    assert (workflow.status, workflow.tasks[0].output_data) == (
        WorkflowStatus.COMPLETED,
        {"result": {"testvalue": True}},
    )


def test_an_inline_task_definition_is_not_held_to_registered_task_def_rules() -> None:
    # Conductor does not cascade validation into WorkflowTask.taskDefinition (no @Valid): it registers and runs.
    definition = {"name": "i", "tasks": [{"name": "t", "taskReferenceName": "t",
        "taskDefinition": {"name": "t", "timeoutSeconds": 120, "responseTimeoutSeconds": 3600}}]}  # fmt: skip
    validate_workflow_def(msgspec.convert(definition, WorkflowDef))
    registered = {"name": "t", "timeoutSeconds": 120, "responseTimeoutSeconds": 3600}
    with pytest.raises(DefinitionError, match="responseTimeoutSeconds: 3600 must be less than timeoutSeconds: 120"):
        validate_task_def(msgspec.convert(registered, TaskDef))


def test_a_type_conductor_does_not_know_is_user_defined_and_needs_its_task_def() -> None:
    # TaskType.of: USER_DEFINED; UserDefinedTaskMapper: taskType is the declared type, the TaskDef the name's.
    definition = {"name": "u", "tasks": [{"name": "first", "taskReferenceName": "first"},
        {"name": "limited", "taskReferenceName": "user", "type": "USER_TASK"}]}  # fmt: skip
    defs = {"limited": TaskDef(name="limited", retry_count=0)}
    workflow = report(run(definition, task_defs=defs), "first", task_defs=defs)
    assert records(workflow)[1] == ("user", "USER_TASK", "limited")
    assert workflow.status is WorkflowStatus.RUNNING
    unknown = report(run(definition), "first")
    assert unknown.status is WorkflowStatus.FAILED
    assert unknown.reason_for_incompletion == (
        "Invalid task specified. Cannot find task by name limited in the task definitions"
    )
    assert [t.reference_task_name for t in unknown.tasks] == ["first"]  # the mapper failed: no task recorded


def test_a_failing_terminate_task_is_the_failure_workflows_failed_task() -> None:
    definition = {"name": "ft", "failureWorkflow": "cleanup", "tasks": [{"name": "end", "taskReferenceName": "end",
        "type": "TERMINATE", "inputParameters": {"terminationStatus": "FAILED"}}]}  # fmt: skip
    snapshot = snapshot_definition(msgspec.convert(definition, WorkflowDef), {})
    request = StartWorkflow(workflow_id="wf", name="ft")
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot), NOW)
    assert decision.workflow is not None
    (starts,) = [e.request for e in decision.effects if isinstance(e, StartChild)]
    assert starts.input["failureTaskId"] == decision.workflow.tasks[0].task_id
    assert decision.workflow.failed_task_id == decision.workflow.tasks[0].task_id
