"""The definitions bucket: Conductor TaskDefs and WorkflowDefs stored as their JSON.

Keys: ``task.<name>`` and ``workflow.<name>.<version>`` (names escaped, see ``layout.escape_token``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from partita.schemas import PayloadError, TaskDef, WorkflowDef, configured_limits, json_text_depth, validate

from .codec import decode, encode_json, task_def_decoder, workflow_def_decoder
from .connection import KvBucket
from .layout import Layout

log = structlog.get_logger(__name__)


class DefinitionStore:
    def __init__(self, bucket: KvBucket, layout: Layout) -> None:
        self._bucket = bucket
        self._layout = layout

    async def put(self, definition: TaskDef | WorkflowDef) -> None:
        """Validate (the definition limits included), then store (overwriting the same name, or name and
        version)."""
        validate(definition)
        if isinstance(definition, WorkflowDef):
            key = self._layout.workflow_def_key(definition.name, definition.version)
        else:
            key = self._layout.task_def_key(definition.name)
        await self._bucket.put(key, encode_json(definition))

    async def task_def(self, name: str) -> TaskDef | None:
        entry = await self._bucket.get(self._layout.task_def_key(name))
        return _task_def(entry.value) if entry else None

    async def workflow_def(self, name: str, version: int | None = None) -> WorkflowDef | None:
        """The definition of ``name`` at ``version``, or its latest version when ``version`` is None."""
        if version is None:
            versions = await self.versions(name)
            if not versions:
                return None
            version = max(versions)
        entry = await self._bucket.get(self._layout.workflow_def_key(name, version))
        return _workflow_def(entry.value) if entry else None

    async def versions(self, name: str) -> list[int]:
        pattern = self._layout.workflow_def_key(name, 0).rsplit(".", 1)[0] + ".*"
        found = []
        for key in await self._bucket.keys(pattern):
            parsed = self._layout.parse_definition_key(key)
            if parsed and parsed[2] is not None:
                found.append(parsed[2])
        return found

    async def all(self) -> list[TaskDef | WorkflowDef]:
        found: list[TaskDef | WorkflowDef] = []
        for key in sorted(await self._bucket.keys()):
            parsed = self._layout.parse_definition_key(key)
            entry = await self._bucket.get(key)
            if parsed is None or entry is None:
                continue
            found.append(_task_def(entry.value) if parsed[0] == "task" else _workflow_def(entry.value))
        return found

    async def watch(self) -> AsyncIterator[TaskDef | WorkflowDef | None]:
        """Every stored definition, then ``None`` once (caught up), then each later registration."""
        async for entry in self._bucket.watch(">"):
            if entry is None:
                yield None
                continue
            parsed = self._layout.parse_definition_key(entry.key)
            if parsed is None:
                continue
            try:
                yield _task_def(entry.value) if parsed[0] == "task" else _workflow_def(entry.value)
            except PayloadError as exc:  # written by something other than Partita: skip it, loudly
                log.error("definition_unreadable", key=entry.key, error=str(exc))


def _unnested(data: bytes, what: str) -> bytes:
    """``data``, unless it nests deeper than any valid definition: the bucket may hold what something other
    than Partita wrote, and msgspec raises RecursionError (not a DecodeError) on JSON ~1000 levels deep."""
    limit = configured_limits().max_message_depth
    depth = json_text_depth(data)
    if depth > limit:
        raise PayloadError(f"malformed {what}: nested {depth} levels deep; no definition nests deeper than {limit}")
    return data


def _task_def(data: bytes) -> TaskDef:
    return decode(task_def_decoder, _unnested(data, "TaskDef"), "TaskDef")


def _workflow_def(data: bytes) -> WorkflowDef:
    return decode(workflow_def_decoder, _unnested(data, "WorkflowDef"), "WorkflowDef")
