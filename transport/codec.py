"""Codecs: JSON for everything clients and workers see, MessagePack for what only nodes read.

One module-level encoder/decoder per type, built once (msgspec's fast path). Decode failures become
:class:`PayloadError` with the message kind in the text.
"""

from __future__ import annotations

from typing import TypeVar

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
from partita.schemas.errors import PayloadError

T = TypeVar("T")


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
        return decoder.decode(data)
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise PayloadError(f"malformed {what}: {exc}") from exc


def decode_record(data: bytes) -> WorkflowRecord:
    return decode(record_decoder, data, "workflow record")


def workflow_json(workflow: Workflow, *, indent: int = 0) -> bytes:
    data = _json.encode(workflow)
    return msgspec.json.format(data, indent=indent) if indent else data
