"""InlineSubWorkflowFromExpressionSpec (conductor-oss/conductor
test-harness/.../integration/InlineSubWorkflowFromExpressionSpec.groovy), ported: the spec builds its definitions
in code (buildParentWorkflowDef :177-217, buildComplexSubWorkflowDef :240-332); they are transcribed here as the
JSON those objects serialize to. The SUB_WORKFLOW system task's execution and ``conditions.eventually`` are waits
for the state the spec asserts."""

from __future__ import annotations

import msgspec

from partita.schemas import WorkflowDef
from partita.transport import Client, Connection

from ._tasks_steps import ended, step
from .conductor import JSON, conductor_server


def parent_workflow_def() -> JSON:
    # InlineSubWorkflowFromExpressionSpec.groovy:177 buildParentWorkflowDef()
    return {
        "name": "test_inline_subwf_expr_parent_wf",
        "version": 1,
        "schemaVersion": 2,
        "ownerEmail": "test@harness.com",
        "tasks": [
            {
                "name": "integration_task_1",
                "taskReferenceName": "wf_builder",
                "type": "SIMPLE",
                "inputParameters": {"tp1": "${workflow.input.threshold}", "tp2": "${workflow.input.iterations}"},
            },
            {
                "name": "exec_plan",
                "taskReferenceName": "exec",
                "type": "SUB_WORKFLOW",
                "inputParameters": {
                    "threshold": "${workflow.input.threshold}",
                    "iterations": "${workflow.input.iterations}",
                },
                "subWorkflowParam": {
                    "name": "complex_dynamic_plan_wf",
                    "version": 1,
                    "workflowDefinition": "${wf_builder.output.result}",
                },
            },
        ],
        "inputParameters": ["iterations", "threshold"],
        "outputParameters": {"loopsDone": "${exec.output.loopsDone}", "allDone": "${exec.output.allDone}"},
    }


def complex_sub_workflow_def() -> JSON:
    # InlineSubWorkflowFromExpressionSpec.groovy:240 buildComplexSubWorkflowDef()
    compute = {
        "name": "compute",
        "taskReferenceName": "compute",
        "type": "INLINE",
        "inputParameters": {
            "evaluatorType": "javascript",
            "expression": "function f() { return $.iteration * $.threshold; } f();",
            "iteration": "${do_loop.output.iteration}",
            "threshold": "${workflow.input.threshold}",
        },
    }
    high_task = {
        "name": "integration_task_1",
        "taskReferenceName": "high_task",
        "type": "SIMPLE",
        "inputParameters": {"product": "${compute.output.result}", "category": "high"},
    }
    low_result = {
        "name": "low_result",
        "taskReferenceName": "low_result",
        "type": "INLINE",
        "inputParameters": {
            "evaluatorType": "javascript",
            "expression": 'function f() { return {label: "low", product: $.product}; } f();',
            "product": "${compute.output.result}",
        },
    }
    route = {
        "name": "route",
        "taskReferenceName": "route",
        "type": "SWITCH",
        "evaluatorType": "javascript",
        "expression": "$.product > $.threshold",
        "inputParameters": {"product": "${compute.output.result}", "threshold": "${workflow.input.threshold}"},
        "decisionCases": {"true": [high_task]},
        "defaultCase": [low_result],
    }
    do_loop = {
        "name": "do_loop",
        "taskReferenceName": "do_loop",
        "type": "DO_WHILE",
        "inputParameters": {"iters": "${workflow.input.iterations}", "threshold": "${workflow.input.threshold}"},
        "loopCondition": "$.do_loop['iteration'] < $.iters",
        "loopOver": [compute, route],
    }
    final_result = {
        "name": "final_result",
        "taskReferenceName": "final_result",
        "type": "INLINE",
        "inputParameters": {
            "evaluatorType": "javascript",
            "expression": "function f() { return {loopsDone: $.loopsDone, allDone: true}; } f();",
            "loopsDone": "${do_loop.output.iteration}",
        },
    }
    return {
        "name": "complex_dynamic_plan_wf",
        "version": 1,
        "schemaVersion": 2,
        "tasks": [do_loop, final_result],
        "inputParameters": ["iterations", "threshold"],
        "outputParameters": {
            "loopsDone": "${final_result.output.result.loopsDone}",
            "allDone": "${final_result.output.result.allDone}",
        },
        "timeoutPolicy": "ALERT_ONLY",
        "timeoutSeconds": 0,
    }


async def test_sub_workflow_definition_from_a_string_expression(conn: Connection, client: Client) -> None:
    # InlineSubWorkflowFromExpressionSpec.groovy:67 "Sub-workflow definition from a String expression runs a
    # complex DO_WHILE with SWITCH, INLINE, and SIMPLE tasks"
    async with conductor_server(conn, client) as conductor:
        sub_definition = complex_sub_workflow_def()
        parent_definition = msgspec.convert(parent_workflow_def(), WorkflowDef)

        # :76-87 started with the definition inline: wf_builder is SCHEDULED.
        workflow_id = await client.start(
            parent_definition.name,
            {"iterations": 2, "threshold": 5},
            correlation_id="inline-subwf-expr-test",
            workflow_def=parent_definition,
        )
        workflow = await step(conductor, workflow_id, 1)
        assert workflow["status"] == "RUNNING", workflow.get("reasonForIncompletion")
        assert len(workflow["tasks"]) == 1
        task = workflow["tasks"][0]
        assert (task["taskType"], task["referenceTaskName"], task["status"]) == (
            "integration_task_1",
            "wf_builder",
            "SCHEDULED",
        )

        # :89-110 wf_builder returns the sub-workflow's definition: the SUB_WORKFLOW task starts.
        await conductor.complete("integration_task_1", {"result": sub_definition})
        workflow = await conductor.settle(
            workflow_id,
            lambda w: ended(w) or (len(w["tasks"]) == 2 and w["tasks"][1]["status"] != "SCHEDULED"),
            what="the SUB_WORKFLOW task started",
        )
        assert workflow["status"] == "RUNNING", workflow.get("reasonForIncompletion")
        assert len(workflow["tasks"]) == 2
        assert (workflow["tasks"][1]["taskType"], workflow["tasks"][1]["status"]) == ("SUB_WORKFLOW", "IN_PROGRESS")

        # :112-119 the sub-workflow runs the inline definition.
        sub_id = workflow["tasks"][1]["subWorkflowId"]
        sub = await conductor.settle(sub_id, lambda w: w["status"] != "NOT_STARTED", what="the sub-workflow")
        assert sub["status"] == "RUNNING", sub.get("reasonForIncompletion")

        # :121-132 iteration 1 (5 > 5 false) runs by itself; iteration 2 (10 > 5) schedules the high task.
        def high_scheduled(w: JSON) -> bool:
            return ended(w) or any(
                t["taskType"] == "integration_task_1"
                and t["status"] == "SCHEDULED"
                and t["inputData"].get("category") == "high"
                for t in w["tasks"]
            )

        sub = await conductor.settle(sub_id, high_scheduled, what="the high task scheduled")
        assert sub["status"] == "RUNNING", sub.get("reasonForIncompletion")

        # :134-151 the high task completed: the loop exits, the sub-workflow completes with the summary.
        await conductor.complete("integration_task_1", {"label": "high", "done": True})
        sub = await conductor.settle(sub_id, ended, what="the sub-workflow to end")
        assert sub["status"] == "COMPLETED", sub.get("reasonForIncompletion")
        assert sub["output"]["loopsDone"] == 2
        assert sub["output"]["allDone"] is True

        # :153-160 the parent completes.
        workflow = await conductor.settle(workflow_id, ended, what="the parent to end")
        assert workflow["status"] == "COMPLETED", workflow.get("reasonForIncompletion")
        assert (workflow["tasks"][1]["taskType"], workflow["tasks"][1]["status"]) == ("SUB_WORKFLOW", "COMPLETED")
