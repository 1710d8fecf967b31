"""Limits on what Partita accepts, so that no input can crash a node, block a partition or lose a workflow.

One frozen :class:`Limits` holds them all; ``docs/limits.md`` says what each bounds and what fails when it
is exceeded. The values a process uses are read once, at import, from ``PARTITA_LIMIT_*`` environment
variables (:meth:`Limits.from_env`, the only place they are read) and returned by :func:`configured_limits`.
Everything else is pure: the decider takes a ``Limits`` and never reads the environment. Nodes, clients and
workers of one deployment should share the same values: a node enforces its own, whatever a client checked.

Nesting depth is measured without recursion (:func:`json_depth` over Python values, :func:`json_text_depth`
over JSON text), because a payload a hundred thousand levels deep must be refused, not blow the Python stack
while being measured. msgspec itself raises ``RecursionError`` (not ``DecodeError``) when it decodes or
encodes JSON or MessagePack nested deeper than the interpreter's recursion limit allows (about 1000 levels,
less the caller's own stack), so JSON from outside must be measured before it is decoded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Final

import msgspec

__all__ = [
    "ENV_VARS",
    "MAX_SAFE_DEPTH",
    "Limits",
    "configured_limits",
    "json_depth",
    "json_text_depth",
    "prune_json",
]

# The deepest nesting a limit may be raised to. msgspec and the stdlib json module recurse once per level and
# give up near the interpreter's recursion limit (1000), less what the caller's stack already holds.
MAX_SAFE_DEPTH: Final = 512

# Limits field -> the environment variable that overrides it.
ENV_VARS: Final[Mapping[str, str]] = {
    "max_definition_bytes": "PARTITA_LIMIT_DEFINITION_BYTES",
    "max_definition_depth": "PARTITA_LIMIT_DEFINITION_DEPTH",
    "max_definition_tasks": "PARTITA_LIMIT_DEFINITION_TASKS",
    "max_payload_depth": "PARTITA_LIMIT_PAYLOAD_DEPTH",
    "max_loop_iterations": "PARTITA_LIMIT_LOOP_ITERATIONS",
    "max_fork_width": "PARTITA_LIMIT_FORK_WIDTH",
    "max_workflow_tasks": "PARTITA_LIMIT_WORKFLOW_TASKS",
}
_DEPTHS: Final = frozenset({"max_definition_depth", "max_payload_depth"})


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What Partita accepts. The defaults are generous for real workflows and small enough that a runaway or
    hostile one ends with a clear reason long before it exhausts memory, the Python stack or a NATS message."""

    # One definition as JSON. Real ones are a few KiB to a few hundred; a node keeps every definition in memory
    # and a running workflow carries a snapshot of its own in its record (itself bounded by max_payload).
    max_definition_bytes: int = 1024 * 1024
    # JSON nesting of one definition document: each operator nested in another adds three levels (a SWITCH:
    # decisionCases, the case's list, the task in it), about forty operators deep, plus inputParameters.
    # Bounded so that decoding and walking a definition are safe.
    max_definition_depth: int = 128
    # WorkflowTasks in one definition, nested ones included (cases, branches, loop bodies).
    max_definition_tasks: int = 1000
    # JSON nesting of any payload: workflow input and output, task input and output, variables,
    # inputParameters. The payload map itself is level 1.
    max_payload_depth: int = 64
    # Iterations of one DO_WHILE (Conductor has no cap; a runaway loop must end). List mode (items) with more
    # items than this fails at once.
    max_loop_iterations: int = 1000
    # Branches of one FORK_JOIN_DYNAMIC.
    max_fork_width: int = 1000
    # Task instances in one running workflow (retries and loop iterations included), so a record cannot grow
    # without bound; keepLastN removes old iterations from the count.
    max_workflow_tasks: int = 10_000

    def __post_init__(self) -> None:
        for field in ENV_VARS:
            value = getattr(self, field)
            if value < 1:
                raise ValueError(f"{field} must be at least 1, got {value}")
            if field in _DEPTHS and value > MAX_SAFE_DEPTH:
                raise ValueError(f"{field} must be at most {MAX_SAFE_DEPTH}, got {value}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Limits:
        """The defaults, overridden by the ``PARTITA_LIMIT_*`` variables set in ``environ``; raises
        :class:`ValueError` naming the variable for a value that is not a whole number in range."""
        values: dict[str, int] = {}
        for field, name in ENV_VARS.items():
            raw = environ.get(name, "").strip().replace("_", "")
            if not raw:
                continue
            try:
                values[field] = int(raw)
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {environ[name]!r}") from None
        try:
            return cls(**values)
        except ValueError as exc:
            field = str(exc).split(" ", 1)[0]
            raise ValueError(f"{ENV_VARS.get(field, field)}: {exc}") from None

    @property
    def max_message_depth(self) -> int:
        """The deepest JSON a message from outside may be before it is decoded: a payload or a definition one
        level inside the message, plus a margin. Deeper is refused unread (msgspec would raise
        ``RecursionError``); anything shallower is decoded and judged by the finer limits."""
        return max(self.max_payload_depth, self.max_definition_depth) + 4

    # --- the problems, worded once ------------------------------------------------------------------

    def payload_problem(self, what: str, payload: object, *, depth: int | None = None) -> str | None:
        """Why ``payload`` (named ``what``, e.g. ``"task output"``) is nested too deeply, or None."""
        depth = json_depth(payload) if depth is None else depth
        if depth <= self.max_payload_depth:
            return None
        limit = self.max_payload_depth
        return f"{what} is nested {depth} levels deep; the limit is {limit} ({_env('max_payload_depth')})"

    def definition_depth_problem(self, depth: int, what: str = "the definition", *, slack: int = 0) -> str | None:
        """Why a definition nested ``depth`` levels is refused, or None; ``slack`` levels more are let
        through (a check before decoding that a finer one follows)."""
        if depth <= self.max_definition_depth + slack:
            return None
        limit = self.max_definition_depth
        return f"{what} is nested {depth} levels deep; the limit is {limit} ({_env('max_definition_depth')})"

    def definition_size_problem(self, size: int, what: str = "the definition") -> str | None:
        if size <= self.max_definition_bytes:
            return None
        limit = self.max_definition_bytes
        return f"{what} is {size} bytes; the limit is {limit} bytes ({_env('max_definition_bytes')})"

    def definition_tasks_problem(self, count: int) -> str | None:
        if count <= self.max_definition_tasks:
            return None
        return (
            f"the definition has {count} tasks, nested ones included; the limit is {self.max_definition_tasks} "
            f"({_env('max_definition_tasks')})"
        )

    def loop_problem(self, iterations: int) -> str:
        return (
            f"DO_WHILE ran {iterations} iterations and would run another; the limit is "
            f"{self.max_loop_iterations} iterations ({_env('max_loop_iterations')})"
        )

    def loop_items_problem(self, items: int) -> str | None:
        if items <= self.max_loop_iterations:
            return None
        return (
            f"DO_WHILE items has {items} entries; the limit is {self.max_loop_iterations} iterations "
            f"({_env('max_loop_iterations')})"
        )

    def fork_width_problem(self, branches: int) -> str | None:
        if branches <= self.max_fork_width:
            return None
        return (
            f"FORK_JOIN_DYNAMIC would fork {branches} branches; the limit is {self.max_fork_width} "
            f"({_env('max_fork_width')})"
        )

    def workflow_tasks_problem(self, count: int, reference: str) -> str | None:
        """Why a workflow holding ``count`` tasks cannot schedule one more (``reference``), or None."""
        if count < self.max_workflow_tasks:
            return None
        return (
            f"the workflow has reached its limit of {self.max_workflow_tasks} tasks ({_env('max_workflow_tasks')}); "
            f"task {reference!r} was not scheduled"
        )


def _env(field: str) -> str:
    return ENV_VARS[field]


MAX_NAME_TOKEN: Final = 1024  # bytes of a task or workflow name once escaped into a subject token
_TOKEN_SAFE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def name_problem(what: str, name: str) -> str | None:
    """Why ``name`` cannot be part of a subject, or None. Names become subject tokens (escaped: every byte
    outside ``[A-Za-z0-9_-]`` takes three characters), and nats-server drops a connection whose protocol line
    passes 4 KiB, so a name is capped well below that."""
    size = sum(1 if char in _TOKEN_SAFE else 3 * len(char.encode()) for char in name)
    if size <= MAX_NAME_TOKEN:
        return None
    return f"{what} {name[:40]!r}... is {size} bytes as a subject token; the limit is {MAX_NAME_TOKEN}"


_LIMITS: Limits = Limits.from_env(os.environ)


def configured_limits() -> Limits:
    """The limits of this process: the defaults, overridden by ``PARTITA_LIMIT_*`` as they were at import."""
    return _LIMITS


# --- nesting depth, without recursion ---------------------------------------------------------------

_CONTAINERS: Final = (dict, list, tuple, msgspec.Struct)
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def json_depth(value: object) -> int:
    """How deeply ``value`` nests: 0 for a scalar, 1 for a flat dict, list or Struct (``{}`` too), one more
    per level below. Breadth-first, one level at a time, so the cost is one visit per container and the
    Python stack stays flat whatever the depth."""
    if not isinstance(value, _CONTAINERS):
        return 0
    depth = 0
    level: list[object] = [value]
    while level:
        depth += 1
        below: list[object] = []
        for node in level:
            children: Iterable[object]
            if isinstance(node, dict):
                children = node.values()
            elif isinstance(node, msgspec.Struct):
                children = msgspec.structs.astuple(node)
            elif isinstance(node, list | tuple):
                children = node
            else:  # pragma: no cover - only containers are ever queued
                continue
            # (The class test first: most children are scalars, and it is several times cheaper.)
            below += [child for child in children if child.__class__ not in _SCALARS and isinstance(child, _CONTAINERS)]
        level = below
    return depth


# A complete JSON string (escapes included), or a bracket: the tokens that matter for nesting.
_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_NOT_STRUCTURAL: Final = bytes(byte for byte in range(256) if byte not in b'[]{}"')
_STEP: Final = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_OPEN: Final = frozenset(b"[{")
_QUOTE: Final = ord('"')


def json_text_depth(data: bytes | bytearray | memoryview | str) -> int:
    """How deeply the JSON text ``data`` nests (as :func:`json_depth` would count it decoded), without
    decoding it: call it before handing JSON from outside to a decoder. Linear and mostly in C: escaped
    backslashes and quotes are dropped, then everything but brackets and quotes, then what lies between
    quotes (string contents), and the depth is the highest running sum of the brackets left. Malformed JSON
    gets a number too (an unterminated string's brackets count), which the decoder then refuses anyway."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if b"[" not in raw and b"{" not in raw:
        return 0
    structural = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURAL)
    outside_strings = b"".join(structural.split(b'"')[::2])
    return max(0, max(accumulate(map(_STEP.__getitem__, outside_strings)), default=0))


def prune_json(data: bytes | bytearray | memoryview | str, max_depth: int) -> bytes:
    """``data`` with every object or array nested deeper than ``max_depth`` replaced by ``null``, so that a
    decoder can read what lies near the top of a message too deep to decode whole (a start's
    ``workflowId``, to record the workflow FAILED). An unterminated container is cut off; the result is then
    malformed, but no longer deep."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    pieces: list[bytes] = []
    kept_from = 0
    cut_at = -1  # where the container being dropped opened
    depth = 0
    for token in _TOKEN.finditer(raw):
        first = raw[token.start()]
        if first == _QUOTE:
            continue
        if first in _OPEN:
            depth += 1
            if depth == max_depth + 1:
                cut_at = token.start()
            continue
        if depth == max_depth + 1 and cut_at >= 0:
            pieces += [raw[kept_from:cut_at], b"null"]
            kept_from, cut_at = token.end(), -1
        depth -= 1
    if cut_at >= 0:
        pieces += [raw[kept_from:cut_at], b"null"]
    else:
        pieces.append(raw[kept_from:])
    return b"".join(pieces)
