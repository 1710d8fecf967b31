"""Large payloads around the decider (Conductor's external payload storage, in the JetStream Object Store).

Before deciding, the actor loads every stored payload of its workflow and of the incoming event, so the pure
decider sees plain maps. After deciding, :class:`Offloader` stores each new or changed map that is over the
threshold and leaves its path in its place, in the workflow and in the effects (task messages, child starts,
child reports), so neither the record nor any message grows with the payloads. Objects are content-addressed:
storing one again (a redelivered event) writes the same object under the same path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from msgspec import structs

from partita.schemas import (
    ChildFinished,
    DispatchTask,
    Effect,
    PayloadError,
    SendCommand,
    StartChild,
    StartWorkflow,
    Task,
    TaskResult,
    TaskResultStatus,
    WireEvent,
    WorkflowStatus,
)
from partita.schemas import Workflow as WorkflowState
from partita.transport.payloads import PayloadStore, hydrate

Payload = dict[str, object]
# Store a map if it is large, under an owner workflow's id: its path, else None.
Store = Callable[[Payload, str, str], Awaitable[str | None]]


class Offloader:
    """One per actor: hydrates its workflow and events, and stores what a decision made large."""

    def __init__(self, store: PayloadStore, workflow_id: str) -> None:
        self._store = store
        self._workflow_id = workflow_id
        self._cache: dict[str, Payload] = {}  # path -> payload, for this workflow while its actor lives
        self._stored: dict[int, Task] = {}  # id(hydrated task) -> the stored original
        self._hydrated: WorkflowState | None = None

    async def hydrate(self, stored: WorkflowState | None) -> WorkflowState | None:
        """The workflow as the decider must see it: every payload in place."""
        self._stored.clear()
        self._hydrated = None
        if stored is None:
            return None
        hydrated = await hydrate(self._store, stored, self._cache)
        for before, after in zip(stored.tasks, hydrated.tasks, strict=True):
            if before is not after:
                self._stored[id(after)] = before
        self._hydrated = hydrated
        return hydrated

    async def hydrate_event(self, event: WireEvent) -> WireEvent:
        """An event with its stored payload loaded. A payload that cannot be read turns a result or a child
        report into a failure with the reason (retried per the TaskDef); a start raises :class:`PayloadError`,
        and the caller records the workflow FAILED with it."""
        match event:
            case StartWorkflow(external_input_payload_storage_path=str(path)) if not event.input:
                return structs.replace(event, input=await self._load(path))
            case TaskResult(external_output_payload_storage_path=str(path)) if not event.output_data:
                try:
                    if not path.startswith(f"{self._workflow_id}/"):  # a worker stores under the workflow's id
                        raise PayloadError(f"{path!r} is not a payload of this workflow")
                    output = await self._load(path)
                except PayloadError as exc:
                    reason = f"the task's output could not be read: {exc}"
                    return structs.replace(event, status=TaskResultStatus.FAILED, reason_for_incompletion=reason)
                return structs.replace(event, output_data=output)
            case ChildFinished(external_output_payload_storage_path=str(path)) if not event.output:
                try:
                    output = await self._load(path)
                except PayloadError as exc:
                    reason = f"the sub-workflow's output could not be read: {exc}"
                    return structs.replace(event, status=WorkflowStatus.FAILED, reason_for_incompletion=reason)
                return structs.replace(event, output=output)
            case _:
                return event

    async def _load(self, path: str) -> Payload:
        if path not in self._cache:
            self._cache[path] = await self._store.load(path)
        return self._cache[path]

    async def offload(
        self, workflow: WorkflowState, effects: tuple[Effect, ...]
    ) -> tuple[WorkflowState, tuple[Effect, ...]]:
        """Store the large maps of a decided workflow and its effects; raises :class:`PayloadError` when one is
        over the maximum size (the caller fails the workflow with that reason)."""
        # (id(map), owner) -> path: a map loaded from a path, or stored once in this decision, is not stored
        # again (the maps are never mutated, and the cache keeps them alive, so their ids are stable).
        paths: dict[tuple[int, str], str | None] = {
            (id(payload), path.rpartition("/")[0]): path for path, payload in self._cache.items()
        }
        mine = self._workflow_id

        async def store(payload: Payload, what: str, owner: str) -> str | None:
            key = (id(payload), owner)
            if key not in paths:
                path = await self._store.offload(owner, payload, what)
                if path is not None and owner == mine:
                    self._cache[path] = payload
                paths[key] = path
            return paths[key]

        before = self._hydrated
        kept = {id(task) for task in before.tasks} if before is not None else set()
        tasks = []
        for task in workflow.tasks:
            original = self._stored.get(id(task))
            if original is not None:
                tasks.append(original)  # unchanged since it was hydrated: keep its stored form
                continue
            if id(task) in kept:
                tasks.append(task)  # unchanged and inline
                continue
            name = task.reference_task_name
            input_path = await store(task.input_data, f"task {name} input", mine)
            output_path = await store(task.output_data, f"task {name} output", mine)
            tasks.append(
                structs.replace(
                    task,
                    input_data={} if input_path else task.input_data,
                    output_data={} if output_path else task.output_data,
                    external_input_payload_storage_path=input_path,
                    external_output_payload_storage_path=output_path,
                )
            )
        if before is not None and workflow.input is before.input:
            input_path = before.external_input_payload_storage_path  # as loaded: keep its stored form
        else:
            input_path = await store(workflow.input, "workflow input", mine)
        if before is not None and workflow.output is before.output:
            output_path = before.external_output_payload_storage_path
        else:
            output_path = await store(workflow.output, "workflow output", mine)
        changes: dict[str, object] = {
            "tasks": tuple(tasks),
            "external_input_payload_storage_path": input_path,
            "external_output_payload_storage_path": output_path,
        }
        if input_path:
            changes["input"] = {}
        if output_path:
            changes["output"] = {}
        offloaded = structs.replace(workflow, **changes)
        return offloaded, tuple([await self._effect(effect, store, mine) for effect in effects])

    @staticmethod
    async def _effect(effect: Effect, store: Store, mine: str) -> Effect:
        """Large maps in messages: a child's input is stored under the child's id (removed with it)."""
        match effect:
            case DispatchTask(task=message) if message.input_data:
                path = await store(message.input_data, f"task {message.reference_task_name} input", mine)
                if path:
                    message = structs.replace(message, input_data={}, external_input_payload_storage_path=path)
                    return structs.replace(effect, task=message)
            case StartChild(request=request) if request.input:
                what = f"input of the workflow {request.name} to start"
                path = await store(request.input, what, request.workflow_id)
                if path:
                    request = structs.replace(request, input={}, external_input_payload_storage_path=path)
                    return structs.replace(effect, request=request)
            case SendCommand(command=ChildFinished() as report) if report.output:
                path = await store(report.output, "sub-workflow output", mine)
                if path:
                    report = structs.replace(report, output={}, external_output_payload_storage_path=path)
                    return structs.replace(effect, command=report)
        return effect
