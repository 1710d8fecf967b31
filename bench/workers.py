"""The benchmark's worker, run in its own process as users run workers: ``partita worker bench.workers``."""

from __future__ import annotations

from partita.actors import worker_task

IN_FLIGHT_TASKS = 256  # per worker: never the bottleneck


@worker_task("bench_step", concurrency=IN_FLIGHT_TASKS)
async def step(n: int = 0) -> dict[str, object]:
    """The trivial task every workload runs: ``n`` in, ``n + 1`` out (as in every peer's workload)."""
    return {"n": n + 1}
