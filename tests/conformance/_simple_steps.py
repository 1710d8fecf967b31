"""Steps the SimpleWorkflowSpec family needs beyond the shared facade (``conductor.py``)."""

from __future__ import annotations

from typing import Any

import msgspec

from partita.transport import Client

from .conductor import JSON, Conductor


async def workflow_def(client: Client, name: str, version: int | None = None) -> JSON:
    """``metadataService.getWorkflowDef(name, version)`` as Conductor JSON (camelCase)."""
    found = await client.definitions.workflow_def(name, version)
    assert found is not None, f"no workflow definition {name!r} v{version}"
    builtins: JSON = msgspec.to_builtins(found)
    return builtins


async def task_def(client: Client, name: str) -> JSON:
    found = await client.definitions.task_def(name)
    assert found is not None, f"no task definition {name!r}"
    builtins: JSON = msgspec.to_builtins(found)
    return builtins


async def reset_callbacks(client: Client, workflow_id: str) -> None:
    """Conductor's ``workflowExecutor.resetCallbacksForWorkflow(id)`` (``POST /workflow/{id}/resetcallbacks``):
    every SCHEDULED SIMPLE task of the workflow with callbackAfterSeconds > 0 gets callbackAfterSeconds=0 and
    its queue message is made visible at once (WorkflowExecutorOps.resetCallbacksForWorkflow)."""
    reset: Any = getattr(client, "reset_callbacks", None)
    assert reset is not None, (
        "Partita's Client has no counterpart of Conductor's resetCallbacksForWorkflow "
        "(POST /workflow/{id}/resetcallbacks)"
    )
    await reset(workflow_id)


def trail(workflow: JSON) -> list[tuple[str, str]]:
    return [(t["taskType"], t["status"]) for t in workflow["tasks"]]


async def settle_status(conductor: Conductor, workflow_id: str, status: str, count: int | None = None) -> JSON:
    def ready(w: JSON) -> bool:
        return w["status"] == status and (count is None or len(w["tasks"]) == count)

    return await conductor.settle(workflow_id, ready, what=f"status {status}, {count} tasks")
