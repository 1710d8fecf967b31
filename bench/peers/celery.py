"""Celery + Redis peer: a ``chain`` of ``steps`` trivial tasks (each returns its int + 1) on Celery with Redis as
broker and result backend.

What it measures: the client (this process) sends the chain's first message, the worker runs each step and sends
the next, storing every step's result in Redis; the client waits for the last result through the Redis backend's
pub/sub (no polling) and checks it. CPU time counted: this process, redis-server and the worker with its pool.

Durability: Redis runs with its default persistence, RDB snapshots (``save 3600 1 300 100 60 10000``) and no AOF,
so nothing is fsynced per write: a Redis crash loses the queued steps and results since the last snapshot. Late
acks (``task_acks_late``) only cover a worker crash: its unacknowledged tasks are redelivered.

The worker is ``celery -A bench.peers.celery:app worker`` in its own process; this module's name does not shadow
the library, since imports are absolute and ``python -m celery`` puts the project root, not this directory, on
``sys.path``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import celery
from celery import Celery, chain

from .common import HOST, PeerSystem, free_port, spawned

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = "/usr/bin/redis-server"
URL_ENV = "PARTITA_BENCH_CELERY_REDIS"  # the worker's broker and backend, set by peer()
TASK = "partita_bench.increment"
POOL = ["--pool", "solo"]  # tasks run in the consumer process: fastest here (prefork -c 2, threads -c 4 tried)
THREADS = 64  # client threads blocked in AsyncResult.get, so 50 workflows can be in flight
RESULT_SECONDS = 120.0


def increment(n: int) -> int:
    return n + 1


def make_app(url: str) -> Celery:
    """A Celery app on Redis ``url`` (broker and result backend) with the benchmark's one task."""
    app = Celery("partita_bench", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acknowledged after the step ran: redelivered if the worker dies mid-step
        broker_pool_limit=THREADS,  # the client's producer connections, one per sending thread
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK, shared=False)(increment)
    return app


# The worker's app (``celery -A bench.peers.celery:app``); the client makes its own for each run's port.
app = make_app(os.environ.get(URL_ENV, f"redis://{HOST}:6379/0"))


async def redis_ready(port: int) -> bool:
    try:
        stream = await anyio.connect_tcp(HOST, port)
    except OSError:
        return False
    async with stream:
        await stream.send(b"PING\r\n")
        with anyio.move_on_after(1.0):
            return (await stream.receive()).startswith(b"+PONG")
    return False


async def worker_ready(client: Celery) -> bool:
    replies = await anyio.to_thread.run_sync(partial(client.control.ping, timeout=0.5))
    return bool(replies)


@asynccontextmanager
async def peer(scratch: Path, steps: int) -> AsyncIterator[PeerSystem]:
    port = free_port()
    url = f"redis://{HOST}:{port}/0"
    redis_argv = [REDIS_SERVER, "--bind", HOST, "--port", str(port), "--protected-mode", "no"]
    redis_argv += ["--dir", str(scratch), "--appendonly", "no", "--daemonize", "no"]  # default RDB save rules
    worker_argv = [sys.executable, "-m", "celery", "-A", f"{__name__}:app", "worker", *POOL, "--loglevel", "WARNING"]
    worker_argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", f"bench-{port}@%h"]
    client = make_app(url)
    limiter = anyio.CapacityLimiter(THREADS)

    def run_chain(i: int) -> None:
        workflow = chain(client.signature(TASK, args=(i,)), *(client.signature(TASK) for _ in range(steps - 1)))
        # Subscribe to the last step's result before sending: Celery subscribes only to the first step's at send,
        # and get() subscribing after the send can miss a fast chain's result (about 1 in 1000 here, then it hangs).
        last = workflow.freeze()
        client.backend.add_pending_result(last)
        workflow.apply_async()
        result = last.get(timeout=RESULT_SECONDS)
        if result != i + steps:
            raise RuntimeError(f"workflow {i}: got {result!r}, expected {i + steps}")

    async def run_one(i: int) -> None:
        await anyio.to_thread.run_sync(run_chain, i, limiter=limiter)

    version = (await anyio.run_process([REDIS_SERVER, "--version"])).stdout.decode().split("v=")[1].split()[0]
    redis_ready_now = partial(redis_ready, port)
    worker_ready_now = partial(worker_ready, client)
    async with (
        spawned(redis_argv, scratch / "redis.log", redis_ready_now) as redis,
        spawned(worker_argv, scratch / "celery.log", worker_ready_now, env={URL_ENV: url}, cwd=ROOT) as worker,
    ):
        try:
            yield PeerSystem(
                run_one=run_one,
                pids=[redis.pid, worker.pid],
                durability="not durable per write: Redis default persistence, RDB snapshots (save 3600 1 300 100"
                " 60 10000) and no AOF, nothing fsynced per write; late acks redeliver only a dead worker's tasks",
                versions={"celery": celery.__version__, "redis": version},
                notes=f"worker: {' '.join(POOL)} (fastest of solo, prefork -c 2, threads -c 4 on 2 cores),"
                " task_acks_late, prefetch multiplier 4 (default), without gossip/mingle/heartbeat; every step's"
                f" result stored in Redis (default); client: up to {THREADS} threads blocked in AsyncResult.get"
                " (Redis pub/sub), subscribed to the last step before the chain is sent",
            )
        finally:
            client.close()
