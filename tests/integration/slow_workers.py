"""Workers run as separate processes by the fault tests (``partita worker tests.integration.slow_workers``)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from partita.actors import worker_task


@worker_task("slow")
def slow(marker_dir: str) -> dict[str, object]:
    """Announce itself with a marker file, then take far longer than the task's response timeout."""
    Path(marker_dir, f"started-{os.getpid()}").touch()
    threading.Event().wait(120)  # "hangs" until the test kills this process
    return {"finished_by": os.getpid()}


@worker_task("step", concurrency=8)
def step(marker_dir: str, n: int) -> dict[str, object]:
    """A short step that leaves one marker per execution, so tests can count executions."""
    Path(marker_dir, f"step-{n}-{time.monotonic_ns()}").touch()
    time.sleep(0.02)
    return {"n": n + 1}
