"""The node's in-memory cache of definitions, kept current by a KV watch (push, not poll)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import final

import anyio
import structlog
from anyio.abc import TaskStatus

from partita.schemas import PayloadError, TaskDef, WorkflowDef
from partita.transport import DefinitionStore

log = structlog.get_logger(__name__)


@final
class DefinitionCache:
    """Definitions by name (and version). A miss falls through to the bucket, so a definition registered a
    moment before a start is found even if the watch has not delivered it yet."""

    def __init__(self, store: DefinitionStore) -> None:
        self._store = store
        self._tasks: dict[str, TaskDef | None] = {}
        self._registered: dict[str, TaskDef] = {}
        self._workflows: dict[tuple[str, int], WorkflowDef] = {}
        self._latest: dict[str, int] = {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch the bucket; ``started`` once every stored definition is loaded."""
        started = False
        async for definition in self._store.watch():
            if definition is None:
                if not started:
                    started = True
                    log.info("definitions_loaded", tasks=len(self._tasks), workflows=len(self._workflows))
                    task_status.started()
                continue
            self._remember(definition)
        if not started:  # the watch ended before catching up (connection closing)
            task_status.started()

    def _remember(self, definition: TaskDef | WorkflowDef) -> None:
        if isinstance(definition, WorkflowDef):
            self._workflows[(definition.name, definition.version)] = definition
            if definition.version >= self._latest.get(definition.name, 0):
                self._latest[definition.name] = definition.version
        else:
            self._tasks[definition.name] = definition
            self._registered[definition.name] = definition

    @property
    def registered_task_defs(self) -> Mapping[str, TaskDef]:
        """Every TaskDef the watch has delivered, by name (a live read-only view): what decisions look up for
        tasks named only at run time."""
        return MappingProxyType(self._registered)

    async def workflow_def(self, name: str, version: int | None) -> WorkflowDef | None:
        """None when not registered, and when what is stored under the name cannot be read."""
        if not name:
            return None  # no definition can have it (and an empty name has no key)
        wanted = version if version is not None else self._latest.get(name)
        if wanted is not None and (name, wanted) in self._workflows:
            return self._workflows[(name, wanted)]
        try:
            found = await self._store.workflow_def(name, version)
        except PayloadError as exc:  # written by something other than Partita: as good as absent, loudly
            log.error("definition_unreadable", workflow_name=name, version=version, error=str(exc))
            return None
        if found is not None:
            self._remember(found)
        return found

    async def task_def(self, name: str) -> TaskDef | None:
        if not name:
            return None
        if name in self._tasks:
            return self._tasks[name]
        try:
            found = await self._store.task_def(name)
        except PayloadError as exc:  # as above; not cached, so a fixed definition is read on the next miss
            log.error("definition_unreadable", task_name=name, error=str(exc))
            return None
        if found is not None:
            self._registered[name] = found
        self._tasks[name] = found  # None is cached too; a later registration arrives through the watch
        return found
