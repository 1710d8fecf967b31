"""The pure decider: Conductor's semantics for sequences of SIMPLE tasks, without I/O."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from partita.actors.decider import Decision, decide, domain_for, retry_delay_ms, snapshot_definition
from partita.schemas import (
    DispatchTask,
    RetryLogic,
    StartWorkflow,
    TaskDef,
    TaskResult,
    TaskResultReceived,
    TaskResultStatus,
    TaskStatus,
    Workflow,
    WorkflowDef,
    WorkflowFinished,
    WorkflowStartRequested,
    WorkflowStatus,
)

NOW = 1_700_000_000_000


def definition(*tasks: dict[str, object], **fields: object) -> WorkflowDef:
    raw = {"name": "wf", "version": 2, "tasks": list(tasks), **fields}
    return msgspec.convert(raw, WorkflowDef)


def simple(ref: str, name: str | None = None, **fields: object) -> dict[str, object]:
    return {"name": name or ref, "taskReferenceName": ref, **fields}


THREE = definition(
    simple("a", inputParameters={"x": "${workflow.input.x}"}),
    simple("b", inputParameters={"y": "${a.output.y}", "all": "${a.output}"}),
    simple("c", inputParameters={"z": "${b.output.z}"}),
    outputParameters={"final": "${c.output.done}", "id": "${workflow.workflowId}"},
)


def start(
    workflow_def: WorkflowDef | None = THREE,
    task_defs: dict[str, TaskDef] | None = None,
    *,
    task_to_domain: dict[str, str] | None = None,
    problem: str | None = None,
    workflow_input: dict[str, object] | None = None,
) -> Workflow:
    request = StartWorkflow(
        workflow_id="wf-1", name="wf", input=workflow_input or {"x": 1}, task_to_domain=task_to_domain or {}
    )
    snapshot = snapshot_definition(workflow_def, task_defs or {}) if workflow_def else None
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot, problem=problem), NOW)
    assert decision.workflow is not None
    return decision.workflow


def report(
    workflow: Workflow,
    status: TaskResultStatus = TaskResultStatus.COMPLETED,
    output: dict[str, object] | None = None,
    *,
    reason: str | None = None,
    now: int = NOW + 10,
    task_type: str | None = None,
    callback_after: int = 0,
    poll_count: int | None = None,
) -> Decision:
    task = workflow.tasks[-1]
    result = TaskResult(
        workflow_instance_id=workflow.workflow_id,
        task_id=task.task_id,
        status=status,
        output_data=output or {},
        reason_for_incompletion=reason,
        worker_id="w1",
        callback_after_seconds=callback_after,
        poll_count=poll_count,
    )
    return decide(workflow, TaskResultReceived(result=result, subject_task_type=task_type or task.task_type), now)


def test_start_schedules_the_first_task_with_its_input_resolved_and_one_dispatch() -> None:
    request = StartWorkflow(workflow_id="wf-1", name="wf", input={"x": 7})
    decision = decide(None, WorkflowStartRequested(request=request, definition=snapshot_definition(THREE, {})), NOW)
    workflow = decision.workflow
    assert workflow is not None
    assert workflow.status is WorkflowStatus.RUNNING
    assert workflow.workflow_version == 2
    (task,) = workflow.tasks
    assert (task.reference_task_name, task.status, task.input_data, task.seq) == (
        "a",
        TaskStatus.SCHEDULED,
        {"x": 7},
        1,
    )
    (effect,) = decision.effects
    assert isinstance(effect, DispatchTask)
    assert effect.dispatch_id == task.task_id
    assert effect.not_before == 0
    assert effect.task.input_data == {"x": 7}
    assert effect.task.response_timeout_seconds == 3600  # Conductor's ad-hoc TaskDef for an unregistered task


def test_three_tasks_run_in_sequence_with_outputs_wired_into_inputs_and_the_workflow_output() -> None:
    workflow = start()
    decision = report(workflow, output={"y": 2})
    assert decision.workflow is not None
    workflow = decision.workflow
    assert workflow.tasks[-1].input_data == {"y": 2, "all": {"y": 2}}
    workflow = report(workflow, output={"z": 3}).workflow
    assert workflow is not None
    assert workflow.tasks[-1].input_data == {"z": 3}
    decision = report(workflow, output={"done": True})
    assert decision.workflow is not None
    assert decision.workflow.status is WorkflowStatus.COMPLETED
    assert decision.workflow.output == {"final": True, "id": "wf-1"}
    assert decision.effects == (WorkflowFinished(workflow_id="wf-1", status=WorkflowStatus.COMPLETED),)
    assert [t.status for t in decision.workflow.tasks] == [TaskStatus.COMPLETED] * 3


def test_without_output_parameters_the_workflow_output_is_the_last_tasks_output() -> None:
    workflow = start(definition(simple("only")))
    decision = report(workflow, output={"v": 42})
    assert decision.workflow is not None
    assert decision.workflow.output == {"v": 42}


def test_a_failed_task_is_retried_as_a_new_instance_after_the_retry_delay() -> None:
    task_defs = {"b": TaskDef(name="b", retry_count=2, retry_delay_seconds=5)}
    workflow = report(start(THREE, task_defs), output={"y": 2}).workflow
    assert workflow is not None
    decision = report(workflow, TaskResultStatus.FAILED, reason="boom", now=NOW + 100)
    assert decision.workflow is not None
    failed, retry = decision.workflow.tasks[-2:]
    assert failed.status is TaskStatus.FAILED
    assert failed.retried
    assert retry.status is TaskStatus.SCHEDULED
    assert retry.task_id != failed.task_id
    assert (retry.retry_count, retry.retried_task_id, retry.seq) == (1, failed.task_id, failed.seq + 1)
    assert retry.input_data == {"y": 2, "all": {"y": 2}}  # re-evaluated against the current state
    (effect,) = decision.effects
    assert isinstance(effect, DispatchTask)
    assert effect.not_before == NOW + 100 + 5_000
    assert decision.workflow.status is WorkflowStatus.RUNNING


def test_when_retries_run_out_the_workflow_fails_with_conductors_reason() -> None:
    task_defs = {"a": TaskDef(name="a", retry_count=1, retry_delay_seconds=0)}
    workflow = start(THREE, task_defs)
    workflow = report(workflow, TaskResultStatus.FAILED, reason="first").workflow
    assert workflow is not None
    assert workflow.tasks[-1].retry_count == 1
    decision = report(workflow, TaskResultStatus.FAILED, reason="second")
    assert decision.workflow is not None
    assert decision.workflow.status is WorkflowStatus.FAILED
    reason = decision.workflow.reason_for_incompletion or ""
    assert "failed with status: FAILED and reason: 'second'" in reason
    assert decision.workflow.failed_reference_task_names == ["a"]
    assert decision.workflow.failed_task_id == decision.workflow.tasks[-1].task_id
    assert isinstance(decision.effects[0], WorkflowFinished)


def test_a_terminal_error_is_never_retried() -> None:
    decision = report(
        start(THREE, {"a": TaskDef(name="a", retry_count=5)}), TaskResultStatus.FAILED_WITH_TERMINAL_ERROR
    )
    assert decision.workflow is not None
    assert decision.workflow.status is WorkflowStatus.FAILED
    assert len(decision.workflow.tasks) == 1


def test_the_workflow_tasks_retry_count_overrides_the_task_defs() -> None:
    workflow_def = definition(simple("a", retryCount=0))
    decision = report(start(workflow_def, {"a": TaskDef(name="a", retry_count=5)}), TaskResultStatus.FAILED)
    assert decision.workflow is not None
    assert decision.workflow.status is WorkflowStatus.FAILED


def test_an_optional_task_that_exhausts_its_retries_completes_with_errors_and_the_workflow_goes_on() -> None:
    workflow_def = definition(simple("a", optional=True, retryCount=0), simple("b"))
    decision = report(start(workflow_def), TaskResultStatus.FAILED, reason="meh")
    assert decision.workflow is not None
    assert [t.status for t in decision.workflow.tasks] == [TaskStatus.COMPLETED_WITH_ERRORS, TaskStatus.SCHEDULED]


def test_late_duplicate_and_mismatched_results_change_nothing() -> None:
    workflow = start()
    done = report(workflow, output={"y": 1}).workflow
    assert done is not None
    stale = TaskResult(workflow_instance_id="wf-1", task_id=workflow.tasks[0].task_id, status=TaskResultStatus.FAILED)
    late = decide(done, TaskResultReceived(result=stale, subject_task_type="a"), NOW + 20)
    assert late.workflow is None
    assert "already COMPLETED" in (late.note or "")
    wrong_type = report(done, task_type="a")  # current task is "b"
    assert wrong_type.workflow is None
    assert "published for type 'a'" in (wrong_type.note or "")
    unknown = TaskResult(workflow_instance_id="wf-1", task_id="nope", status=TaskResultStatus.COMPLETED)
    assert decide(done, TaskResultReceived(result=unknown, subject_task_type="b"), NOW).workflow is None
    again = decide(done, WorkflowStartRequested(request=StartWorkflow(workflow_id="wf-1", name="wf")), NOW)
    assert again.workflow is None
    assert "duplicate start" in (again.note or "")


def test_task_to_domain_routes_explicitly_by_star_and_no_domain() -> None:
    workflow_def = definition(simple("a"), simple("b"), simple("c"))
    routed = start(workflow_def, task_to_domain={"*": "john", "b": "mary", "c": "NO_DOMAIN"})
    assert routed.tasks[0].domain == "john"
    routed = report(routed).workflow
    assert routed is not None
    assert routed.tasks[-1].domain == "mary"
    routed = report(routed).workflow
    assert routed is not None
    assert routed.tasks[-1].domain is None
    assert start(workflow_def).tasks[0].domain is None


def test_domain_fallback_lists_pick_the_first_active_domain_else_the_last_entry() -> None:
    active = {("a", "mary")}

    def is_active(task_type: str, domain: str) -> bool:
        return (task_type, domain) in active

    assert domain_for({"a": "john,mary,NO_DOMAIN"}, "a", is_active) == "mary"
    assert domain_for({"a": "john,NO_DOMAIN"}, "a", is_active) is None
    assert domain_for({"a": "john,paul"}, "a", is_active) == "paul"  # none active: the last, even inactive
    assert domain_for({"*": "mary,x", "b": "y"}, "a", is_active) == "mary"
    assert domain_for({"*": "mary,x", "b": "y"}, "b", is_active) == "y"
    assert domain_for({"a": "NO_DOMAIN"}, "a", is_active) is None


def test_a_start_that_cannot_run_is_recorded_as_failed_with_the_reason() -> None:
    listed = start(definition(simple("a")), task_to_domain={"a": "x,,y"})
    assert listed.status is WorkflowStatus.FAILED
    assert "a domain must not be empty" in (listed.reason_for_incompletion or "")
    llm = definition({"name": "s", "taskReferenceName": "s", "type": "LLM_CHAT_COMPLETE"})
    unsupported = start(llm)
    assert unsupported.status is WorkflowStatus.FAILED
    assert (
        unsupported.reason_for_incompletion == "task 's': task type LLM_CHAT_COMPLETE is not supported yet by Partita"
    )
    missing = start(None, problem="workflow definition 'wf' (any version) is not registered")
    assert missing.status is WorkflowStatus.FAILED
    assert "not registered" in (missing.reason_for_incompletion or "")
    assert missing.tasks == ()


def test_input_templates_fill_gaps_in_task_and_workflow_inputs() -> None:
    workflow_def = definition(
        simple("a", inputParameters={"given": "${workflow.input.x}", "gap": "${workflow.input.nothing}"}),
        inputTemplate={"region": "eu"},
    )
    task_defs = {"a": TaskDef(name="a", input_template={"gap": "filled", "extra": 1})}
    workflow = start(workflow_def, task_defs)
    assert workflow.input == {"x": 1, "region": "eu"}
    assert workflow.tasks[0].input_data == {"given": 1, "gap": "filled", "extra": 1}


def test_an_in_progress_report_redelivers_the_same_task_after_the_callback() -> None:
    workflow = start()
    decision = report(workflow, TaskResultStatus.IN_PROGRESS, output={"pct": 50}, callback_after=30)
    assert decision.workflow is not None
    task = decision.workflow.tasks[-1]
    assert task.task_id == workflow.tasks[-1].task_id
    assert (task.status, task.output_data, task.poll_count) == (TaskStatus.SCHEDULED, {"pct": 50}, 1)
    (effect,) = decision.effects
    assert isinstance(effect, DispatchTask)
    assert effect.dispatch_id == f"{task.task_id}.1"
    assert effect.not_before == NOW + 10 + 30_000


def test_retry_delays_follow_conductors_formulas_and_caps() -> None:
    fixed = TaskDef(name="t", retry_delay_seconds=10)
    assert [retry_delay_ms(fixed, n, "id") for n in range(3)] == [10_000] * 3
    linear = TaskDef(name="t", retry_delay_seconds=10, retry_logic=RetryLogic.LINEAR_BACKOFF, backoff_scale_factor=2)
    assert [retry_delay_ms(linear, n, "id") for n in range(3)] == [20_000, 40_000, 60_000]
    exponential = TaskDef(name="t", retry_delay_seconds=10, retry_logic=RetryLogic.EXPONENTIAL_BACKOFF)
    assert [retry_delay_ms(exponential, n, "id") for n in range(3)] == [10_000, 20_000, 40_000]
    capped = TaskDef(
        name="t", retry_delay_seconds=10, retry_logic=RetryLogic.EXPONENTIAL_BACKOFF, max_retry_delay_seconds=15
    )
    assert retry_delay_ms(capped, 5, "id") == 15_000
    jittered = TaskDef(name="t", retry_delay_seconds=1, backoff_jitter_ms=500)
    delay = retry_delay_ms(jittered, 0, "task-x")
    assert 1_000 <= delay <= 1_500
    assert retry_delay_ms(jittered, 0, "task-x") == delay  # deterministic: replay gives the same schedule


def test_deciding_the_same_event_twice_gives_the_same_decision() -> None:
    workflow = start()
    assert report(workflow, output={"y": 1}) == report(workflow, output={"y": 1})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["ok", "fail", "terminal"]), min_size=1, max_size=20))
def test_any_sequence_of_worker_outcomes_ends_the_workflow_within_its_retry_budget(outcomes: list[str]) -> None:
    task_defs = {name: TaskDef(name=name, retry_count=2, retry_delay_seconds=0) for name in "abc"}
    workflow = start(THREE, task_defs)
    statuses = {
        "ok": TaskResultStatus.COMPLETED,
        "fail": TaskResultStatus.FAILED,
        "terminal": TaskResultStatus.FAILED_WITH_TERMINAL_ERROR,
    }
    for outcome in outcomes:
        if workflow.status.is_terminal:
            break
        decision = report(workflow, statuses[outcome], output={"y": 1, "z": 2, "done": 1})
        assert decision.workflow is not None
        workflow = decision.workflow
    ids = [task.task_id for task in workflow.tasks]
    assert len(ids) == len(set(ids))
    assert all(task.retry_count <= 2 for task in workflow.tasks)
    assert [task.seq for task in workflow.tasks] == list(range(1, len(workflow.tasks) + 1))
    if workflow.status is WorkflowStatus.COMPLETED:
        assert {t.reference_task_name for t in workflow.tasks if t.status is TaskStatus.COMPLETED} == {"a", "b", "c"}
    if workflow.status is WorkflowStatus.RUNNING:
        assert sum(not task.status.is_terminal for task in workflow.tasks) == 1


def test_a_report_for_an_older_delivery_of_the_task_is_ignored() -> None:
    workflow = start()
    first = report(workflow, TaskResultStatus.IN_PROGRESS, callback_after=5, poll_count=0)
    assert first.workflow is not None
    again = report(first.workflow, TaskResultStatus.IN_PROGRESS, callback_after=5, poll_count=0)  # a duplicate
    assert again.workflow is None
    assert "stale result" in (again.note or "")
    current = report(first.workflow, TaskResultStatus.COMPLETED, output={"y": 1}, poll_count=1)
    assert current.workflow is not None
    assert current.workflow.tasks[0].status is TaskStatus.COMPLETED


def test_a_canceled_task_terminates_the_workflow_as_conductor_does() -> None:
    decision = report(start(), TaskResultStatus.CANCELED, reason="operator")
    assert decision.workflow is not None
    assert decision.workflow.tasks[0].status is TaskStatus.CANCELED
    assert decision.workflow.status is WorkflowStatus.TERMINATED
    assert len(decision.workflow.tasks) == 1  # CANCELED is not retriable
