"""Workers of the fault-injection suite, run as separate processes (``partita worker tests.chaos.workers``)."""

from __future__ import annotations

import time

from partita.actors import TaskMessage, worker_task


@worker_task("chaos_inc", concurrency=8)
def inc(n: int) -> dict[str, object]:
    time.sleep(0.1)  # long enough that a killed worker usually holds tasks, which then time out and are retried
    return {"n": n + 1}


@worker_task("chaos_flaky", concurrency=4)
def flaky(task: TaskMessage) -> dict[str, object]:
    """Fails every first attempt: the TaskDef's retry absorbs it (as it absorbs a response timeout)."""
    if task.retry_count == 0:
        raise RuntimeError("first attempt fails")
    return {"recovered": True}
