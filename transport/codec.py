"""Codecs: JSON for everything clients and workers see, MessagePack for what only nodes read.

One module-level encoder/decoder per type, built once (msgspec's fast path). Decode failures become
:class:`PayloadError` with the message kind in the text, whatever the bytes were: invalid UTF-8 and nesting
past the interpreter's recursion limit included (msgspec raises ``UnicodeDecodeError`` and ``RecursionError``
for those, not ``DecodeError``).

A JSON message is also held to two limits, because what passes the edge is stored and worked on by code
with fixed limits of its own:

* nesting at most :data:`MAX_NESTING_DEPTH` arrays and objects deep: the workflow record nests a payload a
  few levels deeper again, and msgspec recurses once per level, so a message that decodes at the edge could
  otherwise fail to decode as part of its record, deeper in a node's stack, and every later event of its
  workflow with it. The configurable limits (``partita.schemas.limits``: a payload's depth, a definition's)
  are semantic and fail the task or workflow that breaks them, with a reason; this one only keeps what
  reaches them decodable, so it sits above the highest value they may be set to;
* integers within ``-2**63 .. 2**64-1``, what MessagePack (the workflow record) can hold: a larger one would
  make the record unwritable, so every later event of its workflow would fail.

Both are checked only when the raw bytes could break them (more brackets than the depth limit, a run of 19
digits), so an ordinary message costs two byte scans.
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

import msgspec

from partita.schemas import (
    Command,
    StartWorkflow,
    TaskDef,
    TaskMessage,
    TaskResult,
    TaskStarted,
    TimerFired,
    Workflow,
    WorkflowDef,
    WorkflowFinished,
    WorkflowRecord,
)
from partita.schemas.conductor import conductor_workflow
from partita.schemas.errors import PayloadError
from partita.schemas.limits import MAX_SAFE_DEPTH

T = TypeVar("T")

MAX_NESTING_DEPTH: Final = MAX_SAFE_DEPTH + 8  # a message's own levels around the deepest payload allowed
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_LONG_NUMBER: Final = re.compile(rb"[0-9]{19}")  # every integer outside int64 has at least 19 digits


class StartIdentity(msgspec.Struct, rename="camel"):
    """Just enough of a start message to record a FAILED workflow when the rest does not decode."""

    workflow_id: str
    name: str = "?"


_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()

start_decoder = msgspec.json.Decoder(StartWorkflow)
start_identity_decoder = msgspec.json.Decoder(StartIdentity)


class TaskIdentity(msgspec.Struct, rename="camel"):
    """Just enough of a task message to report it FAILED when the rest does not decode."""

    task_id: str
    workflow_instance_id: str
    result_subject: str
    task_type: str | None = None


task_identity_decoder = msgspec.json.Decoder(TaskIdentity)
task_decoder = msgspec.json.Decoder(TaskMessage)
result_decoder = msgspec.json.Decoder(TaskResult)
started_decoder = msgspec.json.Decoder(TaskStarted)
command_decoder = msgspec.json.Decoder(Command)
timer_decoder = msgspec.json.Decoder(TimerFired)
finished_decoder = msgspec.json.Decoder(WorkflowFinished)
task_def_decoder = msgspec.json.Decoder(TaskDef)
workflow_def_decoder = msgspec.json.Decoder(WorkflowDef)
record_decoder = msgspec.msgpack.Decoder(WorkflowRecord)


def encode_json(value: object) -> bytes:
    return _json.encode(value)


def encode_record(record: WorkflowRecord) -> bytes:
    return _msgpack.encode(record)


def decode(decoder: msgspec.json.Decoder[T] | msgspec.msgpack.Decoder[T], data: bytes, what: str) -> T:
    try:
        value = decoder.decode(data)
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise PayloadError(f"malformed {what}: {exc}") from exc
    except UnicodeDecodeError as exc:  # a JSON string holding bytes that are not UTF-8
        raise PayloadError(f"malformed {what}: a string is not valid UTF-8 ({exc.reason})") from exc
    except RecursionError as exc:  # msgspec unwinds cleanly; the message is what is wrong
        raise PayloadError(f"malformed {what}: nested too deeply") from exc
    if isinstance(decoder, msgspec.json.Decoder):
        check_limits(value, data, what)
    return value


def check_limits(value: object, data: bytes, what: str) -> None:
    """Raise :class:`PayloadError` if ``value`` (decoded from the JSON ``data``) nests deeper than
    :data:`MAX_NESTING_DEPTH` or holds an integer MessagePack cannot (see the module docstring)."""
    deep = data.count(b"[") + data.count(b"{") > MAX_NESTING_DEPTH
    if not deep and _LONG_NUMBER.search(data) is None:
        return
    try:
        tree = msgspec.to_builtins(value)
    except RecursionError as exc:
        raise PayloadError(f"malformed {what}: nested too deeply") from exc
    pending: list[tuple[object, int]] = [(tree, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, int) and not _INT_MIN <= item <= _INT_MAX:
                raise PayloadError(f"malformed {what}: a {item.bit_length()}-bit integer, outside -2**63..2**64-1")
            continue
        if depth >= MAX_NESTING_DEPTH:
            raise PayloadError(f"malformed {what}: nested deeper than {MAX_NESTING_DEPTH} arrays and objects")
        pending.extend((child, depth + 1) for child in children)


def decode_record(data: bytes) -> WorkflowRecord:
    return decode(record_decoder, data, "workflow record")


def workflow_json(workflow: Workflow, *, indent: int = 0, include_tasks: bool = True) -> bytes:
    """The workflow as Conductor's ``Workflow`` JSON (every field Conductor writes, at its defaults too)."""
    data = _json.encode(conductor_workflow(workflow, include_tasks=include_tasks))
    return msgspec.json.format(data, indent=indent) if indent else data
