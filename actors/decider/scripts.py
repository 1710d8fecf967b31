"""Sandboxed scripts for the decider: JavaScript in QuickJS (quickjs-ng) and jq programs.

JavaScript runs in a fresh QuickJS context per evaluation, with a time limit, a memory limit, a stack limit and
nothing but the language itself: no modules, no file or network access, no ``std``/``os``. ``$`` is bound to
the task's resolved input, as in Conductor. ``Date.now()`` is frozen to the decision's clock and
``Math.random`` is seeded from the evaluation, so replaying a decision replays the script exactly. Never
Python ``eval``.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Final

import jq
import quickjs

TIME_LIMIT_SECONDS: Final = 4.0  # Conductor's default (CONDUCTOR_SCRIPT_MAX_EXECUTION_SECONDS)
MEMORY_LIMIT_BYTES: Final = 32 * 1024 * 1024
STACK_LIMIT_BYTES: Final = 1024 * 1024

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
  globalThis.Date = FrozenDate;
  var seed = __partita_seed;
  Math.random = function () { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
})();
"""


class ScriptError(Exception):
    """A script failed: syntax, runtime error, time or memory limit. The message says which."""


@dataclass(frozen=True, slots=True)
class ScriptLimits:
    time_seconds: float = TIME_LIMIT_SECONDS
    memory_bytes: int = MEMORY_LIMIT_BYTES


def evaluate_javascript(
    expression: str,
    bindings: dict[str, object],
    *,
    now: int,
    seed: str = "",
    limits: ScriptLimits = ScriptLimits(),
) -> object:
    """The value of the script's last expression, as JSON-compatible Python data. ``now`` is what the script's
    clock says; ``seed`` (e.g. the task id) makes ``Math.random`` differ between tasks yet repeat on replay."""
    context = quickjs.Context()
    context.set_memory_limit(limits.memory_bytes)
    context.set_max_stack_size(STACK_LIMIT_BYTES)
    context.set("__partita_input", json.dumps(bindings, default=str))
    context.set("__partita_now", float(now))  # as a double: quickjs-ng passes Python ints as int32
    context.set("__partita_seed", zlib.crc32(f"{seed}\x00{expression}".encode()) % 2**31 or 1)
    try:
        context.eval(_PRELUDE)
        context.set_time_limit(limits.time_seconds)
        value = context.eval(expression)
        if isinstance(value, quickjs.Object):
            text = value.json()
            return None if text is None else json.loads(text)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # JS has one number type; integral results read as integers, as in Conductor
        return value
    except quickjs.JSException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "interrupted" in message:
            raise ScriptError(f"script exceeded the time limit of {limits.time_seconds:g} s") from exc
        if "out of memory" in message:
            raise ScriptError(
                f"script exceeded the memory limit of {limits.memory_bytes // (1024 * 1024)} MiB"
            ) from exc
        raise ScriptError(message) from exc
    except quickjs.StackOverflow as exc:
        raise ScriptError("script exceeded the stack limit") from exc


def evaluate_jq(program: str, data: object) -> list[object]:
    """Every value ``program`` produces for ``data``."""
    try:
        return list(jq.compile(program).input_value(data).all())
    except ValueError as exc:
        raise ScriptError(str(exc).strip().splitlines()[0]) from exc


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
