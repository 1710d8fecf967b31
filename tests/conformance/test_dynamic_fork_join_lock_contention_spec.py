"""DynamicForkJoinLockContentionSpec (conductor-oss/conductor test-harness/.../integration/
DynamicForkJoinLockContentionSpec.groovy), ported in part; the fixtures are the spec's, unchanged.

Not ported: "a JOIN completing under a contended workflow lock recovers within seconds instead of parking"
(l.74). It holds Conductor's ExecutionLockService workflow lock from another thread while the JOIN executes; a
Partita workflow has a single writer (its partition's actor) and no workflow lock anyone can hold, so the
contended state cannot be set up. Its control feature (l.142), that the JOIN completes and the next task is
scheduled in the same decision, is ported.
"""

from __future__ import annotations

from partita.transport import Client, Connection

from ._fork_steps import expect, task_by_ref
from .conductor import conductor_server

DYNAMIC_FORK_JOIN_WF = "DynamicFanInOutTest"


async def test_control_with_no_lock_contention_the_same_join_schedules_the_next_task_immediately(
    conn: Connection, client: Client
) -> None:
    # DynamicForkJoinLockContentionSpec.groovy:142
    # "control: with no lock contention the same JOIN schedules the next task immediately"
    async with conductor_server(conn, client) as conductor:
        # DynamicForkJoinLockContentionSpec.groovy:69 setup()
        await conductor.register_fixture("dynamic_fork_join_integration_test.json")
        await conductor.register_fixture("simple_workflow_3_integration_test.json")
        wid = await conductor.start(DYNAMIC_FORK_JOIN_WF, 1, "dynamic_fork_join_workflow", {})
        dynamic_tasks = [
            {"name": "integration_task_2", "taskReferenceName": "xdt1", "type": "SIMPLE"},
            {"name": "integration_task_3", "taskReferenceName": "xdt2", "type": "SIMPLE"},
        ]
        dynamic_input = {"xdt1": {"k1": "v1"}, "xdt2": {"k2": "v2"}}
        await conductor.complete(
            "integration_task_1", {"dynamicTasks": dynamic_tasks, "dynamicTasksInput": dynamic_input}
        )
        await conductor.complete("integration_task_2", {"ok1": "ov1"})
        await conductor.complete("integration_task_3", {"ok1": "ov1"})

        workflow = await expect(
            conductor, wid, "RUNNING", 6, {4: ("JOIN", "COMPLETED"), 5: ("integration_task_4", "SCHEDULED")}
        )
        assert task_by_ref(workflow, "dynamicfanouttask_join")["status"] == "COMPLETED"
        following = [t for t in workflow["tasks"] if t["taskType"] == "integration_task_4"]
        assert [t["status"] for t in following] == ["SCHEDULED"]
