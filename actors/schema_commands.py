"""``partita schema export``: the wire contract as JSON Schema (draft 2020-12), generated from the msgspec types.

Every message a party other than a node sends or receives (docs/protocol.md) is exported, by the name of its
Struct: what msgspec's decoder accepts is what the schema accepts. Two rules are applied on top of
``msgspec.json.schema_components``, each one msgspec's own:

* ``kind`` is optional on a tagged message: a subject that carries one type is decoded with that type's
  decoder, which takes a message without the tag (and refuses a wrong one). On ``<prefix>.wf.<p>.cmd``,
  where several kinds share the subject, it is required: the ``Command`` schema says so.
* ``object`` (a user payload's values, ``logs``) is any JSON value.

Fields with defaults are optional and carry their ``default``: an absent field means that value.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

import anyio.to_thread
import msgspec

from partita.schemas import (
    ChildFinished,
    Command,
    CommandAnswer,
    HistoryEntry,
    PauseWorkflow,
    ReconcileWorkflow,
    RerunWorkflow,
    RestartWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SkipTask,
    StartWorkflow,
    Task,
    TaskMessage,
    TaskResult,
    TaskStarted,
    TerminateWorkflow,
    UpdateTask,
    WorkerAnnouncement,
    Workflow,
    WorkflowFinished,
)
from partita.schemas._struct import Message
from partita.transport import DeadLetter

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID: Final = "urn:partita:protocol"
INDEX_FILE: Final = "index.json"
EXIT_USAGE: Final = 2

_EVENTS: Final = "JetStream, stream <PREFIX>_EVENTS"
_CMD: Final = "<prefix>.wf.<partition>.cmd"


@dataclass(frozen=True, slots=True)
class Exported:
    """One exported schema: the type, where it travels, and who sends it to whom."""

    name: str
    type: object
    subject: str
    transport: str
    sender: str
    receiver: str
    union: str | None = None  # the union schema (``Command``) that also accepts it, on the same subject


EXPORTED: Final = (
    Exported("StartWorkflow", StartWorkflow, "<prefix>.wf.<partition>.start", _EVENTS, "client", "node"),
    Exported(
        "TaskMessage", TaskMessage, "<prefix>.task.<type>.<domain>.<taskId>", "JetStream, stream <PREFIX>_TASKS",
        "node", "worker",
    ),
    Exported("TaskStarted", TaskStarted, "<prefix>.wf.<partition>.started.<type>.<domain>", _EVENTS, "worker", "node"),
    Exported("TaskResult", TaskResult, "<prefix>.wf.<partition>.result.<type>.<domain>", _EVENTS, "worker", "node"),
    Exported("Command", Command, _CMD, _EVENTS, "client", "node"),
    Exported("UpdateTask", UpdateTask, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("TerminateWorkflow", TerminateWorkflow, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("PauseWorkflow", PauseWorkflow, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("ResumeWorkflow", ResumeWorkflow, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("RetryWorkflow", RetryWorkflow, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("RestartWorkflow", RestartWorkflow, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("SkipTask", SkipTask, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("RerunWorkflow", RerunWorkflow, _CMD, _EVENTS, "client", "node", "Command"),
    Exported("ChildFinished", ChildFinished, _CMD, _EVENTS, "node", "node", "Command"),
    Exported("ReconcileWorkflow", ReconcileWorkflow, _CMD, _EVENTS, "node", "node", "Command"),
    Exported("WorkflowFinished", WorkflowFinished, "<prefix>.done.<workflowId>", "core NATS", "node", "client"),
    Exported(
        "WorkerAnnouncement", WorkerAnnouncement, "<prefix>.workers.<type>.<domain>", "core NATS", "worker", "node"
    ),
    Exported(
        "HistoryEntry", HistoryEntry, "<prefix>.history.<workflowId>", "JetStream, stream <PREFIX>_HISTORY", "node",
        "client",
    ),
    Exported(
        "DeadLetter", DeadLetter, "<prefix>.dlq.<kind>", "JetStream, stream <PREFIX>_DLQ", "node or worker", "admin"
    ),
    Exported(
        "Workflow", Workflow, "key <workflowId> of KV <prefix>_workflows", "KV, MessagePack (member `workflow`)",
        "node", "client",
    ),
    Exported("Task", Task, "each of Workflow.tasks", "inside Workflow", "node", "client"),
    Exported(
        "CommandAnswer", CommandAnswer, "key <workflowId> of KV <prefix>_workflows",
        "KV, MessagePack (each of member `answers`)", "node", "client",
    ),
)  # fmt: skip


def _any_json(cls: type) -> dict[str, object]:
    if cls is object:
        return {"description": "any JSON value"}
    raise NotImplementedError  # msgspec then reports the type it cannot describe


def _message_tags() -> dict[str, str]:
    """Struct name -> ``kind`` of every tagged wire message."""
    tags: dict[str, str] = {}
    pending: list[type[Message]] = [Message]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        tag = cls.__struct_config__.tag
        if isinstance(tag, str):
            tags[cls.__name__] = tag
    return tags


def _components(tp: object) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """``(root, $defs)`` of ``tp``, with ``kind`` optional on every tagged message (see the module docstring)."""
    (root,), components = msgspec.json.schema_components([tp], schema_hook=_any_json, ref_template="#/$defs/{name}")
    defs: dict[str, dict[str, object]] = json.loads(json.dumps(components))  # JSON values: a tuple default, a list
    tags = _message_tags()
    for name, schema in defs.items():
        required = schema.get("required")
        if name in tags and isinstance(required, list) and "kind" in required:
            schema["required"] = [field for field in required if field != "kind"]
    return root, defs


def _definition(entry: Exported) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """The schema of ``entry`` under its name, and the other definitions it refers to."""
    root, defs = _components(entry.type)
    if entry.name in defs:
        return defs.pop(entry.name), defs
    # A union (Command): each member needs its kind, the only thing that tells them apart on one subject.
    members = root.get("anyOf")
    assert isinstance(members, list), entry.name
    union = {
        "title": entry.name,
        "description": f"What {entry.subject} accepts: one of these messages, each naming its `kind`.",
        **root,
        "anyOf": [{**member, "required": ["kind"]} for member in members],
    }
    return union, defs


def _index_entry(entry: Exported, file: str | None) -> dict[str, object]:
    item: dict[str, object] = {
        "name": entry.name,
        "kind": _message_tags().get(entry.name),
        "subject": entry.subject,
        "transport": entry.transport,
        "from": entry.sender,
        "to": entry.receiver,
    }
    if entry.union is not None:
        item["alsoIn"] = entry.union
    if file is not None:
        item["file"] = file
    else:
        item["$ref"] = f"#/$defs/{entry.name}"
    return item


def protocol_schema() -> dict[str, object]:
    """One JSON Schema document: every exported message under ``$defs`` (by Struct name), and the index."""
    defs: dict[str, dict[str, object]] = {}
    for entry in EXPORTED:
        schema, others = _definition(entry)
        for name, value in [(entry.name, schema), *others.items()]:
            if defs.setdefault(name, value) != value:
                raise AssertionError(f"two different schemas named {name}")  # msgspec names components uniquely
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "Partita wire protocol",
        "description": (
            "The messages of docs/protocol.md, generated from Partita's msgspec types (`partita schema export`). "
            "Validate a message against `#/$defs/<name>`; `messages` says where each travels."
        ),
        "messages": [_index_entry(entry, None) for entry in EXPORTED],
        "$defs": defs,
    }


def schema_files() -> Iterator[tuple[str, dict[str, object]]]:
    """``(file name, document)`` for each exported message, self-contained, then the index."""
    index = []
    for entry in EXPORTED:
        schema, others = _definition(entry)
        file = f"{entry.name}.schema.json"
        index.append(_index_entry(entry, file))
        yield (
            file,
            {
                "$schema": DRAFT,
                "$id": f"{SCHEMA_ID}:{entry.name}",
                "title": entry.name,
                "$ref": f"#/$defs/{entry.name}",
                "$defs": {entry.name: schema, **others},
            },
        )
    yield INDEX_FILE, {"title": "Partita wire protocol", "$id": SCHEMA_ID, "messages": index}


def _render(document: dict[str, object]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


class _OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit 2, not a usage screen (``--help`` still shows it)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:  # the top-level parser would report them later, under a screen of usage
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see --help)\n")


def add_schema_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schema = commands.add_parser("schema", help="the wire protocol (docs/protocol.md) as JSON Schema")
    schema.set_defaults(handler=_missing_command)
    sub = schema.add_subparsers(dest="schema_command", parser_class=_OneLineParser)
    export = sub.add_parser(
        "export", help="JSON Schema (draft 2020-12) of every message clients and workers send or receive"
    )
    export.add_argument(
        "--out", metavar="DIR", type=Path, default=None,
        help=f"write one <message>.schema.json per message and {INDEX_FILE} into DIR (default: one document on "
        "stdout)",
    )  # fmt: skip
    export.set_defaults(handler=cmd_schema_export)


async def _missing_command(args: argparse.Namespace) -> int:
    del args
    print("error: partita schema: name a command: export (see --help)", file=sys.stderr)
    return EXIT_USAGE


class _ExportRefused(Exception):
    """A reason to print, one line (bad ``--out``)."""


def _write_files(out: Path) -> int:
    if out.exists() and not out.is_dir():
        raise _ExportRefused(f"--out {out}: not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        count = 0
        for name, document in schema_files():
            (out / name).write_text(_render(document), encoding="utf-8")
            count += 1
    except OSError as exc:
        raise _ExportRefused(f"--out {out}: {exc.strerror or exc}") from exc
    return count


async def cmd_schema_export(args: argparse.Namespace) -> int:
    out: Path | None = args.out
    if out is None:
        sys.stdout.write(_render(protocol_schema()))
        return 0
    try:
        count = await anyio.to_thread.run_sync(_write_files, out)
    except _ExportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {count} files to {out}")
    return 0
