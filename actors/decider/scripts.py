"""Sandboxed scripts for the decider: JavaScript in QuickJS (quickjs-ng) and jq programs.

JavaScript runs in a fresh QuickJS context per evaluation, with a time limit, a memory limit, a stack limit, an
output limit and nothing but the language itself: no modules, no file or network access, no ``std``/``os``.
``$`` is bound to the task's resolved input, as in Conductor. ``Date`` (however reached) and ``performance``
are frozen to the decision's clock and ``Math.random`` is seeded from the evaluation, so replaying a decision
replays the script exactly. The result is serialised inside the script's time and memory limits, so a getter,
``toJSON`` or Proxy trap cannot escape them. Never Python ``eval``.

jq programs run out of process, in ``jq_sandbox``'s helpers: libjq has no limits of its own.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Final

import quickjs

from . import jq_sandbox
from .jq_sandbox import describe_size

TIME_LIMIT_SECONDS: Final = 4.0  # Conductor's default (CONDUCTOR_SCRIPT_MAX_EXECUTION_SECONDS)
MEMORY_LIMIT_BYTES: Final = 32 * 1024 * 1024
STACK_LIMIT_BYTES: Final = 1024 * 1024
OUTPUT_LIMIT_BYTES: Final = 4 * 1024 * 1024  # a result's JSON; a task output must fit a NATS message anyway
JQ_MEMORY_LIMIT_BYTES: Final = 128 * 1024 * 1024  # a jq helper's address space beyond its own (~16 MiB)

_PRELUDE = """
var $ = JSON.parse(__partita_input);
(function () {
  var frozen = __partita_now;
  var RealDate = Date;
  function FrozenDate() {
    if (!new.target) return new RealDate(frozen).toString();
    if (arguments.length === 0) return new RealDate(frozen);
    return new (Function.prototype.bind.apply(RealDate, [null].concat(Array.prototype.slice.call(arguments))))();
  }
  FrozenDate.prototype = RealDate.prototype;
  FrozenDate.now = function () { return frozen; };
  FrozenDate.UTC = RealDate.UTC;
  FrozenDate.parse = RealDate.parse;
  // (new Date()).constructor would otherwise be the real, ticking Date
  Object.defineProperty(RealDate.prototype, "constructor", { value: FrozenDate, writable: true, configurable: true });
  globalThis.Date = FrozenDate;
  globalThis.performance = { now: function () { return 0; }, timeOrigin: frozen };
  var seed = __partita_seed;
  Math.random = function () { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
})();
"""

# Runs the script as a global script (an indirect eval, so its last expression is its value) and serialises the
# value before returning, within the limits: "J" + JSON for objects, "S" + the string, "L" when too large. What
# it uses is taken before the script runs, so the script cannot replace it. Strings are returned through
# ``join``, which makes them flat: the binding cannot read a concatenated (rope) string.
_RUN = """
(function (run, script, stringify, AsyncResult, apply, join, limit) {
  var value = run(script);
  if (value instanceof AsyncResult) {
    throw new TypeError("the script's value is a Promise: import() and asynchronous results are not supported");
  }
  if (typeof value === "string") return value.length > limit ? "L" : apply(join, ["S", value], [""]);
  if ((typeof value === "object" && value !== null) || typeof value === "function") {
    var text = stringify(value);
    if (text === undefined) return undefined;
    return text.length > limit ? "L" : apply(join, ["J", text], [""]);
  }
  return value;
})(eval, __partita_script, JSON.stringify, Promise, Reflect.apply, Array.prototype.join, __partita_limit)
"""


class ScriptError(Exception):
    """A script failed: syntax, runtime error, time, memory or output limit. The message says which."""


@dataclass(frozen=True, slots=True)
class ScriptLimits:
    time_seconds: float = TIME_LIMIT_SECONDS
    memory_bytes: int = MEMORY_LIMIT_BYTES  # JavaScript's heap
    output_bytes: int = OUTPUT_LIMIT_BYTES  # the JSON of a result (jq: of all its results)
    jq_memory_bytes: int = JQ_MEMORY_LIMIT_BYTES


DEFAULT_LIMITS = ScriptLimits()  # what the decider uses; tests may substitute smaller limits


def evaluate_javascript(
    expression: str,
    bindings: dict[str, object],
    *,
    now: int,
    seed: str = "",
    limits: ScriptLimits | None = None,
) -> object:
    """The value of the script's last expression, as JSON-compatible Python data. ``now`` is what the script's
    clock says; ``seed`` (e.g. the task id) makes ``Math.random`` differ between tasks yet repeat on replay."""
    limits = limits or DEFAULT_LIMITS
    context = quickjs.Context()  # its own runtime: nothing one evaluation does is seen by the next
    context.set_memory_limit(limits.memory_bytes)
    context.set_max_stack_size(STACK_LIMIT_BYTES)
    context.set("__partita_input", json.dumps(bindings, default=str))
    context.set("__partita_now", float(now))  # as a double: quickjs-ng passes Python ints as int32
    context.set("__partita_seed", zlib.crc32(f"{seed}\x00{expression}".encode()) % 2**31 or 1)
    context.set("__partita_script", expression)
    context.set("__partita_limit", float(limits.output_bytes))
    try:
        context.eval(_PRELUDE)
        context.set_time_limit(limits.time_seconds)
        value = context.eval(_RUN)
    except quickjs.JSException as exc:
        raise ScriptError(_javascript_failure(exc, limits)) from exc
    except quickjs.StackOverflow as exc:
        raise ScriptError(f"script exceeded the stack limit of {describe_size(STACK_LIMIT_BYTES)}") from exc
    except TypeError as exc:  # the binding met a value it cannot convert (the wrapper should leave none)
        raise ScriptError(f"script result cannot be read: {exc}") from exc
    if isinstance(value, str):
        tag, text = value[:1], value[1:]
        if tag == "L" or _utf8_size(text, limits.output_bytes) > limits.output_bytes:
            raise ScriptError(f"script result exceeds the output limit of {describe_size(limits.output_bytes)}")
        if tag == "S":
            return text
        try:
            return json.loads(text)
        except RecursionError as exc:  # deeper than this thread can decode: no task output could hold it
            raise ScriptError("the script's result is nested too deeply to read") from exc
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # JS has one number type; integral results read as integers, as in Conductor
    return value


def _utf8_size(text: str, limit: int) -> int:
    """``len(text.encode())``, computed only if it can exceed ``limit``: JavaScript checked the length in UTF-16
    units, and each takes one to three bytes in UTF-8."""
    return len(text) if len(text) * 3 <= limit else len(text.encode(errors="surrogatepass"))


def _javascript_failure(exc: quickjs.JSException, limits: ScriptLimits) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "interrupted" in message:
        return f"script exceeded the time limit of {limits.time_seconds:g} s"
    if "out of memory" in message:
        return f"script exceeded the memory limit of {describe_size(limits.memory_bytes)}"
    if "Maximum call stack size exceeded" in message:
        return f"script exceeded the stack limit of {describe_size(STACK_LIMIT_BYTES)}"
    if message == "null":  # QuickJS throws null when it cannot even allocate the out-of-memory error
        return f"script exceeded the memory limit of {describe_size(limits.memory_bytes)} (or threw null)"
    return message


def evaluate_jq(
    program: str, data: object, *, now: int | None = None, limits: ScriptLimits | None = None
) -> list[object]:
    """Every value ``program`` produces for ``data``. With ``now`` (milliseconds, as for JavaScript), jq's ``now``
    is that instant rather than the real clock."""
    limits = limits or DEFAULT_LIMITS
    if now is not None:
        program = f"def now: {now / 1000!r}; {program}"
    try:
        document = json.dumps(data, default=str).encode()
    except (TypeError, ValueError) as exc:  # e.g. a circular structure: not an input jq could read
        raise ScriptError(f"jq input is not JSON: {exc}") from exc
    try:
        return jq_sandbox.evaluate(
            program,
            document,
            time_seconds=limits.time_seconds,
            memory_bytes=limits.jq_memory_bytes,
            output_bytes=limits.output_bytes,
        )
    except jq_sandbox.JqError as exc:
        raise ScriptError(str(exc)) from exc


def to_case(value: object) -> str:
    """A script or parameter value as Conductor stringifies it to pick a case (Java's String.valueOf)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 2**53 else str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
