"""Restate peer: a single-node ``restate-server`` and a Python service deployment (the SDK's ASGI app under
hypercorn, HTTP/2 cleartext), both on 127.0.0.1, state in the scratch directory.

Workflow ``i`` is an invocation of the ``BenchChain`` workflow keyed ``bench-{i}``, made through the HTTP ingress
as a request/response call (the response is the result, nothing is polled). It runs ``steps`` durable steps in
sequence, each taking an int and returning it + 1. A step is, by default, a call to the ``BenchStep`` service
handler: a separate invocation that restate-server schedules and pushes to the deployment, as a task queue hands a
task to a worker, and whose result is journaled in the workflow. ``PARTITA_RESTATE_STEP=run`` makes each step a
``ctx.run`` block instead: executed inline in the workflow's handler, its result journaled before the next step.

Durability (restate-server 1.7 defaults, unchanged): every journal entry is an append to Bifrost, the replicated
loglet with replication 1 served by the node's own log-server, whose RocksDB WAL is fsynced on every write batch
(group commit; ``log-server.rocksdb-disable-wal-fsync = false``) before the append is acknowledged. The partition
store, rebuilt from that log, is not fsynced per write: under strace the only files fdatasynced while workflows run
are the log-store WAL's (one at a time, a 3-step workflow costs about 24 fdatasyncs with calls, 8 with ctx.run).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import restate

from .common import HOST, READY_SECONDS, PeerSystem, free_port, port_open, spawned

ROOT = Path(__file__).resolve().parents[2]
SERVER_GLOB = "bench/peers/node/node_modules/@restatedev/restate-server-*/bin/restate-server"
CLIENTS = 10  # HTTP clients to the ingress, shared by all calls (see run_one)
STEP: Literal["call", "run"] = "run" if os.environ.get("PARTITA_RESTATE_STEP") == "run" else "call"

# The service deployment, run in its own process by ``python -m bench.peers.restate --serve PORT``.
step_service = restate.Service("BenchStep")
chain = restate.Workflow("BenchChain")


def add_one(value: int) -> int:
    return value + 1


@step_service.handler()
async def step(ctx: restate.Context, value: int) -> int:
    return add_one(value)


@chain.main()
async def run(ctx: restate.WorkflowContext, request: dict[str, Any]) -> int:
    value: int = request["value"]
    for n in range(request["steps"]):
        if request["via"] == "run":
            value = await ctx.run_typed(f"step-{n}", add_one, restate.RunOptions(), value)
        else:
            value = await ctx.service_call(step, value)
    return value


def serve(port: int) -> None:
    import asyncio

    import hypercorn.asyncio
    import hypercorn.config
    from restate.server import install_shutdown_hook

    async def run_server() -> None:
        # The SDK's app takes over SIGTERM from hypercorn on its first request (asyncio keeps one handler per
        # signal), so hypercorn is told to stop through the SDK's own SIGTERM dispatcher.
        stop = asyncio.Event()
        install_shutdown_hook(asyncio.get_running_loop(), stop.set)
        config = hypercorn.config.Config()
        config.bind = [f"{HOST}:{port}"]
        config.graceful_timeout = 1.0
        await hypercorn.asyncio.serve(restate.app([step_service, chain]), config, shutdown_trigger=stop.wait)

    asyncio.run(run_server())


def server_binary() -> str:
    found = sorted(glob.glob(str(ROOT / SERVER_GLOB)))
    if not found:
        raise FileNotFoundError(f"no restate-server under {ROOT / SERVER_GLOB}; run bench/peers/setup")
    return found[0]


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def register(admin: str, ingress: httpx.AsyncClient, service_port: int) -> None:
    """Register the deployment, then wait until the ingress routes a call to it end to end."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.post(f"{admin}/deployments", json={"uri": f"http://{HOST}:{service_port}"})
        response.raise_for_status()
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            response = await ingress.post("/BenchStep/step", json=0)
            if response.status_code == 200 and response.json() == 1:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"restate ingress not routing to the deployment after {READY_SECONDS:.0f} s")
        await anyio.sleep(0.1)


@asynccontextmanager
async def peer(scratch: Path, steps: int) -> AsyncIterator[PeerSystem]:
    binary = server_binary()
    ingress_port, admin_port, fabric_port, service_port = (free_port() for _ in range(4))
    admin = f"http://{HOST}:{admin_port}"
    env = {
        "RESTATE_BIND_IP": HOST,  # cascades to ingress, admin and fabric (which also serves the metadata store)
        "RESTATE_LISTEN_MODE": "tcp",  # no unix sockets beside the TCP listeners
        "RESTATE_BIND_PORT": str(fabric_port),
        "RESTATE_INGRESS__BIND_PORT": str(ingress_port),
        "RESTATE_ADMIN__BIND_PORT": str(admin_port),
        "RESTATE_NODE_NAME": "bench",
        "RESTATE_DISABLE_TELEMETRY": "true",
        "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
    }
    server_argv = [binary, "--base-dir", str(scratch / "restate-data"), "--no-logo"]
    service_argv = [sys.executable, "-m", "bench.peers.restate", "--serve", str(service_port)]
    async with (
        spawned(service_argv, scratch / "restate-service.log", lambda: port_open(service_port), cwd=ROOT) as service,
        spawned(server_argv, scratch / "restate-server.log", lambda: answers(f"{admin}/health"), env=env) as server,
        AsyncExitStack() as stack,
    ):
        # httpcore's pool costs O(requests x connections) CPU per event: ~7 ms a call at 50 in flight on one
        # client, under 2 ms on ten (against a trivial server); so calls share a few pooled clients, each able
        # to take all 50.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        base_url = f"http://{HOST}:{ingress_port}"
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120.0))
            for _ in range(CLIENTS)
        ]
        await register(admin, clients[0], service_port)

        async def run_one(i: int) -> None:
            body = {"value": i, "steps": steps, "via": STEP}
            response = await clients[i % CLIENTS].post(f"/BenchChain/bench-{i}/run", json=body)
            response.raise_for_status()
            if (result := response.json()) != i + steps:
                raise RuntimeError(f"workflow bench-{i} returned {result!r}, expected {i + steps}")

        server_version = (await anyio.run_process([binary, "--version"])).stdout.decode().split()[-1]
        yield PeerSystem(
            run_one=run_one,
            pids=[server.pid, service.pid],
            durability=(
                "every journal entry is appended to the single-node replicated loglet, whose log-server RocksDB WAL "
                "is fsynced per write batch (group commit) before the append is acknowledged (1.7 defaults)"
            ),
            versions={
                "restate-server": server_version,
                "restate-sdk": version("restate-sdk"),
            },
            notes=(
                "workflow: ingress request/response call to a Restate workflow keyed bench-{i}; "
                + (
                    "each step is a call to a separate service handler (an invocation pushed to the deployment)"
                    if STEP == "call"
                    else "each step is a ctx.run block journaled inline in the workflow handler"
                )
                + "; one hypercorn process serves the Python SDK deployment (h2c)"
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Restate benchmark deployment.")
    parser.add_argument("--serve", type=int, required=True, metavar="PORT")
    serve(parser.parse_args().serve)


if __name__ == "__main__":
    main()
