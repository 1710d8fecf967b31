"""Operators and sync system tasks: what each task type does when scheduled, and how it advances.

* ``execute`` runs when a task instance is created: operators and sync system tasks finish (or fail) on the
  spot, inside the decision, exactly as Conductor's DeciderService runs them inline.
* ``progress`` runs on every reconciliation walk and answers "has this task, with everything it contains,
  finished successfully?", scheduling what it contains on the way (cases, branches, loop iterations).

Reference: ``shared/conductor-reference.md`` §3.
"""

from __future__ import annotations

import json
import uuid
from typing import Final

import msgspec
from msgspec import structs

from partita.schemas import (
    Limits,
    ScheduleTimer,
    StartChild,
    StartWorkflow,
    Task,
    TaskStatus,
    TimerFired,
    WorkflowDef,
    WorkflowStatus,
    WorkflowTask,
)
from partita.schemas.definitions import iter_workflow_tasks
from partita.schemas.limits import MAX_SAFE_DEPTH, json_depth

from .expressions import resolve
from .scripts import ScriptError, evaluate_jq, to_case
from .scripts import evaluate_javascript as _evaluate_javascript
from .state import DecisionState, definition_ref, loop_ref, workflow_id_from
from .waits import wait_deadline

# Conductor's TaskType.isBuiltIn: never retried.
BUILT_IN: Final = frozenset(
    {"DECISION", "SWITCH", "FORK_JOIN", "FORK_JOIN_DYNAMIC", "JOIN", "EXCLUSIVE_JOIN", "DO_WHILE"}
)
# Types that do not go to a worker. DYNAMIC only when its task name cannot be resolved.
SYSTEM_TASK_TYPES: Final = BUILT_IN | frozenset(
    {
        "SET_VARIABLE",
        "FORK",
        "TERMINATE",
        "NOOP",
        "INLINE",
        "LAMBDA",
        "JSON_JQ_TRANSFORM",
        "DYNAMIC",
        "WAIT",
        "HUMAN",
        "SUB_WORKFLOW",
        "START_WORKFLOW",
    }
)
# System tasks that nodes execute like workers (through the task stream, outside the decider): their
# IN_PROGRESS means "waiting to be completed from outside" (asyncComplete), never "deliver me again".
NODE_TASK_TYPES: Final = frozenset({"HTTP", "EVENT"})
JAVASCRIPT_EVALUATORS: Final = frozenset({"javascript", "graaljs"})
MAX_VARIABLES_BYTES: Final = 256 * 1024  # Conductor's maxWorkflowVariablesPayloadSizeThreshold
MAX_ITERATIONS_PER_DECISION: Final = 1000


def uses_scripts(definition: WorkflowDef | None) -> bool:
    """Whether deciding this workflow may run a script (JavaScript or jq), which can take up to its time
    limit: the shell then decides in a worker thread so the node's event loop never waits on a script."""
    if definition is None:
        return False
    for task in definition.iter_tasks():
        if task.type in ("INLINE", "LAMBDA", "JSON_JQ_TRANSFORM", "DO_WHILE", "FORK_JOIN_DYNAMIC"):
            return True  # (a dynamic fork may fork scripts)
        if task.type == "DECISION" and task.case_expression:
            return True
        if task.type == "SWITCH" and (task.evaluator_type or "").lower() in JAVASCRIPT_EVALUATORS:
            return True
    return False


def evaluate_javascript(expression: str, bindings: dict[str, object], *, now: int, seed: str = "") -> object:
    """:func:`.scripts.evaluate_javascript`, with a result too deep to work with made a :class:`ScriptError`
    like any other script failure. QuickJS refuses only JSON nested deeper than its own stack allows; what it
    returns is converted with the stdlib ``json`` module, which raises ``RecursionError`` from about a
    thousand levels (fewer in a deep stack), and a SWITCH encodes its result again to pick a case. Either
    must fail the task, not the decision."""
    try:
        value = _evaluate_javascript(expression, bindings, now=now, seed=seed)
    except RecursionError:  # the bindings are within the payload limits: it is the result that is too deep
        raise ScriptError("the script's result is nested too deeply to read") from None
    if json_depth(value) > MAX_SAFE_DEPTH:
        raise ScriptError("the script's result is nested too deeply to read")
    return value


def _walk(st: DecisionState, tasks: list[WorkflowTask], iteration: int) -> bool:
    from .decide import walk  # imported late: decide imports this module

    return walk(st, tasks, iteration=iteration)


def fail(st: DecisionState, task: Task, status: TaskStatus, reason: str, output: dict[str, object]) -> Task:
    failed = structs.replace(
        task, status=status, reason_for_incompletion=reason, output_data=output, end_time=st.now, start_time=st.now
    )
    st.replace(failed)
    from .decide import task_failed  # imported late: decide imports this module

    task_failed(st, failed)
    # What the failure became: a new attempt (retry), COMPLETED_WITH_ERRORS (optional), or itself.
    return st.latest(failed.reference_task_name) or failed


def _complete(
    st: DecisionState, task: Task, output: dict[str, object], status: TaskStatus = TaskStatus.COMPLETED
) -> Task:
    done = structs.replace(
        task, status=status, output_data=output, start_time=task.start_time or st.now, end_time=st.now
    )
    st.replace(done)
    return done


def task_type_and_name(workflow_task: WorkflowTask, resolved_input: dict[str, object]) -> tuple[str, str]:
    """``(taskType, taskDefName)`` of a new instance: a worker task's type is its name (DYNAMIC: the name its
    input names), a system task's type is the system type."""
    if workflow_task.type == "SIMPLE":
        return workflow_task.name, workflow_task.name
    if workflow_task.type == "DYNAMIC":
        name = resolved_input.get(workflow_task.dynamic_task_name_param or "")
        if isinstance(name, str) and name:
            return name, name
    recorded = _RECORDED_AS.get(workflow_task.type)
    if recorded is not None:
        return recorded, recorded
    return workflow_task.type, workflow_task.name


# Conductor's mappers record these with a fixed taskType and taskDefName (both kinds of fork as FORK).
_RECORDED_AS: Final = {
    "FORK_JOIN": "FORK",
    "FORK_JOIN_DYNAMIC": "FORK",
    "JOIN": "JOIN",
    "EXCLUSIVE_JOIN": "EXCLUSIVE_JOIN",
    "SWITCH": "SWITCH",
    "DECISION": "DECISION",
}


def recorded_input(st: DecisionState, workflow_task: WorkflowTask, resolved: dict[str, object]) -> dict[str, object]:
    """The inputData Conductor's mapper records for a new instance: the resolved inputParameters, except a JOIN
    (``joinOn`` only: after a FORK_JOIN_DYNAMIC, what it forked), an EXCLUSIVE_JOIN (``joinOn`` and
    ``defaultExclusiveJoinTask``) and a NOOP (nothing)."""
    match workflow_task.type:
        case "JOIN":
            return {"joinOn": list(workflow_task.join_on or st.dynamic_join_on or [])}
        case "EXCLUSIVE_JOIN":
            recorded: dict[str, object] = {"joinOn": list(workflow_task.join_on)}
            if workflow_task.default_exclusive_join_task:
                recorded["defaultExclusiveJoinTask"] = list(workflow_task.default_exclusive_join_task)
            return recorded
        case "NOOP":
            return {}
        case _:
            return resolved


# --- execute: a new instance of a system task --------------------------------------------------------


def execute(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> Task:
    match workflow_task.type:
        case "SWITCH" | "DECISION":
            return _execute_switch(st, workflow_task, task)
        case "FORK_JOIN" | "NOOP":
            return _complete(st, task, {})
        case "FORK_JOIN_DYNAMIC":
            return _execute_dynamic_fork(st, workflow_task, task)
        case "JOIN" | "EXCLUSIVE_JOIN":
            return _start(st, task, {})
        case "DO_WHILE":
            return _start_loop(st, workflow_task, task)
        case "SET_VARIABLE":
            return _execute_set_variable(st, task)
        case "TERMINATE":
            return _execute_terminate(st, task)
        case "INLINE" | "LAMBDA":
            return _execute_script(st, workflow_task, task)
        case "JSON_JQ_TRANSFORM":
            return _execute_jq(st, task)
        case "WAIT":
            return _execute_wait(st, task)
        case "HUMAN":
            return _start(st, task, {})
        case "SUB_WORKFLOW":
            return _execute_sub_workflow(st, workflow_task, task)
        case "START_WORKFLOW":
            return _execute_start_workflow(st, task)
        case "DYNAMIC":
            parameter = workflow_task.dynamic_task_name_param
            reason = (
                f"Cannot map a dynamic task based on the parameter and input. "
                f"Parameter= {parameter}, input= {json.dumps(task.input_data, default=str)}"
            )
            return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, {})
        case other:
            return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, f"task type {other} cannot run here", {})


def _start(st: DecisionState, task: Task, output: dict[str, object]) -> Task:
    started = structs.replace(task, status=TaskStatus.IN_PROGRESS, output_data=output, start_time=st.now)
    st.replace(started)
    return started


def _execute_wait(st: DecisionState, task: Task) -> Task:
    """IN_PROGRESS until ``duration`` has passed, ``until`` has come (a durable JetStream schedule), or, with
    neither, until something completes it (``partita task complete``)."""
    duration, until = task.input_data.get("duration"), task.input_data.get("until")
    if duration is not None and until is not None:
        reason = "WAIT task cannot have both 'duration' and 'until'"
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, {})
    try:
        at = wait_deadline(task.input_data, st.now)
    except ValueError as exc:
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, str(exc), {})
    started = _start(st, task, {})
    if at is not None:
        fired = TimerFired(workflow_id=st.workflow.workflow_id, task_id=task.task_id)
        st.effects.append(ScheduleTimer(timer_id=task.task_id, at=at, event=fired))
        started = structs.replace(started, callback_after_seconds=max(0, (at - st.now) // 1000))
        st.replace(started)
    return started


_CHILD_NAMESPACE = uuid.UUID("3d0e8f3c-2f6b-4b7e-a1f2-7b9c6c1d4e55")


def _child_id(st: DecisionState, task: Task) -> str:
    return workflow_id_from(st, _CHILD_NAMESPACE, f"{st.workflow.workflow_id}/{task.task_id}")


def _inline_definition(value: object) -> WorkflowDef | None:
    if value is None:
        return None
    if isinstance(value, WorkflowDef):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"the inline workflow definition must be an object, got {type(value).__name__}")
    try:
        return msgspec.convert(value, WorkflowDef)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid inline workflow definition: {exc}") from exc


def _execute_sub_workflow(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> Task:
    """Start the child (name/version, or an inline definition) with this task's input; the task stays
    IN_PROGRESS and mirrors the child when it ends (``ChildFinished``)."""
    params = workflow_task.sub_workflow_param
    if params is None:
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, "SUB_WORKFLOW requires subWorkflowParam", {})
    document = st.document()
    inline = params.workflow_definition
    try:
        definition = _inline_definition(resolve(inline, document) if isinstance(inline, str) else inline)
    except ValueError as exc:
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, str(exc), {})
    name = resolve(params.name, document) if params.name else (definition.name if definition else None)
    if not isinstance(name, str) or not name:
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, "subWorkflowParam.name resolved to nothing", {})
    child_id = _child_id(st, task)
    request = StartWorkflow(
        workflow_id=child_id,
        name=name,
        version=params.version,
        input=task.input_data,
        correlation_id=st.workflow.correlation_id,
        task_to_domain=dict(params.task_to_domain or st.workflow.task_to_domain),
        workflow_def=definition,
        priority=st.workflow.priority,
        parent_workflow_id=st.workflow.workflow_id,
        parent_workflow_task_id=task.task_id,
    )
    st.effects.append(StartChild(request=request))
    started = structs.replace(_start(st, task, {"subWorkflowId": child_id}), sub_workflow_id=child_id)
    st.replace(started)
    return started


def _execute_start_workflow(st: DecisionState, task: Task) -> Task:
    """Fire and forget: start the workflow described by ``startWorkflow`` (a StartWorkflowRequest), inheriting
    this workflow's correlationId and taskToDomain when it gives none; COMPLETED with its ``workflowId``."""
    spec = task.input_data.get("startWorkflow")
    if spec is None:  # Conductor's StartWorkflow: FAILED (retried as its TaskDef allows), in its words
        return fail(st, task, TaskStatus.FAILED, "Missing 'startWorkflow' in input data.", {})
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        reason = "startWorkflow validation failed. 'name' -> workflow name cannot be empty or null. "
        return fail(st, task, TaskStatus.FAILED, reason, {})
    try:
        definition = _inline_definition(spec.get("workflowDef"))
        version = spec.get("version")
        request = StartWorkflow(
            workflow_id=_child_id(st, task),
            name=spec["name"],
            version=int(version) if version is not None else None,
            input=dict(spec.get("input") or {}),
            correlation_id=spec.get("correlationId") or st.workflow.correlation_id,
            task_to_domain=dict(spec.get("taskToDomain") or st.workflow.task_to_domain),
            workflow_def=definition,
            priority=int(spec.get("priority") or 0),
        )
    except (ValueError, TypeError) as exc:
        return fail(st, task, TaskStatus.FAILED, f"Error reading StartWorkflowRequest. {exc}", {})
    st.effects.append(StartChild(request=request))
    return _complete(st, task, {"workflowId": request.workflow_id})


def _script_bindings(task: Task) -> dict[str, object]:
    return task.input_data


def _execute_switch(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> Task:
    try:
        case = to_case(_case_value(st, workflow_task, task))
    except ScriptError as exc:
        return fail(st, task, TaskStatus.FAILED, f"evaluation failed: {exc}", {"error": str(exc)})
    # Conductor's mappers: a DECISION records only the case (its inputs were for choosing it), a SWITCH its
    # inputs and the case; both say "hasChildren" when the chosen case has tasks.
    if workflow_task.type == "DECISION":
        output: dict[str, object] = {"caseOutput": [case]}
        recorded: dict[str, object] = {"case": case}
    else:
        output = {"evaluationResult": [case], "selectedCase": case}
        recorded = {**task.input_data, "case": case}
    if _case_tasks(workflow_task, case):
        recorded["hasChildren"] = "true"
    return _complete(st, structs.replace(task, input_data=recorded), output)


def _case_value(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> object:
    if workflow_task.type == "DECISION":
        if workflow_task.case_expression:
            return evaluate_javascript(
                workflow_task.case_expression, _script_bindings(task), now=st.now, seed=task.task_id
            )
        return task.input_data.get(workflow_task.case_value_param or "")
    evaluator = (workflow_task.evaluator_type or "value-param").lower()
    if evaluator == "value-param":
        return task.input_data.get(workflow_task.expression or "")
    if evaluator in JAVASCRIPT_EVALUATORS:
        return evaluate_javascript(
            workflow_task.expression or "", _script_bindings(task), now=st.now, seed=task.task_id
        )
    raise ScriptError(f"evaluatorType {workflow_task.evaluator_type!r} is not supported")


def selected_case(workflow_task: WorkflowTask, task: Task) -> list[WorkflowTask]:
    """The task list a finished SWITCH/DECISION chose (see :func:`_case_tasks`)."""
    output = task.output_data
    chosen = output.get("selectedCase") if workflow_task.type == "SWITCH" else None
    if workflow_task.type == "DECISION":
        cases = output.get("caseOutput")
        chosen = cases[0] if isinstance(cases, list) and cases else None
    return _case_tasks(workflow_task, chosen)


def _case_tasks(workflow_task: WorkflowTask, chosen: object) -> list[WorkflowTask]:
    """The tasks of case ``chosen``: its list if the key exists (for a SWITCH even if empty, as in Conductor
    HEAD; a DECISION takes the default case for an empty list, as Conductor's DecisionTaskMapper), else
    ``defaultCase``."""
    if isinstance(chosen, str) and chosen in workflow_task.decision_cases:
        tasks = workflow_task.decision_cases[chosen]
        if tasks or workflow_task.type == "SWITCH":
            return tasks
    return workflow_task.default_case


class _ForkInputError(ValueError):
    """The input cannot be forked: Conductor's ForkJoinDynamicTaskMapper throws TerminateWorkflowException, so
    the workflow fails and no FORK is recorded."""


def _execute_dynamic_fork(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> Task:
    """Work out the branches (one task each) and record them in the input, as Conductor's mapper does
    (``forkedTasks``, ``forkedTaskDefs``); ``progress`` schedules them.

    Two modes, as in Conductor: ``forkTaskInputs`` (a list; one ``forkTaskName`` task, or ``forkTaskWorkflow``
    sub-workflow, per item, refs ``_<name>_<i>``, input ``__index``), or ``dynamicForkTasksParam`` (a list of
    WorkflowTasks) with ``dynamicForkTasksInputParamName`` (a map ref → input). Each forked task without an
    inline ``taskDefinition`` gets the TaskDef registered under its name (``metadataDAO.getTaskDef``)."""
    try:
        branches = _forked_tasks(workflow_task, task, st.limits)
    except _ForkInputError as exc:
        st.remove({task.task_id})
        st.end(WorkflowStatus.FAILED, str(exc))
        return task
    except ValueError as exc:
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, str(exc), {})
    seen = {t.reference_task_name for t in st.tasks} | {wt.task_reference_name for wt in _all_defined(st)}
    clashes = [b.task_reference_name for b in branches if b.task_reference_name in seen]
    if clashes:
        reason = f"dynamically forked references clash with existing ones: {clashes}"
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, {})
    branches = [_with_registered_def(st, branch) for branch in branches]
    recorded = {
        **task.input_data,
        "forkedTasks": [b.task_reference_name for b in branches],
        "forkedTaskDefs": msgspec.to_builtins(branches),
    }
    return _complete(st, structs.replace(task, input_data=recorded), {})


def _with_registered_def(st: DecisionState, forked: WorkflowTask) -> WorkflowTask:
    if forked.task_definition is not None or forked.type not in ("SIMPLE", "DYNAMIC"):
        return forked
    registered = st.task_defs.get(forked.name)
    return forked if registered is None else structs.replace(forked, task_definition=registered)


def _all_defined(st: DecisionState) -> list[WorkflowTask]:
    definition = st.workflow.workflow_definition
    return definition.iter_tasks() if definition is not None else []


def _forked_tasks(workflow_task: WorkflowTask, task: Task, limits: Limits) -> list[WorkflowTask]:
    """The branches to fork; raises :class:`ValueError` with the reason, also for more than the limit allows
    (counted before any branch is built)."""
    data = task.input_data
    items = data.get("forkTaskInputs")
    if isinstance(items, list):
        _check_width(len(items), limits)
        workflow_name = data.get("forkTaskWorkflow")
        name = data.get("forkTaskName") or workflow_name
        if not isinstance(name, str) or not name:
            raise ValueError("forkTaskInputs needs forkTaskName (or forkTaskWorkflow)")
        kind = "SUB_WORKFLOW" if workflow_name else str(data.get("forkTaskType") or "SIMPLE")
        forked = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):  # Conductor wraps a value that is not a map
                item = {"input": item}
            raw: dict[str, object] = {
                "name": name,
                "taskReferenceName": f"_{name}_{index}",
                "type": kind,
                "inputParameters": {**item, "__index": index},
            }
            if workflow_name:
                version = data.get("forkTaskWorkflowVersion")
                version = int(version) if isinstance(version, str) and version.isdigit() else version
                raw["subWorkflowParam"] = {"name": workflow_name, "version": version}
            forked.append(msgspec.convert(raw, WorkflowTask))
        return forked
    tasks_key = workflow_task.dynamic_fork_tasks_param or workflow_task.dynamic_fork_join_tasks_param
    listed = data.get(tasks_key or "")
    if not isinstance(listed, list):
        raise _ForkInputError(
            f"Input '{tasks_key}' is invalid. Cannot deserialize a list of Workflow Tasks from '{listed}'"
        )
    _check_width(len(listed), limits)
    inputs = data.get(workflow_task.dynamic_fork_tasks_input_param_name or "", {})
    if not isinstance(inputs, dict):
        raise _ForkInputError(
            f"Input to the dynamically forked tasks is not a map -> expecting a map of K,V  but found {inputs}"
        )
    try:
        defined = msgspec.convert(listed, list[WorkflowTask])
    except msgspec.ValidationError as exc:
        raise _ForkInputError(
            f"Input '{tasks_key}' is invalid. Cannot deserialize a list of Workflow Tasks from '{listed}': {exc}"
        ) from exc
    forked = []
    for forked_task in defined:
        given = inputs.get(forked_task.task_reference_name)
        if given is not None and not isinstance(given, dict):  # Conductor's generic cast fails on it
            raise _ForkInputError(
                "Tasks could not be dynamically forked due to invalid input: the input of "
                f"{forked_task.task_reference_name!r} is a {type(given).__name__}, not a map"
            )
        parameters = given if given is not None else forked_task.input_parameters
        forked.append(structs.replace(forked_task, input_parameters=parameters))
    return forked


def _check_width(branches: int, limits: Limits) -> None:
    too_wide = limits.fork_width_problem(branches)
    if too_wide:
        raise ValueError(too_wide)


def _execute_set_variable(st: DecisionState, task: Task) -> Task:
    variables = {**st.workflow.variables, **task.input_data}
    size = len(json.dumps(variables, default=str, separators=(",", ":"), ensure_ascii=False).encode())  # Jackson's
    if size > MAX_VARIABLES_BYTES:
        reason = (
            f"The variables payload size: {size} of workflow: {st.workflow.workflow_id} is greater than the "
            f"permissible limit: {MAX_VARIABLES_BYTES // 1024} kilobytes"
        )
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, {})
    st.set_variables(variables)
    return _complete(st, task, {})


_TERMINATION = {
    "COMPLETED": WorkflowStatus.COMPLETED,
    "FAILED": WorkflowStatus.FAILED,
    "TERMINATED": WorkflowStatus.TERMINATED,
}


def _execute_terminate(st: DecisionState, task: Task) -> Task:
    status = _TERMINATION.get(str(task.input_data.get("terminationStatus")))
    if status is None:
        reason = (
            f"terminationStatus must be one of {sorted(_TERMINATION)}, got {task.input_data.get('terminationStatus')!r}"
        )
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, {})
    workflow_output = task.input_data.get("workflowOutput")
    if workflow_output is None:
        output: dict[str, object] = {}
    elif isinstance(workflow_output, dict):
        output = dict(workflow_output)
    else:
        output = {"output": workflow_output}
    done = _complete(st, task, output)
    termination_reason = task.input_data.get("terminationReason")
    if termination_reason is None or not str(termination_reason).strip():  # Conductor's endExecution
        termination_reason = f"Workflow is {status} by TERMINATE task: {task.task_id}"
    if status is not WorkflowStatus.COMPLETED and st.failed_task is None:
        st.failed_task = done  # Conductor: the TERMINATE task is the workflow's failedTaskId
    st.end(status, str(termination_reason), output)
    return done


def _execute_script(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> Task:
    if workflow_task.type == "LAMBDA":
        # Conductor's Lambda reads inputData.scriptExpression (from inputParameters); a top-level
        # scriptExpression is Partita's older form, still read.
        body = task.input_data.get("scriptExpression", workflow_task.script_expression)
        if not isinstance(body, str) or not body.strip():
            reason = (
                "Empty 'scriptExpression' in Lambda task's input parameters. A non-empty String value must be provided."
            )
            return fail(st, task, TaskStatus.FAILED, reason, {})
        expression = f"function scriptFun(){{{body}}} scriptFun();"
        evaluator: str = "javascript"
    else:
        expression = str(task.input_data.get("expression") or "")
        evaluator = str(task.input_data.get("evaluatorType") or "javascript").lower()
        if not expression:
            return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, "INLINE task requires 'expression'", {})
    if evaluator == "value-param":
        return _complete(st, task, {"result": task.input_data.get(expression)})
    if evaluator not in JAVASCRIPT_EVALUATORS:
        reason = f"evaluatorType {evaluator!r} is not supported (javascript, graaljs, value-param)"
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, {})
    try:
        value = evaluate_javascript(expression, _script_bindings(task), now=st.now, seed=task.task_id)
    except ScriptError as exc:
        return fail(st, task, TaskStatus.FAILED, str(exc), {"error": str(exc)})
    return _complete_computed(st, task, {"result": value})


def _execute_jq(st: DecisionState, task: Task) -> Task:
    program = task.input_data.get("queryExpression")
    if not isinstance(program, str) or not program:
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, "queryExpression is required", {})
    try:
        values = evaluate_jq(program, task.input_data, now=st.now)  # jq's `now` too replays the same
    except ScriptError as exc:
        return fail(st, task, TaskStatus.FAILED, str(exc), {"error": str(exc)})
    return _complete_computed(st, task, {"result": values[0] if values else None, "resultList": values})


def _complete_computed(st: DecisionState, task: Task, output: dict[str, object]) -> Task:
    """Complete a script task with what its script computed, unless that is nested deeper than the limit: then
    FAILED_WITH_TERMINAL_ERROR (the same script on the same input computes the same again)."""
    too_deep = st.limits.payload_problem("task output", output)
    if too_deep:
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, too_deep, {})
    return _complete(st, task, output)


# --- progress: has it finished, with everything it contains? ---------------------------------------------


def progress(st: DecisionState, workflow_task: WorkflowTask, task: Task, *, iteration: int) -> bool:
    kind = workflow_task.type
    if kind in ("SWITCH", "DECISION") and task.status is TaskStatus.COMPLETED:
        return _walk(st, selected_case(workflow_task, task), iteration)
    if kind == "FORK_JOIN" and task.status is TaskStatus.COMPLETED:
        for branch in workflow_task.fork_tasks:
            _walk(st, branch, iteration)  # the JOIN that follows waits for the branches
        return True
    if kind == "FORK_JOIN_DYNAMIC" and task.status is TaskStatus.COMPLETED:
        forked = st.fork_branches(task)
        for forked_task in forked:
            _walk(st, [forked_task], iteration)
        st.dynamic_join_on = [b.task_reference_name for b in forked]
        return True
    if kind == "JOIN" and task.status is TaskStatus.IN_PROGRESS:
        task = _progress_join(st, workflow_task, task, iteration)
    elif kind == "EXCLUSIVE_JOIN" and task.status is TaskStatus.IN_PROGRESS:
        task = _progress_exclusive_join(st, workflow_task, task, iteration)
    elif kind == "DO_WHILE" and task.status is TaskStatus.IN_PROGRESS:
        task = _progress_loop(st, workflow_task, task)
    tolerated = workflow_task.permissive and task.status is TaskStatus.FAILED and not task.retried
    return task.status.is_terminal and (task.status.is_successful or tolerated)


def _finished(st: DecisionState, task: Task | None, iteration: int) -> bool:
    """Terminal, and for a SWITCH/DECISION also everything its selected case contains. (Conductor looks at
    the switch task alone, which completes at once, so a JOIN on a switch could move on while the case still
    runs; Partita waits for the case.)"""
    if task is None or not task.status.is_terminal:
        return False
    workflow_task = st.workflow_task(task)
    if workflow_task.type in ("SWITCH", "DECISION") and task.status is TaskStatus.COMPLETED:
        for inner in selected_case(workflow_task, task):
            if not _finished(st, st.latest(loop_ref(inner.task_reference_name, iteration)), iteration):
                return False
    return True


def _progress_join(st: DecisionState, workflow_task: WorkflowTask, task: Task, iteration: int) -> Task:
    """Conductor's ``Join.execute``: its output maps each joined reference to that task's output (when not
    empty). A joined task that ended unsuccessfully, and is not optional, fails the JOIN at once, or once every
    joined task has ended if it is permissive: FAILED with their reasons, or CANCELED when each of them was
    CANCELED (a sub-workflow terminated by hand), which then fails (terminates) the workflow. Optional tasks
    that COMPLETED_WITH_ERRORS make it COMPLETED_WITH_ERRORS."""
    # After a FORK_JOIN_DYNAMIC, the JOIN waits for what it forked (Conductor fills joinOn at run time, and
    # records it in the JOIN's input; records from before that was kept have only the definition's).
    recorded = task.input_data.get("joinOn")
    join_on = [str(ref) for ref in recorded] if isinstance(recorded, list) and recorded else None
    join_on = join_on or workflow_task.join_on or st.dynamic_join_on or []
    st.dynamic_join_on = None
    joined = [t for t in (st.latest(loop_ref(ref, iteration)) for ref in join_on) if t is not None]
    all_ended = len(joined) == len(join_on) and all(_finished(st, t, iteration) for t in joined)
    output: dict[str, object] = {t.reference_task_name: t.output_data for t in joined if t.output_data}
    for joined_task in joined:
        definition = st.workflow_task(joined_task)
        ended_badly = joined_task.status.is_terminal and not joined_task.status.is_successful
        if ended_badly and not definition.optional and (not definition.permissive or all_ended):
            unsuccessful = [t for t in joined if t.status.is_terminal and not t.status.is_successful]
            reason = " ".join(t.reason_for_incompletion for t in unsuccessful if t.reason_for_incompletion is not None)
            canceled_only = all(
                t.status is TaskStatus.CANCELED for t in unsuccessful if not st.workflow_task(t).optional
            )
            return fail(st, task, TaskStatus.CANCELED if canceled_only else TaskStatus.FAILED, reason, output)
    if not all_ended:
        return task
    with_errors = [t for t in joined if t.status is TaskStatus.COMPLETED_WITH_ERRORS and st.workflow_task(t).optional]
    if with_errors:
        done = _complete(st, task, output, TaskStatus.COMPLETED_WITH_ERRORS)
        summary = " ".join(f"{t.task_def_name}/{t.task_id}" for t in with_errors)
        done = structs.replace(done, reason_for_incompletion=f"{summary} completed with errors")
        st.replace(done)
        return done
    return _complete(st, task, output)


def _progress_exclusive_join(st: DecisionState, workflow_task: WorkflowTask, task: Task, iteration: int) -> Task:
    for refs in (workflow_task.join_on, workflow_task.default_exclusive_join_task):
        for ref in refs:
            found = st.latest(loop_ref(ref, iteration))
            if found is not None and found.status is not TaskStatus.SKIPPED:
                if not found.status.is_terminal:
                    return task
                return _complete(st, task, dict(found.output_data))
    return _complete(st, task, {})


def _start_loop(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> Task:
    """Counter mode: iteration 1. List mode (``items``): one iteration per item, the body reading
    ``${<loopRef>.output.loopItem}`` and ``${<loopRef>.output.loopIndex}`` (zero-based); an empty list runs
    nothing."""
    task = structs.replace(task, iteration=1)  # ${loop.iteration} reads 1 in the first iteration, as in Conductor
    if workflow_task.items is None:
        return _start(st, task, {"iteration": 1})
    items = resolve(workflow_task.items, st.document(), task_id=task.task_id)
    if not isinstance(items, list):
        reason = f"DO_WHILE items must resolve to a list, got {type(items).__name__}"
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, {})
    too_many = st.limits.loop_items_problem(len(items))
    if too_many:  # known at once: fail before the first iteration, not after the thousandth
        return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, too_many, {})
    task = structs.replace(task, input_data={**task.input_data, "items": items})
    if not items:
        return _complete(st, task, {"iteration": 0})
    return _start(st, task, {"iteration": 1, "loopItem": items[0], "loopIndex": 0})


def _loop_again(
    st: DecisionState, workflow_task: WorkflowTask, task: Task, iteration: int, bindings: dict[str, object]
) -> bool:
    """After ``iteration``: in list mode, whether items remain (and ``loopCondition``, if given, holds); in
    counter mode, ``loopCondition``. Raises :class:`ScriptError`."""
    items = task.input_data.get("items") if workflow_task.items is not None else None
    if isinstance(items, list) and iteration >= len(items):
        return False
    if workflow_task.loop_condition is None and isinstance(items, list):
        return True
    seed = f"{task.task_id}/{iteration}"
    return _truthy(evaluate_javascript(workflow_task.loop_condition or "false", bindings, now=st.now, seed=seed))


def _truthy(value: object) -> bool:
    """Conductor's ScriptEvaluator.toBoolean: a boolean, or a number greater than 0; anything else is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    return False


def _progress_loop(st: DecisionState, workflow_task: WorkflowTask, task: Task) -> Task:
    """Run the body once per iteration; after each complete iteration record its outputs and evaluate
    ``loopCondition`` (``$`` = the loop's input, ``$.<loopRef>`` its output, ``$.<bodyRef>`` each body task's
    latest output)."""
    body_refs = [wt.task_reference_name for wt in iter_workflow_tasks(workflow_task.loop_over)]
    for _ in range(MAX_ITERATIONS_PER_DECISION):
        iteration = int(task.output_data.get("iteration", 1))  # type: ignore[call-overload]
        if not _walk(st, workflow_task.loop_over, iteration):
            return task
        outputs = {}
        for ref in body_refs:
            found = st.latest(loop_ref(ref, iteration))
            if found is not None:
                outputs[ref] = found.output_data
        output = {**task.output_data, str(iteration): outputs, "iteration": iteration}
        # As Conductor: the loop's inputParameters resolved afresh, its own output, and each body task's
        # latest output from any iteration.
        current = resolve(workflow_task.input_parameters, st.document(), task_id=task.task_id)
        assert isinstance(current, dict)
        latest = {ref: st.latest_output(ref) for ref in body_refs}
        bindings = {
            **current,
            workflow_task.task_reference_name: output,
            **{ref: value for ref, value in latest.items() if value is not None},
        }
        try:
            again = _loop_again(st, workflow_task, task, iteration, bindings)
        except ScriptError as exc:
            reason = f"loopCondition failed: {exc}"
            return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, output)
        if again and iteration >= st.limits.max_loop_iterations:
            # A runaway loop (a loopCondition that never turns false) ends here; built-ins are never retried.
            return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, st.limits.loop_problem(iteration), output)
        keep = task.input_data.get("keepLastN")
        if isinstance(keep, int) and keep > 0:
            output = _keep_last(st, output, iteration, keep, set(body_refs))
        if not again:
            return _complete(st, structs.replace(task, iteration=iteration), output)
        following = {**output, "iteration": iteration + 1}
        items = task.input_data.get("items") if workflow_task.items is not None else None
        if isinstance(items, list):
            following |= {"loopItem": items[iteration], "loopIndex": iteration}
        task = structs.replace(task, output_data=following, iteration=iteration + 1)
        st.replace(task)
    reason = f"DO_WHILE ran {MAX_ITERATIONS_PER_DECISION} iterations without waiting for anything; stopped"
    return fail(st, task, TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason, dict(task.output_data))


def _keep_last(
    st: DecisionState, output: dict[str, object], iteration: int, keep: int, refs: set[str]
) -> dict[str, object]:
    """Conductor's ``keepLastN``: drop older iterations' outputs and their task instances."""
    oldest_kept = iteration - keep + 1
    trimmed = {k: v for k, v in output.items() if not (k.isdigit() and int(k) < oldest_kept)}
    doomed = {t.task_id for t in st.tasks if 0 < t.iteration < oldest_kept and definition_ref(t) in refs}
    if doomed:
        st.remove(doomed)
    return trimmed
