"""Scaling: chain-3 throughput with 1, 2 and 3 Partita nodes on a 3-server JetStream cluster (R3).

    python -m bench.scale [--quick] [--nodes 1,2,3] [--update-docs]

The cluster is the shipped ``deploy/nats/cluster-*.conf`` on loopback ports (``ClusterMember``), fresh for every
node count; nodes and the worker are ``partita`` processes, the client is this process. Before measuring, the
nodes must share the partitions (``read_cluster``). CPU-ms per workflow counts every process: the three servers,
the nodes, the worker and this one. On a 2-core machine the curve flattens (every process competes for the same
two cores); the point is that it must not collapse, and the report says where the CPU goes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from partita.actors import configure_logging
from partita.actors.membership import read_cluster
from partita.transport import Client, Connection, Layout, connect, ensure_layout
from partita.transport.server import ClusterMember, local_cluster

from .engine import ROOT, chain_definition
from .measure import Completions, measure, tree_cpu_seconds
from .peers.common import spawned

DOCS = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
IN_FLIGHT = 50
CLUSTER_FILES = sorted((ROOT / "deploy" / "nats").glob("cluster-*.conf"))


async def run(nodes: int, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="partita-scale-") as scratch_dir:
        scratch = Path(scratch_dir)
        async with local_cluster(CLUSTER_FILES, scratch) as members:
            urls = ",".join(m.url for m in members)
            conn = await connect(urls, name="bench-scale")
            try:
                await conn.wait_for_jetstream()
                await ensure_layout(conn, Layout(), replicas=3, patience=60)
                return await _measure(conn, urls, scratch, members, nodes, count)
            finally:
                await conn.aclose()


async def _measure(
    conn: Connection, urls: str, scratch: Path, members: list[ClusterMember], nodes: int, count: int
) -> dict[str, Any]:
    client = await Client.over(conn, Layout())
    definition = chain_definition(3)
    await client.register_json(json.dumps(definition))
    completions = Completions()
    sub = await conn.js._nc.subscribe(f"{client.layout.prefix}.done.*", cb=completions.on_message)
    env = {"PARTITA_LOG_FORMAT": "json", "PARTITA_LOG_LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "partita.actors.cli", "--nats", urls]

    async def ready_nodes() -> bool:
        status = await read_cluster(conn, client.layout)
        shares = [len(m.partitions) for m in status.members if m.live]
        return len(shares) == nodes and sum(shares) == client.layout.partitions

    async def worker_waiting() -> bool:
        try:
            info = await conn.js.consumer_info(
                client.layout.tasks_stream, client.layout.task_consumer("bench_step", None)
            )
        except Exception:
            return False
        return bool(info.num_waiting)

    async def run_one(i: int) -> None:
        workflow_id = f"00000000-0000-4000-9000-{i:012d}"
        finished = completions.expect(workflow_id)
        message = {"kind": "StartWorkflow", "workflowId": workflow_id, "name": definition["name"], "input": {"n": i}}
        await conn.publish_durable(client.layout.start_subject(workflow_id), json.dumps(message).encode())
        await finished.wait()

    try:
        async with _processes(cli, scratch, nodes, env, ready_nodes, worker_waiting) as pids:
            server_pids = [m.pid for m in members if m.pid is not None]

            def cpu() -> float:
                return time.process_time() + tree_cpu_seconds([*server_pids, *pids])

            await measure(run_one, 20, IN_FLIGHT, 10**6, 3, cpu)
            result = await measure(run_one, count, IN_FLIGHT, 0, 3, cpu)
            for i in range(count):
                workflow = await client.get(f"00000000-0000-4000-9000-{i:012d}")
                if workflow.output != {"n": i + 3}:
                    raise AssertionError(f"workflow {i}: {workflow.status} {workflow.output}")
    finally:
        await sub.unsubscribe()
    return {"nodes": nodes, "workflows": count, **result.figures()}


@asynccontextmanager
async def _processes(
    cli: list[str], scratch: Path, nodes: int, env: dict[str, str], ready_nodes: Any, worker_waiting: Any
) -> AsyncIterator[list[int]]:
    async with contextlib.AsyncExitStack() as stack:
        pids = []
        for i in range(nodes):
            argv = [*cli, "node", "--name", f"n{i + 1}", "--replicas", "3"]
            last = i == nodes - 1

            async def ready(last: bool = last) -> bool:
                return await ready_nodes() if last else True

            process = await stack.enter_async_context(
                spawned(argv, scratch / f"n{i + 1}.log", ready, env=env, cwd=ROOT)
            )
            pids.append(process.pid)
        argv = [*cli, "worker", "bench.workers"]
        worker = await stack.enter_async_context(
            spawned(argv, scratch / "worker.log", worker_waiting, env=env, cwd=ROOT)
        )
        pids.append(worker.pid)
        yield pids


def markdown(rows: list[dict[str, Any]], quick: bool) -> str:
    base = rows[0]
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC "
        f"(`python -m bench.scale{' --quick' if quick else ''}`): chain-3, 50 in flight, a 3-server cluster with R3 "
        "streams, sync default, one worker process.",
        "",
        "| nodes | workflows | wf/s | ÷ 1 node | CPU-ms/wf (all processes) | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['nodes']} | {row['workflows']} | {row['wf_per_s']:.1f} | "
            f"{row['wf_per_s'] / base['wf_per_s']:.2f} | {row['cpu_ms_per_wf']:.2f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} |"
        )
    return "\n".join(lines)


async def main(options: argparse.Namespace) -> list[dict[str, Any]]:
    configure_logging(json=True, level="WARNING")
    counts = [int(n) for n in options.nodes.split(",")]
    rows = []
    for nodes in counts:
        rows.append(await run(nodes, 40 if options.quick else options.workflows))
        print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows, options.quick)
    print(table)
    if options.update_docs:
        text = DOCS.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOCS.write_text(text[:start] + "\n" + table + "\n" + text[end:])
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 workflows per node count: a smoke run")
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure")
    parser.add_argument("--workflows", type=int, default=1500)
    parser.add_argument("--update-docs", action="store_true", help="rewrite the scaling table in docs/performance.md")
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, parse())
