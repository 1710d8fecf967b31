"""Workers of the soak run beyond the chaos suite's (``partita worker tests.chaos.workers tests.soak.workers``)."""

from __future__ import annotations

import threading

from partita.actors import TaskMessage, worker_task

# Well past the TaskDef's responseTimeoutSeconds (3 s), so the attempt is TIMED_OUT and retried even when the
# timer fires late on a loaded machine; its result, when it finally comes, answers an attempt that is over.
SLOW_SECONDS = 10.0


@worker_task("soak_slow", concurrency=8)
def sometimes_slow(task: TaskMessage, n: int, slow: bool) -> dict[str, object]:
    """With ``slow``, the first attempt outlasts its response timeout; every other attempt answers at once."""
    if slow and task.retry_count == 0:
        threading.Event().wait(SLOW_SECONDS)
    return {"n": n + 1}
