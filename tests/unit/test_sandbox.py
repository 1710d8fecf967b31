"""Sandbox escapes and bombs (issue 7): each fails only its own evaluation, with a reason that names the limit or
the missing capability, and the next evaluation runs as if nothing happened. Pure: no NATS."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import msgspec
import pytest
import quickjs

from partita.actors.decider import decide, sandbox, snapshot_definition
from partita.actors.decider.scripts import ScriptError, ScriptLimits, evaluate_javascript, evaluate_jq
from partita.schemas import StartWorkflow, WorkflowDef, WorkflowStartRequested

MiB = 1024 * 1024
NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
# Time bombs get a short time limit; memory and output bombs a long one, so that the limit under test trips first
# however busy the machine is.
SHORT = ScriptLimits(time_seconds=0.3)
ROOMY = ScriptLimits(time_seconds=30, memory_bytes=8 * MiB, jq_memory_bytes=16 * MiB, output_bytes=64 * 1024)
BIG_HEAP = ScriptLimits(time_seconds=30, memory_bytes=256 * MiB)

JAVASCRIPT_ATTACKS = [
    pytest.param("while (true) {}", SHORT, r"^script exceeded the time limit of 0\.3 s$", id="infinite-loop"),
    pytest.param("for (;;) { try { while (true) {} } catch (e) {} }", SHORT, r"time limit of 0\.3 s$", id="catch-loop"),
    pytest.param("(async function () { while (true) {} })()", SHORT, "time limit", id="async-loop"),
    pytest.param("/(a+)+$/.test('a'.repeat(40) + 'b')", SHORT, "time limit", id="regex-backtracking"),
    pytest.param("eval('while (true) {}')", SHORT, "time limit", id="eval-loop"),
    pytest.param(  # compiling is quadratic in private names, and QuickJS cannot interrupt its compiler
        "class C {" + "".join(f"#f{i};" for i in range(40000)) + "}", SHORT, "time limit", id="slow-compile"
    ),
    pytest.param("new Proxy({}, { ownKeys() { while (true) {} } })", SHORT, "time limit", id="proxy-trap-result"),
    pytest.param("({ toJSON() { while (true) {} } })", SHORT, "time limit", id="tojson-result"),
    pytest.param("({ get x() { while (true) {} } })", SHORT, "time limit", id="getter-result"),
    pytest.param(
        "function f() { return f(); } f()", ROOMY, r"^script exceeded the stack limit of 1 MiB$", id="recursion"
    ),
    pytest.param("function f(n) { return f(n + 1) + 1; } f(0)", ROOMY, "stack limit", id="recursion-with-frames"),
    pytest.param("var a = []; for (var i = 0; i < 1e4; i++) a = [a]; a", ROOMY, "stack limit", id="deep-result"),
    pytest.param("new Array(1e9).fill(0)", ROOMY, r"^script exceeded the memory limit of 8 MiB$", id="giant-array"),
    pytest.param("var a = []; for (;;) a.push({})", ROOMY, "memory limit of 8 MiB", id="object-flood"),
    pytest.param("new ArrayBuffer(2 ** 31)", ROOMY, "RangeError: invalid array buffer length", id="giant-buffer"),
    pytest.param("'x'.repeat(2 ** 30)", ROOMY, "RangeError: invalid string length", id="giant-repeat"),
    pytest.param("var s = 'x'; while (true) s += s;", ROOMY, "InternalError: string too long", id="string-doubling"),
    pytest.param("var s = 'x'; while (true) { s += s; s.charCodeAt(1); }", ROOMY, "memory limit", id="flat-doubling"),
    pytest.param(
        "'x'.repeat(100 * 2 ** 20)", BIG_HEAP, "^script result exceeds the output limit of 4 MiB$", id="huge-string"
    ),
    pytest.param("new Array(1e5).fill('abcdefgh')", ROOMY, "output limit of 64 KiB", id="huge-json"),
    pytest.param("require('fs')", ROOMY, "ReferenceError: require is not defined", id="require"),
    pytest.param(
        "import('os')", ROOMY, r"^TypeError: the script's value is a Promise: import\(\)", id="dynamic-import"
    ),
    pytest.param("import * as os from 'os'; os.exec(['ls'])", ROOMY, "^SyntaxError", id="static-import"),
    pytest.param("std.loadFile('/etc/passwd')", ROOMY, "ReferenceError: std is not defined", id="std"),
    pytest.param("os.exec(['ls'])", ROOMY, "ReferenceError: os is not defined", id="os"),
    pytest.param("globalThis.std.loadFile('/etc/passwd')", ROOMY, "^TypeError: cannot read property", id="global-std"),
    pytest.param("Function('return this')().os.exec(['ls'])", ROOMY, "^TypeError: cannot read property", id="fn-this"),
    pytest.param("this.constructor.constructor('return process')()", ROOMY, "process is not defined", id="ctor"),
    pytest.param('eval(\'std.open("/etc/passwd", "r")\')', ROOMY, "std is not defined", id="eval-std"),
    pytest.param("Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)", ROOMY, "cannot block", id="atomics"),
    pytest.param("new WebAssembly.Module(new Uint8Array(8))", ROOMY, "WebAssembly is not defined", id="wasm"),
]


@pytest.mark.parametrize(("script", "limits", "reason"), JAVASCRIPT_ATTACKS)
def test_a_javascript_attack_fails_only_its_evaluation(script: str, limits: ScriptLimits, reason: str) -> None:
    zombies = set(_zombies())
    with pytest.raises(ScriptError, match=reason):
        evaluate_javascript(script, {"n": 1}, now=NOW, limits=limits)
    assert evaluate_javascript("$.n + 1", {"n": 1}, now=NOW) == 2
    assert set(_zombies()) <= zombies  # a failed helper was killed and reaped
    assert len(_helpers()) <= sandbox.POOL_SIZE


def test_a_script_sees_nothing_of_the_host() -> None:
    forbidden = {"std", "os", "require", "process", "module", "exports", "print", "console", "scriptArgs",
                 "bjson", "Worker", "setTimeout", "setInterval", "fetch", "WebAssembly", "Deno"}  # fmt: skip
    names = evaluate_javascript("Object.getOwnPropertyNames(Function('return this')())", {}, now=NOW)
    assert isinstance(names, list)
    assert "Math" in names
    assert sorted(forbidden & set(names)) == []


@pytest.mark.parametrize(
    "expression",
    [
        "Date.now()",
        "new Date().getTime()",
        "new (new Date().constructor)().getTime()",
        "new Date.prototype.constructor().getTime()",
        "Object.getPrototypeOf(new Date()).constructor.now()",
        "Function('return Date.now()')()",
        "eval('new Date().valueOf()')",
        "(class extends Date {}).now()",
        "new (class extends Date {})().getTime()",
        "performance.timeOrigin + performance.now()",
    ],
)
def test_every_way_to_the_clock_reads_the_decision_clock(expression: str) -> None:
    assert evaluate_javascript(expression, {}, now=NOW) == NOW


def test_prototype_pollution_does_not_reach_the_next_evaluation() -> None:
    polluter = "Object.prototype.polluted = 1; Array.prototype.map = null; JSON.parse = null; globalThis.leak = 2; 1"
    assert evaluate_javascript(polluter, {}, now=NOW) == 1
    probe = "[({}).polluted, typeof [].map, typeof JSON.parse, typeof leak]"
    assert evaluate_javascript(probe, {}, now=NOW) == [None, "function", "function", "undefined"]


def test_a_dynamic_import_never_loads_a_module() -> None:
    script = (
        "var seen = 'not loaded'; import('os').then(m => { seen = typeof m.exec; }, e => { seen = String(e); }); seen"
    )
    assert evaluate_javascript(script, {}, now=NOW) == "not loaded"


def test_eval_inside_a_script_works_within_the_sandbox() -> None:
    assert evaluate_javascript("eval('$.n * 2') + eval('typeof std').length", {"n": 21}, now=NOW) == 42 + 9


def test_the_wrapper_cannot_be_subverted_by_the_script() -> None:
    # replacing what the result's serialisation uses changes nothing: it was taken before the script ran
    script = "JSON.stringify = () => 'x'; Array.prototype.join = null; Reflect.apply = null; ({ a: 'b'.repeat(3000) })"
    assert evaluate_javascript(script, {}, now=NOW) == {"a": "b" * 3000}


def test_a_long_concatenated_string_is_a_result() -> None:
    # QuickJS represents it as a rope, which the binding cannot read unless it is flattened first
    assert evaluate_javascript("var s = 'ab'.repeat(1000); s + s", {}, now=NOW) == "ab" * 2000


@pytest.mark.parametrize(
    ("expression", "fits"),
    [("'x'.repeat(1000)", True), ("'x'.repeat(1001)", False), ("'é'.repeat(500)", True), ("'é'.repeat(501)", False),
     ("['x'.repeat(996)]", True), ("['x'.repeat(997)]", False)],
)  # fmt: skip
def test_the_output_limit_counts_utf8_bytes_of_the_result(expression: str, fits: bool) -> None:
    limits = ScriptLimits(output_bytes=1000)
    if fits:
        assert evaluate_javascript(expression, {}, now=NOW, limits=limits)
    else:
        with pytest.raises(ScriptError, match="output limit of 1000 bytes"):
            evaluate_javascript(expression, {}, now=NOW, limits=limits)


def test_concurrent_scripts_each_have_their_own_time_limit() -> None:
    # QuickJS's time limit counts the CPU time of the process it runs in: in one process, three scripts of 0.6 s
    # would spend a limit of 1 s together and all fail. Each helper runs one script at a time.
    assert sandbox.POOL_SIZE >= 4  # all four run at once
    limits = ScriptLimits(time_seconds=1.0)
    busy = _busy_script(0.6)
    scripts = {"busy0": busy, "busy1": busy, "busy2": busy, "spin": "while (true) {}"}
    together = threading.Barrier(len(scripts))
    outcomes: dict[str, object] = {}

    def evaluate(name: str) -> None:
        together.wait()
        try:
            outcomes[name] = evaluate_javascript(scripts[name], {}, now=NOW, limits=limits)
        except ScriptError as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=evaluate, args=(name,)) for name in scripts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"busy0": True, "busy1": True, "busy2": True, "spin": "script exceeded the time limit of 1 s"}


def test_a_script_whose_helper_stops_responding_fails_at_the_deadline_and_the_helper_is_replaced() -> None:
    # QuickJS interrupts a script that spends its time; one that makes no progress at all (here: its helper is
    # stopped) is the parent's to stop, at its wall-clock deadline, by killing the helper
    assert evaluate_javascript("1", {}, now=NOW) == 1
    zombies = set(_zombies())
    stopped = _helpers()
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(ScriptError, match=r"^script exceeded the time limit of 0\.3 s$"):
            evaluate_javascript("2", {}, now=NOW, limits=SHORT)
    finally:
        for pid in set(stopped) & set(_helpers()):
            os.kill(pid, signal.SIGCONT)
    assert len(set(stopped) - set(_helpers())) == 1  # the one the script met was killed
    assert set(_zombies()) <= zombies  # and reaped
    assert evaluate_javascript("3", {}, now=NOW) == 3


JQ_ATTACKS = [
    pytest.param("def f: f; f", SHORT, r"^jq program exceeded the time limit of 0\.3 s$", id="tail-recursion"),
    pytest.param("def f(x): x | f(x); f(.)", SHORT, "time limit", id="recursion-with-closure"),
    pytest.param("last(range(1e10))", SHORT, "time limit", id="long-range"),
    pytest.param('"a" * 28 + "b" | test("^(a+)+$")', ROOMY, "^Regex failure: retry-limit-in-match", id="regex"),
    pytest.param("[range(1e10)]", ROOMY, r"^jq program exceeded the memory limit of 16 MiB$", id="giant-array"),
    pytest.param("[repeat(.)]", ROOMY, "memory limit of 16 MiB", id="repeat-collected"),
    pytest.param('[limit(1e9; repeat("x" * 1000))]', ROOMY, "memory limit", id="limit-repeat-collected"),
    pytest.param("def f: 1 + f; f", ROOMY, "memory limit", id="deep-recursion"),
    pytest.param("def f: [f]; f", ROOMY, "memory limit", id="deep-recursion-building"),
    pytest.param('"x" * 1e8', ROOMY, "memory limit", id="string-multiplication"),
    pytest.param('"x" * 1e10', ROOMY, "^Repeat string result too long$", id="huge-string-multiplication"),
    pytest.param('reduce range(40) as $i ("x"; . + .)', ROOMY, "memory limit", id="string-doubling"),
    pytest.param("range(1e10)", ROOMY, r"^jq program exceeded the output limit of 64 KiB$", id="endless-stream"),
    pytest.param("repeat(.)", ROOMY, "output limit", id="repeat"),
    pytest.param('limit(1e9; repeat("x" * 1000))', ROOMY, "output limit", id="limit-repeat"),
    pytest.param('"x" * 10485760', ScriptLimits(), "output limit of 4 MiB", id="huge-string"),
    pytest.param("reduce range(3000) as $i (null; [.])", ROOMY, "nested too deeply", id="deep-result"),
    pytest.param(
        "reduce range(100000) as $i (null; [.])", ScriptLimits(), "crashed its sandbox|memory limit", id="deeper-result"
    ),
    pytest.param("." + " " * 65536, ROOMY, "^jq program is longer than the limit of 64 KiB$", id="long-program"),
    pytest.param("syntax error (", ROOMY, "^jq: error: syntax error", id="syntax-error"),
    pytest.param('error("boom")', ROOMY, "^boom$", id="error"),
]


@pytest.mark.parametrize(("program", "limits", "reason"), JQ_ATTACKS)
def test_a_jq_attack_fails_only_its_evaluation(program: str, limits: ScriptLimits, reason: str) -> None:
    zombies = set(_zombies())
    with pytest.raises(ScriptError, match=reason):
        evaluate_jq(program, {"n": 1}, limits=limits)
    assert evaluate_jq(".n + 1", {"n": 1}) == [2]
    assert set(_zombies()) <= zombies  # a failed helper was killed and reaped
    assert len(_helpers()) <= sandbox.POOL_SIZE


@pytest.mark.parametrize(
    ("directive", "file", "content"),
    [('import "secret" as $s {search: "%s"}; $s', "secret.json", '{"secret": 42}'),
     ('include "lib" {search: "%s"}; secret', "lib.jq", "def secret: 42;")],
)  # fmt: skip
def test_a_jq_program_cannot_read_files(tmp_path: Path, directive: str, file: str, content: str) -> None:
    (tmp_path / file).write_text(content)
    with pytest.raises(ScriptError, match=r"Could not open .*: Too many open files") as failure:
        evaluate_jq(directive % tmp_path, {})
    assert "42" not in str(failure.value)


def test_a_jq_program_sees_nothing_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTITA_SECRET", "s3cret")
    assert evaluate_jq('[$ENV, env] | map(has("PARTITA_SECRET") or has("PATH") or has("HOME"))', {}) == [[False, False]]


def test_jq_now_is_the_decision_clock_when_given() -> None:
    assert evaluate_jq("now, (now | todate)", {}, now=NOW) == [NOW / 1000, "2023-11-14T22:13:20Z"]


def test_a_jq_task_reads_the_decision_clock_so_replays_decide_the_same() -> None:
    task = {"name": "q", "taskReferenceName": "q", "type": "JSON_JQ_TRANSFORM",
            "inputParameters": {"queryExpression": "now | todate"}}  # fmt: skip
    snapshot = snapshot_definition(msgspec.convert({"name": "clock", "tasks": [task]}, WorkflowDef), {})
    started = WorkflowStartRequested(request=StartWorkflow(workflow_id="wf", name="clock"), definition=snapshot)

    def output(now: int) -> dict[str, object]:
        workflow = decide(None, started, now).workflow
        assert workflow is not None
        return workflow.tasks[0].output_data

    today = {"result": "2023-11-14T22:13:20Z", "resultList": ["2023-11-14T22:13:20Z"]}
    assert output(NOW) == output(NOW) == today
    assert output(NOW + 86_400_000)["result"] == "2023-11-15T22:13:20Z"


def test_jq_results_are_the_programs_values() -> None:
    data = {"words": ["a", "bb", "ccc"], "é": [1.5, None, True]}
    assert evaluate_jq(".words | map(length)", data) == [[1, 2, 3]]
    assert evaluate_jq(".words[]", data) == ["a", "bb", "ccc"]
    assert evaluate_jq('.["é"]', data) == [[1.5, None, True]]
    assert evaluate_jq("empty", data) == []


def test_concurrent_jq_evaluations_each_get_their_own_results_while_one_spins() -> None:
    outcomes: dict[int, list[object]] = {}
    failures: list[str] = []

    def evaluate(k: int) -> None:
        outcomes[k] = [evaluate_jq(".k * 2", {"k": k})[0] for _ in range(20)]

    def spin() -> None:
        try:
            evaluate_jq("def f: f; f", {}, limits=SHORT)
        except ScriptError as exc:
            failures.append(str(exc))

    threads = [threading.Thread(target=evaluate, args=(k,)) for k in range(8)] + [threading.Thread(target=spin)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {k: [k * 2] * 20 for k in range(8)}
    assert failures == ["jq program exceeded the time limit of 0.3 s"]
    assert len(_helpers()) <= sandbox.POOL_SIZE


def test_a_helper_killed_while_idle_is_replaced_without_failing_the_program() -> None:
    assert evaluate_jq(".", 1) == [1]
    helpers = _helpers()
    assert helpers
    for pid in helpers:
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, but left for the pool to reap
    assert evaluate_jq(". + 1", 1) == [2]
    assert set(_helpers()).isdisjoint(helpers)
    # the helper the evaluation met was reaped; the others are, too, when an evaluation next meets them
    assert len(set(_zombies()) & set(helpers)) == len(helpers) - 1
    sandbox.close()
    assert set(_zombies()) & set(helpers) == set()
    assert _helpers() == []
    assert evaluate_jq(". + 2", 1) == [3]


def _busy_script(cpu_seconds: float) -> str:
    """A script that keeps QuickJS busy for about ``cpu_seconds`` of CPU time (the sandbox's clock is frozen, so
    the loop counts), calibrated here in process by this thread's CPU clock, which no other work advances."""
    loop = "(function () {{ var x = 0; for (var i = 0; i < {}; i++) {{ x += i % 7; }} return x > -1; }})()"
    n = 100_000
    while True:
        context = quickjs.Context()
        began = time.thread_time()
        context.eval(loop.format(n))
        took = time.thread_time() - began
        if took > 0.1:
            return loop.format(int(n * cpu_seconds / took))
        n *= 4


def _children() -> dict[int, str]:
    """This process's child processes: PID → state (``Z`` for one that exited and was not reaped)."""
    states: dict[int, str] = {}
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as children:
            for pid in children.read().split():
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        states[int(pid)] = stat.read().rsplit(")", 1)[1].split()[0]
                except FileNotFoundError:  # reaped since the listing
                    pass
    return states


def _helpers() -> list[int]:
    """This process's running sandbox helpers, by PID."""
    return [pid for pid, state in _children().items() if state != "Z" and _is_helper(pid)]


def _zombies() -> list[int]:
    """Children that exited and were never reaped: a leak."""
    return [pid for pid, state in _children().items() if state == "Z"]


def _is_helper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"decider/sandbox.py" in cmdline.read()
    except FileNotFoundError:  # reaped since the listing
        return False


def test_jq_errors_are_worded_as_conductors_jq_engine_words_them_where_a_spec_shows_it() -> None:
    from partita.actors.decider.sandbox import conductor_jq_error

    assert conductor_jq_error('Cannot index string with string ("array")') == 'Cannot index string with string "array"'
    assert conductor_jq_error('Cannot index array with string ("a b")') == 'Cannot index array with string "a b"'
    unchanged = 'number (1) and string ("a") cannot be added'
    assert conductor_jq_error(unchanged) == unchanged
