"""The demo behind ``make demo``: a real workflow on a real JetStream server with real workers.

It starts an embedded nats-server (JetStream, temporary store), a node and the order-fulfillment workers,
registers the definitions, starts one order, prints each task as it changes state, prints the final workflow,
and shuts everything down in order. Exit status 0 only if the workflow COMPLETED.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio
import msgspec

from partita.actors import Node, configure_logging, load_workers, run_workers
from partita.schemas import Workflow, WorkflowStatus
from partita.transport import Client, Connection, EmbeddedServer, connect
from partita.transport.codec import workflow_json

HERE = Path(__file__).parent
ORDER = {
    "orderId": "ord-1001",
    "customer": {"name": "Ada", "email": "ada@example.com"},
    "items": [{"sku": "keyboard", "qty": 1, "price": 49.5}, {"sku": "cable", "qty": 2, "price": 7.25}],
}


def say(text: str) -> None:
    print(text, flush=True)


async def main() -> int:
    configure_logging(json=False, level="WARNING")  # the demo narrates; logs only for trouble
    with tempfile.TemporaryDirectory(prefix="partita-demo-") as store:
        async with EmbeddedServer(store) as server:
            say(f"1. nats-server {server.url} (JetStream, pid {server.pid}, store {store})")
            conn = await connect(server.url, name="partita-demo")
            try:
                return await run_demo(conn, server.url)
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.aclose()


async def run_demo(conn: Connection, url: str) -> int:
    async with await Client.connect(url) as client:
        definitions = await client.register_json((HERE / "workflow.json").read_text(), source="workflow.json")
        say(f"2. registered {', '.join(d.name for d in definitions)}")
        node = Node(conn)
        stop_workers = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            specs = load_workers(["examples.order_fulfillment.workers"])
            workers = await tg.start(partial(run_workers, conn, specs, stop=stop_workers))
            say(f"3. node {node.name} and {len(workers)} workers running")
            started = time.perf_counter()
            workflow_id = await client.start("order_fulfillment", ORDER, correlation_id=ORDER["orderId"])
            say(f"4. started order_fulfillment {workflow_id}")
            seen: dict[str, str] = {}
            async for workflow in client.watch(workflow_id):
                for task in workflow.tasks:
                    if seen.get(task.task_id) != task.status:
                        seen[task.task_id] = task.status
                        note = f" ({task.reason_for_incompletion})" if task.status == "FAILED" else ""
                        say(f"   {task.reference_task_name:<10} attempt {task.retry_count + 1}: {task.status}{note}")
            final = await client.get(workflow_id)
            elapsed = time.perf_counter() - started
            say(f"5. workflow {final.status} in {elapsed:.2f} s; output:")
            say(workflow_json(final, indent=2).decode() if "--full" in sys.argv else _output(final))
            stop_workers.set()
            node.request_stop()
        say("6. workers and node stopped; nats-server stopping")
        return 0 if final.status is WorkflowStatus.COMPLETED else 1


def _output(workflow: Workflow) -> str:
    return msgspec.json.format(msgspec.json.encode(workflow.output), indent=2).decode()


if __name__ == "__main__":
    sys.exit(anyio.run(main))
