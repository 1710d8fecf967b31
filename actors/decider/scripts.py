"""Sandboxed scripts for the decider: JavaScript in QuickJS (quickjs-ng) and jq programs.

Both run out of process, in ``sandbox``'s helpers: libjq has no limits of its own, and QuickJS's time limit
counts the CPU time of the whole process it runs in, which concurrent scripts and the node would share.

JavaScript runs in a fresh QuickJS context per evaluation, with a time limit, a memory limit, a stack limit, an
output limit and nothing but the language itself: no modules, no file or network access, no ``std``/``os``.
``$`` is bound to the task's resolved input, as in Conductor. ``Date`` (however reached) and ``performance``
are frozen to the decision's clock and ``Math.random`` is seeded from the evaluation, so replaying a decision
replays the script exactly. The result is serialised inside the script's time and memory limits, so a getter,
``toJSON`` or Proxy trap cannot escape them. Never Python ``eval``.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Final

from . import sandbox

TIME_LIMIT_SECONDS: Final = 4.0  # Conductor's default (CONDUCTOR_SCRIPT_MAX_EXECUTION_SECONDS)
MEMORY_LIMIT_BYTES: Final = 32 * 1024 * 1024
STACK_LIMIT_BYTES: Final = 1024 * 1024
OUTPUT_LIMIT_BYTES: Final = 4 * 1024 * 1024  # a result's JSON; a task output must fit a NATS message anyway
JQ_MEMORY_LIMIT_BYTES: Final = 128 * 1024 * 1024  # a jq helper's address space beyond its own (~16 MiB)


class ScriptError(Exception):
    """A script failed: syntax, runtime error, time, memory or output limit. The message says which."""


@dataclass(frozen=True, slots=True)
class ScriptLimits:
    time_seconds: float = TIME_LIMIT_SECONDS  # JavaScript: CPU time of the evaluation; jq: wall-clock time
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
    try:
        value = sandbox.evaluate_javascript(
            expression,
            json.dumps(bindings, default=str).encode(),
            now=float(now),
            seed=zlib.crc32(f"{seed}\x00{expression}".encode(errors="surrogatepass")) % 2**31 or 1,
            time_seconds=limits.time_seconds,
            memory_bytes=limits.memory_bytes,
            stack_bytes=STACK_LIMIT_BYTES,
            output_bytes=limits.output_bytes,
        )
    except sandbox.SandboxError as exc:
        raise ScriptError(str(exc)) from exc
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # JS has one number type; integral results read as integers, as in Conductor
    return value


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
        return sandbox.evaluate_jq(
            program,
            document,
            time_seconds=limits.time_seconds,
            memory_bytes=limits.jq_memory_bytes,
            output_bytes=limits.output_bytes,
        )
    except sandbox.SandboxError as exc:
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
