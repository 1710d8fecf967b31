"""Operator commands in the pure decider: pause, resume, retry, restart (reference §6)."""

from __future__ import annotations

from partita.actors.decider import decide
from partita.schemas import (
    PauseWorkflow,
    RestartRequested,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    TaskResultStatus,
    TaskStatus,
    WorkflowStatus,
)

from .test_operators import NOW, complete, pending, run, simple, trail

SEQ = {"name": "seq", "tasks": [simple("a"), simple("b", retryCount=0)]}


def test_pause_stops_scheduling_and_resume_schedules_what_is_due() -> None:
    workflow = run(SEQ)
    paused = decide(workflow, PauseWorkflow(workflow_id="wf"), NOW)
    assert paused.workflow is not None
    assert paused.workflow.status is WorkflowStatus.PAUSED
    still = complete(paused.workflow, "a")  # the running task may finish
    assert still.status is WorkflowStatus.PAUSED
    assert pending(still) == []  # but nothing new is scheduled
    resumed = decide(still, ResumeWorkflow(workflow_id="wf"), NOW + 2)
    assert resumed.workflow is not None
    assert resumed.workflow.status is WorkflowStatus.RUNNING
    assert pending(resumed.workflow) == ["b"]
    assert decide(resumed.workflow, ResumeWorkflow(workflow_id="wf"), NOW).workflow is None  # not PAUSED


def test_retry_runs_the_failed_task_again_as_a_new_instance() -> None:
    failed = complete(complete(run(SEQ), "a"), "b", status=TaskResultStatus.FAILED)
    assert failed.status is WorkflowStatus.FAILED
    retried = decide(failed, RetryWorkflow(workflow_id="wf"), NOW + 5)
    assert retried.workflow is not None
    assert retried.workflow.status is WorkflowStatus.RUNNING
    assert retried.workflow.reason_for_incompletion is None
    assert trail(retried.workflow) == [("a", "COMPLETED"), ("b", "FAILED"), ("b", "SCHEDULED")]
    assert retried.workflow.tasks[-1].retried_task_id == failed.tasks[-1].task_id
    assert complete(retried.workflow, "b").status is WorkflowStatus.COMPLETED
    done = complete(retried.workflow, "b")
    nothing = decide(done, RetryWorkflow(workflow_id="wf"), NOW)
    assert nothing.workflow is None  # a COMPLETED workflow cannot be retried


def test_restart_runs_everything_again_with_fresh_task_ids() -> None:
    done = complete(complete(run(SEQ), "a"), "b")
    restarted = decide(done, RestartRequested(command=RestartWorkflow(workflow_id="wf")), NOW + 9)
    workflow = restarted.workflow
    assert workflow is not None
    assert workflow.status is WorkflowStatus.RUNNING
    assert trail(workflow) == [("a", "SCHEDULED")]
    assert workflow.tasks[0].task_id not in {t.task_id for t in done.tasks}  # dedupe must not drop it
    assert workflow.run_count == 1
    running = decide(workflow, RestartRequested(command=RestartWorkflow(workflow_id="wf")), NOW)
    assert running.workflow is None  # only ended workflows restart
    assert workflow.tasks[0].status is TaskStatus.SCHEDULED


def test_skip_records_a_future_task_as_skipped_and_moves_past_it() -> None:
    from partita.schemas import SkipTask

    workflow = run({"name": "three", "tasks": [simple("a"), simple("b"), simple("c")]})
    skipped = decide(workflow, SkipTask(workflow_id="wf", task_ref_name="b", task_output={"v": 1}), NOW + 1)
    assert skipped.workflow is not None
    assert trail(skipped.workflow) == [("a", "SCHEDULED"), ("b", "SKIPPED")]
    after = complete(skipped.workflow, "a")
    assert trail(after) == [("a", "COMPLETED"), ("b", "SKIPPED"), ("c", "SCHEDULED")]
    assert decide(after, SkipTask(workflow_id="wf", task_ref_name="a"), NOW).workflow is None  # already ran


def test_rerun_from_a_task_keeps_earlier_tasks_and_reruns_that_task_with_its_id() -> None:
    from partita.schemas import DispatchTask, RerunWorkflow

    three = {"name": "three", "tasks": [simple("a"), simple("b", retryCount=0), simple("c")]}
    failed = complete(complete(run(three), "a"), "b", status=TaskResultStatus.FAILED)
    b = failed.tasks[1]
    decision = decide(
        failed, RerunWorkflow(workflow_id="wf", re_run_from_task_id=b.task_id, task_input={"x": 2}), NOW + 9
    )
    rerun = decision.workflow
    assert rerun is not None
    assert rerun.status is WorkflowStatus.RUNNING
    assert trail(rerun) == [("a", "COMPLETED"), ("b", "SCHEDULED")]
    assert rerun.tasks[1].task_id == b.task_id
    assert rerun.tasks[1].input_data == {"x": 2}
    (dispatched,) = [e for e in decision.effects if isinstance(e, DispatchTask)]
    assert dispatched.task.task_id == b.task_id
    assert dispatched.dispatch_id != b.task_id  # not dropped as a duplicate of the first dispatch
    assert complete(complete(rerun, "b"), "c").status is WorkflowStatus.COMPLETED


def test_a_rerun_of_a_sync_system_task_runs_it_again_on_the_new_task_input() -> None:
    """JsonJQTransformSpec's rerun: Conductor's rerunWF sets the task's input and executes it again."""
    from partita.schemas import RerunWorkflow

    jq = {"name": "jq", "taskReferenceName": "jq", "type": "JSON_JQ_TRANSFORM",
          "inputParameters": {"v": "${workflow.input.v}", "queryExpression": ".v + 1"}}  # fmt: skip
    failed = run({"name": "calc", "tasks": [jq, simple("after")]}, {"v": "text"})
    assert failed.status is WorkflowStatus.FAILED
    (task,) = failed.tasks
    new_input = {"v": 41, "queryExpression": ".v + 1"}
    decision = decide(
        failed, RerunWorkflow(workflow_id="wf", re_run_from_task_id=task.task_id, task_input=new_input), NOW
    )
    rerun = decision.workflow
    assert rerun is not None
    assert trail(rerun) == [("jq", "COMPLETED"), ("after", "SCHEDULED")]
    assert rerun.tasks[0].task_id == task.task_id
    assert rerun.tasks[0].input_data == new_input
    assert rerun.tasks[0].output_data["result"] == 42


def test_a_rerun_gives_every_later_task_a_fresh_id() -> None:
    from partita.schemas import RerunWorkflow

    three = {"name": "three", "tasks": [simple("a"), simple("b", retryCount=0), simple("c")]}
    failed = complete(complete(run(three), "a"), "b", status=TaskResultStatus.FAILED)
    rerun = decide(failed, RerunWorkflow(workflow_id="wf", re_run_from_task_id=failed.tasks[0].task_id), NOW + 9)
    assert rerun.workflow is not None
    again = complete(rerun.workflow, "a")
    old_ids = {t.task_id for t in failed.tasks}
    assert again.tasks[-1].reference_task_name == "b"
    assert again.tasks[-1].task_id not in old_ids  # a reused id would be dropped by message-id dedupe
