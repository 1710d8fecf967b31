"""Parsing and registration-time validation of Conductor definitions.

Validation reports every problem it finds (not just the first) with the field path, in Conductor's words
where Conductor has words for it. It also enforces the definition limits of :mod:`.limits` (size, nesting,
number of tasks, nesting of inputParameters); those are measured first and without recursion, because the
other checks walk the definition recursively.
"""

from __future__ import annotations

import re

import msgspec

from .definitions import TaskDef, WorkflowDef, WorkflowTask, iter_workflow_tasks
from .errors import DefinitionError
from .limits import MAX_SAFE_DEPTH, Limits, configured_limits, json_depth, json_text_depth, name_problem

# Every task type Conductor OSS knows (TaskType.java) plus the SDK-only ones; anything else is USER_DEFINED.
KNOWN_TASK_TYPES: frozenset[str] = frozenset(
    {
        "SIMPLE", "DYNAMIC", "FORK_JOIN", "FORK_JOIN_DYNAMIC", "DECISION", "SWITCH", "JOIN", "DO_WHILE",
        "SUB_WORKFLOW", "START_WORKFLOW", "EVENT", "WAIT", "HUMAN", "USER_DEFINED", "HTTP", "LAMBDA", "INLINE",
        "EXCLUSIVE_JOIN", "TERMINATE", "KAFKA_PUBLISH", "JSON_JQ_TRANSFORM", "SET_VARIABLE", "NOOP",
        # Conductor's AI module
        "LLM_TEXT_COMPLETE", "LLM_CHAT_COMPLETE", "LLM_INDEX_TEXT", "LLM_SEARCH_INDEX", "LLM_GENERATE_EMBEDDINGS",
        "LLM_STORE_EMBEDDINGS", "LLM_GET_EMBEDDINGS", "LIST_MCP_TOOLS", "CALL_MCP_TOOL",
    }
)  # fmt: skip

# What this version executes. Everything else is parsed, registered, and refused at start with a clear reason.
SUPPORTED_TASK_TYPES: frozenset[str] = frozenset(
    {
        "SIMPLE", "DYNAMIC", "SWITCH", "DECISION", "FORK_JOIN", "JOIN", "EXCLUSIVE_JOIN", "DO_WHILE",
        "SET_VARIABLE", "TERMINATE", "NOOP", "INLINE", "LAMBDA", "JSON_JQ_TRANSFORM", "WAIT", "HUMAN",
        "SUB_WORKFLOW", "START_WORKFLOW", "HTTP", "EVENT", "FORK_JOIN_DYNAMIC",
    }
)  # fmt: skip
_JAVASCRIPT = frozenset({"javascript", "graaljs"})
# Event sinks a Partita node can publish to (EVENT tasks); Conductor's others need brokers Partita has not.
EVENT_SINK_PROVIDERS: frozenset[str] = frozenset({"nats", "jsm", "conductor"})
# Conductor task types that cannot work here at all: refused at registration, with the reason.
IMPOSSIBLE_TASK_TYPES: dict[str, str] = {
    "KAFKA_PUBLISH": "KAFKA_PUBLISH needs Kafka, which Partita does not have; publish with an EVENT task "
    "(sink 'jsm:<subject>') or a worker instead",
}

_TERMINATION_STATUSES = frozenset({"COMPLETED", "FAILED", "TERMINATED"})


_LIST_START = re.compile(rb"\s*\[")


def parse_definitions(
    data: bytes | str, *, source: str = "input", limits: Limits | None = None
) -> list[TaskDef | WorkflowDef]:
    """Decode Conductor JSON holding a WorkflowDef, a TaskDef, or a list mixing them.

    An object with a ``tasks`` key is a WorkflowDef, any other object a TaskDef. Raises
    :class:`DefinitionError` naming the source and the offending element. Each definition may be at most
    ``limits.max_definition_bytes`` as compact JSON (however the text is indented), and the text is measured
    for nesting before it is decoded.
    """
    limits = limits or configured_limits()
    text = data.encode() if isinstance(data, str) else data
    in_list = 1 if _LIST_START.match(text) else 0
    # Measured before decoding: msgspec raises RecursionError, not DecodeError, on JSON nested ~1000 deep.
    # One level of slack: an explicit empty map or list at the bottom is dropped when the definition is
    # stored, and validation measures the stored form exactly.
    problem = limits.definition_depth_problem(json_text_depth(text) - in_list, "the definition JSON", slack=1)
    if problem:
        raise DefinitionError(source, [problem])
    try:
        raw = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise DefinitionError(source, [f"not valid JSON: {exc}"]) from exc
    items = raw if isinstance(raw, list) else [raw]
    parsed: list[TaskDef | WorkflowDef] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        where = f"[{index}]" if isinstance(raw, list) else "$"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a JSON object, got {type(item).__name__}")
            continue
        problem = limits.definition_size_problem(len(msgspec.json.encode(item)))
        if problem:
            problems.append(f"{where} ({item.get('name', '?')!r}): {problem}")
            continue
        kind: type[TaskDef] | type[WorkflowDef] = WorkflowDef if "tasks" in item else TaskDef
        try:
            parsed.append(msgspec.convert(item, kind))
        except msgspec.ValidationError as exc:
            problems.append(f"{where} ({kind.__name__} {item.get('name', '?')!r}): {exc}")
    if problems:
        raise DefinitionError(source, problems)
    return parsed


def _measured(definition: TaskDef | WorkflowDef, limits: Limits) -> tuple[str | None, int]:
    """(why it is nested too deeply, or None; its size as stored). Measured as the compact JSON it is stored
    as, after a first look without recursion: encoding recurses, so a definition built in Python a thousand
    levels deep must be refused before it is encoded."""
    depth = json_depth(definition)
    if depth > MAX_SAFE_DEPTH:
        return limits.definition_depth_problem(depth), 0
    stored = msgspec.json.encode(definition)
    return limits.definition_depth_problem(json_text_depth(stored)), len(stored)


def task_def_problems(task_def: TaskDef, where: str = "", limits: Limits | None = None) -> list[str]:
    """Conductor's TaskDef constraints. An inline ``taskDefinition`` (``where`` given) gets only the checks that
    keep the engine sound (names, sizes, no negative counts): Conductor does not cascade validation into it
    (``WorkflowTask.taskDefinition`` has no ``@Valid``), so a definition with, say, a response timeout longer
    than its timeout registers and runs there, and must here."""
    limits = limits or configured_limits()
    inline = bool(where)
    p = f"{where}." if where else ""
    problems: list[str] = []
    if not where:  # a TaskDef of its own (an inline one is measured with its workflow)
        too_deep, size = _measured(task_def, limits)
        if too_deep:
            return [too_deep]
        too_large = limits.definition_size_problem(size)
        if too_large:
            problems.append(too_large)
    problem = limits.payload_problem(f"{p}inputTemplate", task_def.input_template)
    if problem:
        problems.append(problem)
    if not task_def.name.strip():
        problems.append(f"{p}name: must not be empty")
    elif too_long := name_problem("name", task_def.name):
        problems.append(f"{p}{too_long}")
    if task_def.retry_count < 0:
        problems.append(f"{p}retryCount: must be >= 0, got {task_def.retry_count}")
    if task_def.retry_delay_seconds < 0:
        problems.append(f"{p}retryDelaySeconds: must be >= 0, got {task_def.retry_delay_seconds}")
    if task_def.backoff_scale_factor < 1:
        problems.append(f"{p}backoffScaleFactor: must be >= 1, got {task_def.backoff_scale_factor}")
    least_response = 0 if inline else 1
    if task_def.response_timeout_seconds < least_response:
        problems.append(
            f"{p}responseTimeoutSeconds: must be >= {least_response}, got {task_def.response_timeout_seconds}"
        )
    if task_def.timeout_seconds < 0:
        problems.append(f"{p}timeoutSeconds: must be >= 0, got {task_def.timeout_seconds}")
    if not inline:
        problems.extend(_timeout_order_problems(task_def, p))
    if task_def.poll_timeout_seconds is not None and task_def.poll_timeout_seconds < 0:
        problems.append(f"{p}pollTimeoutSeconds: must be >= 0, got {task_def.poll_timeout_seconds}")
    return problems


def _timeout_order_problems(task_def: TaskDef, p: str) -> list[str]:
    """Conductor's TaskTimeoutConstraint."""
    problems = []
    if 0 < task_def.timeout_seconds < task_def.response_timeout_seconds:
        problems.append(
            f"{p}responseTimeoutSeconds: {task_def.response_timeout_seconds} must be less than "
            f"timeoutSeconds: {task_def.timeout_seconds}"
        )
    if 0 < task_def.total_timeout_seconds < task_def.timeout_seconds:
        problems.append(
            f"{p}timeoutSeconds: {task_def.timeout_seconds} must be less than or equal to "
            f"totalTimeoutSeconds: {task_def.total_timeout_seconds}"
        )
    return problems


def validate_task_def(task_def: TaskDef, limits: Limits | None = None) -> None:
    problems = task_def_problems(task_def, limits=limits)
    if problems:
        raise DefinitionError(f"TaskDef {task_def.name!r}", problems)


def javascript_syntax_error(source: str, *, wrap: bool = False) -> str | None:
    """The syntax error in a JavaScript ``source`` (compiled, never run), or None. Uses QuickJS, a pure
    in-process compiler with no I/O: the one import beyond msgspec this package allows itself."""
    import quickjs

    context = quickjs.Context()
    context.set_memory_limit(16 * 1024 * 1024)
    context.set("__source", f"function scriptFun(){{{source}}}" if wrap else source)
    try:
        context.eval("new Function(__source)" if wrap else "(function (s) { new Function('$', s); })(__source)")
    except quickjs.JSException as exc:
        return str(exc).strip().splitlines()[0]
    return None


MAX_SCRIPT_BYTES = 64 * 1024  # QuickJS compiles some shapes in quadratic time and cannot be interrupted then


def _script_problem(where: str, field: str, source: str | None, *, wrap: bool = False) -> list[str]:
    if source and len(source.encode()) > MAX_SCRIPT_BYTES:  # checked before compiling it, here on the caller
        return [f"{where}.{field}: script is {len(source.encode())} bytes; the limit is {MAX_SCRIPT_BYTES}"]
    if not source or "${" in source:  # an expression resolved at run time cannot be checked here
        return []
    error = javascript_syntax_error(source, wrap=wrap)
    return [f"{where}.{field}: JavaScript syntax error: {error}"] if error else []


def _task_problems(task: WorkflowTask, where: str, limits: Limits) -> list[str]:
    problems: list[str] = []
    kind = task.type
    problem = limits.payload_problem(f"{where}.inputParameters", task.input_parameters)
    if problem:
        problems.append(problem)
    if not task.name.strip():
        problems.append(f"{where}.name: must not be empty")
    elif too_long := name_problem("name", task.name):
        problems.append(f"{where}.{too_long}")
    if not task.task_reference_name.strip():
        problems.append(f"{where}.taskReferenceName: must not be empty")
    if task.start_delay < 0:
        problems.append(f"{where}.startDelay: must be >= 0, got {task.start_delay}")
    if task.retry_count is not None and task.retry_count < 0:
        problems.append(f"{where}.retryCount: must be >= 0, got {task.retry_count}")
    if kind == "EVENT" and not task.sink:
        problems.append(f"{where}: EVENT task requires 'sink'")
    elif kind == "EVENT" and task.sink and "${" not in task.sink:
        provider = task.sink.split(":", 1)[0].strip().lower()
        if provider not in EVENT_SINK_PROVIDERS:
            problems.append(
                f"{where}.sink: provider {provider!r} is not available here; use nats:<subject>, jsm:<subject> "
                "or conductor[:name]"
            )
    if kind in IMPOSSIBLE_TASK_TYPES:
        problems.append(f"{where}: {IMPOSSIBLE_TASK_TYPES[kind]}")
    if kind == "DECISION":
        if not (task.case_value_param or task.case_expression):
            problems.append(f"{where}: DECISION task requires 'caseValueParam' or 'caseExpression'")
        if not task.decision_cases:
            problems.append(f"{where}: DECISION task requires non-empty 'decisionCases'")
    if kind == "DECISION" and task.case_expression:
        problems.extend(_script_problem(where, "caseExpression", task.case_expression))
    if kind == "SWITCH" and (task.evaluator_type or "").lower() in _JAVASCRIPT:
        problems.extend(_script_problem(where, "expression", task.expression))
    if kind == "DO_WHILE" and task.loop_condition:
        problems.extend(_script_problem(where, "loopCondition", task.loop_condition))
    if kind == "LAMBDA":  # Conductor's Lambda reads inputParameters.scriptExpression
        script = task.input_parameters.get("scriptExpression", task.script_expression)
        if script is None:
            problems.append(f"{where}: LAMBDA task requires inputParameters.scriptExpression")
        elif isinstance(script, str):
            field = (
                "inputParameters.scriptExpression"
                if "scriptExpression" in task.input_parameters
                else "scriptExpression"
            )
            problems.extend(_script_problem(where, field, script, wrap=True))
    if kind == "INLINE":
        evaluator = task.input_parameters.get("evaluatorType", "javascript")
        expression = task.input_parameters.get("expression")
        if expression is None:
            problems.append(f"{where}: INLINE task requires inputParameters.expression")
        elif isinstance(evaluator, str) and evaluator.lower() in _JAVASCRIPT and isinstance(expression, str):
            problems.extend(_script_problem(where, "inputParameters.expression", expression))
    if kind == "START_WORKFLOW" and "startWorkflow" not in task.input_parameters:
        problems.append(f"{where}: START_WORKFLOW task requires inputParameters.startWorkflow")
    if kind == "JSON_JQ_TRANSFORM" and "queryExpression" not in task.input_parameters:
        problems.append(f"{where}: JSON_JQ_TRANSFORM task requires inputParameters.queryExpression")
    if kind == "SWITCH":
        if not task.evaluator_type:
            problems.append(f"{where}: SWITCH task requires 'evaluatorType'")
        if not task.expression:
            problems.append(f"{where}: SWITCH task requires 'expression'")
        if not task.decision_cases:
            problems.append(f"{where}: SWITCH task requires non-empty 'decisionCases'")
    if kind == "DO_WHILE" and any(inner.type == "DO_WHILE" for inner in iter_workflow_tasks(task.loop_over)):
        problems.append(f"{where}: a DO_WHILE cannot contain another DO_WHILE (Conductor does not support it)")
    if kind == "DO_WHILE":
        if not task.loop_condition and task.items is None:
            problems.append(f"{where}: DO_WHILE task requires 'loopCondition'")
        if not task.loop_over:
            problems.append(f"{where}: DO_WHILE task requires non-empty 'loopOver'")
    if kind == "DYNAMIC" and not task.dynamic_task_name_param:
        problems.append(f"{where}: DYNAMIC task requires 'dynamicTaskNameParam'")
    if kind == "FORK_JOIN" and not task.fork_tasks:
        problems.append(f"{where}: FORK_JOIN task requires non-empty 'forkTasks'")
    if kind == "SUB_WORKFLOW":
        params = task.sub_workflow_param
        if params is None or not (params.name or params.workflow_definition):
            problems.append(f"{where}: SUB_WORKFLOW task requires 'subWorkflowParam' with a name or definition")
    if kind == "TERMINATE":
        if task.optional:
            problems.append(f"{where}: TERMINATE task cannot be optional")
        status = task.input_parameters.get("terminationStatus")
        literal = isinstance(status, str) and not status.startswith("${")
        if status is None or (literal and status not in _TERMINATION_STATUSES):
            problems.append(
                f"{where}: TERMINATE task requires inputParameters.terminationStatus in "
                f"{sorted(_TERMINATION_STATUSES)}, got {status!r}"
            )
    if task.task_definition is not None:
        problems.extend(task_def_problems(task.task_definition, f"{where}.taskDefinition", limits))
    return problems


def _fork_join_problems(tasks: list[WorkflowTask]) -> list[str]:
    """Conductor: a FORK_JOIN (or FORK_JOIN_DYNAMIC) must be followed by a JOIN in the same list."""
    problems = []
    for index, task in enumerate(tasks):
        if task.type in ("FORK_JOIN", "FORK_JOIN_DYNAMIC"):
            following = tasks[index + 1] if index + 1 < len(tasks) else None
            if following is None or following.type != "JOIN":
                problems.append(f"tasks[{task.task_reference_name}]: {task.type} must be followed by a JOIN task")
        for nested in (*task.decision_cases.values(), task.default_case, *task.fork_tasks, task.loop_over):
            problems.extend(_fork_join_problems(nested))
    return problems


def workflow_def_problems(workflow_def: WorkflowDef, limits: Limits | None = None) -> list[str]:
    limits = limits or configured_limits()
    # The nesting first: every check below walks the definition recursively.
    too_deep, size = _measured(workflow_def, limits)
    if too_deep:
        return [too_deep]
    problems = [
        found
        for found in (
            limits.definition_size_problem(size),
            limits.definition_tasks_problem(len(workflow_def.iter_tasks())),
            limits.payload_problem("outputParameters", workflow_def.output_parameters),
            limits.payload_problem("inputTemplate", workflow_def.input_template),
            limits.payload_problem("variables", workflow_def.variables),
        )
        if found
    ]
    if not workflow_def.name.strip():
        problems.append("name: must not be empty")
    elif too_long := name_problem("name", workflow_def.name):
        problems.append(too_long)
    if workflow_def.version < 1:
        problems.append(f"version: must be >= 1, got {workflow_def.version}")
    if workflow_def.schema_version != 2:
        problems.append(f"schemaVersion: must be 2, got {workflow_def.schema_version}")
    if workflow_def.timeout_seconds < 0:
        problems.append(f"timeoutSeconds: must be >= 0, got {workflow_def.timeout_seconds}")
    if not workflow_def.tasks:
        problems.append("tasks: must not be empty")
    problems.extend(_fork_join_problems(workflow_def.tasks))
    seen: dict[str, int] = {}
    for index, task in enumerate(workflow_def.iter_tasks()):
        where = f"tasks[{task.task_reference_name or index}]"
        problems.extend(_task_problems(task, where, limits))
        seen[task.task_reference_name] = seen.get(task.task_reference_name, 0) + 1
    for ref, count in seen.items():
        if count > 1 and ref:
            problems.append(f"taskReferenceName {ref!r} is used {count} times; it must be unique")
    return problems


def validate_workflow_def(workflow_def: WorkflowDef, limits: Limits | None = None) -> None:
    problems = workflow_def_problems(workflow_def, limits)
    if problems:
        raise DefinitionError(f"WorkflowDef {workflow_def.name!r} v{workflow_def.version}", problems)


def validate(definition: TaskDef | WorkflowDef, limits: Limits | None = None) -> None:
    if isinstance(definition, WorkflowDef):
        validate_workflow_def(definition, limits)
    else:
        validate_task_def(definition, limits)


def unsupported_problems(workflow_def: WorkflowDef) -> list[str]:
    """Why this version cannot run ``workflow_def`` (empty when it can)."""
    problems: list[str] = []
    for task in workflow_def.iter_tasks():
        if task.type == "SWITCH" and (task.evaluator_type or "").lower() not in (*_JAVASCRIPT, "value-param"):
            problems.append(
                f"task {task.task_reference_name!r}: SWITCH evaluatorType {task.evaluator_type!r} is not supported"
                " (value-param, javascript, graaljs)"
            )
            continue
        if task.type in SUPPORTED_TASK_TYPES or is_user_defined(task.type):
            continue
        problems.append(f"task {task.task_reference_name!r}: task type {task.type} is not supported yet by Partita")
    return problems


def is_user_defined(task_type: str) -> bool:
    """Conductor's ``TaskType.of``: a type it does not know is USER_DEFINED, a task of that type run by whoever
    implements it (in Conductor a plug-in system task; here a worker of that task type), described by the
    TaskDef named like the task (UserDefinedTaskMapper)."""
    return task_type == "USER_DEFINED" or task_type not in KNOWN_TASK_TYPES
