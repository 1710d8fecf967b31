"""Fault injection: a server, two nodes and two worker processes; a few hundred mixed workflows while nodes and
workers are killed with SIGKILL at random moments and the nats-server restarts once; then every workflow must
have ended exactly as it should.

    python -m tests.chaos.chaos [--workflows N] [--seed S] [--fault-every SECONDS]

Prints ``workflows=N faults=F lost=0 wrong=0 duplicate_completions=0 response_timeouts=T seed=S`` and exits 0 only
if lost, wrong and duplicate_completions are zero. Seeded randomness: the same seed replays the same fault schedule.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from partita.actors import configure_logging
from partita.schemas import TaskStatus, Workflow, WorkflowStatus
from partita.transport import Client, EmbeddedServer, Layout, TransportError, connect

from ..integration.harness import Process

STEP = {"name": "chaos_inc", "taskReferenceName": "{ref}", "inputParameters": {"n": "{n}"}}
DEFINITIONS: list[dict[str, object]] = [
    # A killed worker's task times out after 5 s and is retried (Conductor's responseTimeoutSeconds); with the
    # default of 3600 s a task held by a killed worker would wait an hour.
    {"name": "chaos_flaky", "retryCount": 2, "retryDelaySeconds": 1, "responseTimeoutSeconds": 5},
    {"name": "chaos_inc", "responseTimeoutSeconds": 5, "retryDelaySeconds": 1},
    {
        "name": "chaos_seq",
        "tasks": [
            {"name": "chaos_inc", "taskReferenceName": "s1", "inputParameters": {"n": "${workflow.input.n}"}},
            {"name": "chaos_inc", "taskReferenceName": "s2", "inputParameters": {"n": "${s1.output.n}"}},
            {"name": "chaos_inc", "taskReferenceName": "s3", "inputParameters": {"n": "${s2.output.n}"}},
        ],
        "outputParameters": {"n": "${s3.output.n}"},
    },
    {
        "name": "chaos_fork",
        "tasks": [
            {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN", "forkTasks": [
                [{"name": "chaos_inc", "taskReferenceName": "a", "inputParameters": {"n": "${workflow.input.n}"}}],
                [{"name": "chaos_inc", "taskReferenceName": "b", "inputParameters": {"n": 100}}],
            ]},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN", "joinOn": ["a", "b"]},
        ],
        "outputParameters": {"a": "${a.output.n}", "b": "${b.output.n}"},
    },
    {"name": "chaos_retry", "tasks": [{"name": "chaos_flaky", "taskReferenceName": "f"}],
     "outputParameters": {"recovered": "${f.output.recovered}"}},
    {
        "name": "chaos_wait",
        "tasks": [
            {"name": "nap", "taskReferenceName": "nap", "type": "WAIT", "inputParameters": {"duration": "2s"}},
            {"name": "chaos_inc", "taskReferenceName": "after", "inputParameters": {"n": "${workflow.input.n}"}},
        ],
        "outputParameters": {"n": "${after.output.n}"},
    },
    {"name": "chaos_sub", "tasks": [{"name": "chaos_seq", "taskReferenceName": "sub", "type": "SUB_WORKFLOW",
                                     "inputParameters": {"n": "${workflow.input.n}"},
                                     "subWorkflowParam": {"name": "chaos_seq"}}],
     "outputParameters": {"n": "${sub.output.n}"}},
]  # fmt: skip
KINDS = ["chaos_seq", "chaos_fork", "chaos_retry", "chaos_wait", "chaos_sub"]


def expected_output(kind: str, n: int) -> dict[str, object]:
    return {
        "chaos_seq": {"n": n + 3},
        "chaos_fork": {"a": n + 1, "b": 101},
        "chaos_retry": {"recovered": True},
        "chaos_wait": {"n": n + 1},
        "chaos_sub": {"n": n + 3},
    }[kind]


@dataclass
class Started:
    workflow_id: str
    kind: str
    n: int


async def _retrying(what: str, call: object) -> object:
    """Retry a client call across the server restart (the connection reconnects by itself)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await call()  # type: ignore[operator]
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.2)


@dataclass(frozen=True)
class Outcome:
    workflows: int
    faults: int
    lost: int
    wrong: int
    duplicate_completions: int

    @property
    def clean(self) -> bool:
        return self.lost == self.wrong == self.duplicate_completions == 0


async def run(workflows: int, seed: int, fault_every: float, duration: float, store: Path) -> Outcome:
    rng = random.Random(seed)
    server = EmbeddedServer(store / "nats")
    await server.start()
    url = server.url
    logs = store / "logs"
    logs.mkdir()
    processes: dict[str, Process] = {}
    counter = 0

    def spawn(role: str) -> None:
        nonlocal counter
        counter += 1
        args = ["node"] if role.startswith("node") else ["worker", "tests.chaos.workers"]
        processes[role] = Process("--nats", url, *args, log_path=logs / f"{role}-{counter}.log")

    for role in ("node-1", "node-2", "worker-1", "worker-2"):
        spawn(role)
    faults = 0
    started: list[Started] = []
    conn = await connect(url, name="chaos")
    try:
        client = await Client.over(conn, Layout())
        for definition in DEFINITIONS:
            await client.register_json(json.dumps(definition))
        restarted_server = False
        next_fault = time.monotonic() + fault_every
        for index in range(workflows):
            kind = KINDS[index % len(KINDS)]
            n = rng.randrange(1000)
            workflow_id = await _retrying("start", lambda kind=kind, n=n: client.start(kind, {"n": n}))
            started.append(Started(str(workflow_id), kind, n))
            await anyio.sleep(duration / workflows)  # spread the starts over the run, faults in between
            if time.monotonic() >= next_fault:
                next_fault = time.monotonic() + fault_every
                faults += 1
                if not restarted_server and index >= workflows // 2:
                    restarted_server = True
                    print(f"fault {faults}: nats-server restart", flush=True)
                    await server.stop()
                    server = EmbeddedServer(store / "nats", port=server.port)
                    await server.start()
                    continue
                victim = rng.choice(sorted(processes))
                print(f"fault {faults}: kill -9 {victim} (pid {processes[victim].pid})", flush=True)
                processes[victim].kill()
                spawn(victim)
        finals: list[Workflow | None] = []
        deadline = time.monotonic() + 180
        for item in started:
            remaining = max(1.0, deadline - time.monotonic())
            try:
                finals.append(await client.wait(item.workflow_id, within=remaining))
            except Exception:
                finals.append(await client.find(item.workflow_id))
        histories = {item.workflow_id: await client.history(item.workflow_id) for item in started}
        children: dict[str, list[Workflow]] = {}  # sub-workflows, to count their response timeouts too
        for item, final in zip(started, finals, strict=True):
            for child_id in {t.sub_workflow_id for t in final.tasks if t.sub_workflow_id} if final else ():
                child = await client.find(child_id)
                children.setdefault(item.workflow_id, []).extend([child] if child else [])
    finally:
        for process in processes.values():
            process.stop()
        await conn.aclose()
        await server.stop()
    lost = wrong = duplicates = timed_out = 0
    for item, workflow in zip(started, finals, strict=True):
        if workflow is None or not workflow.status.is_terminal:
            lost += 1
            print(f"lost: {item}", file=sys.stderr)
            continue
        if workflow.status is not WorkflowStatus.COMPLETED or workflow.output != expected_output(item.kind, item.n):
            wrong += 1
            print(
                f"wrong: {item} -> {workflow.status} {workflow.output} {workflow.reason_for_incompletion}",
                file=sys.stderr,
            )
        # The history survived the faults too: each event recorded once, ending where the workflow ended.
        history = histories[item.workflow_id]
        seqs = [entry.event_seq for entry in history]
        if not history or history[-1].status is not workflow.status or len(seqs) != len(set(seqs)):
            wrong += 1
            print(f"wrong history: {item} -> {[(e.cause, e.status) for e in history]}", file=sys.stderr)
        completed = [t.reference_task_name for t in workflow.tasks if t.status is TaskStatus.COMPLETED]
        duplicates += len(completed) - len(set(completed))
        timed_out += sum(t.status is TaskStatus.TIMED_OUT for t in workflow.tasks)
        for child in children.get(item.workflow_id, []):
            timed_out += sum(t.status is TaskStatus.TIMED_OUT for t in child.tasks)
    summary = f"workflows={len(started)} faults={faults} lost={lost} wrong={wrong} duplicate_completions={duplicates}"
    print(f"{summary} response_timeouts={timed_out} seed={seed}", flush=True)
    return Outcome(len(started), faults, lost, wrong, duplicates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--fault-every", type=float, default=1.5, help="seconds between faults")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds over which workflows start")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    configure_logging(json=True, level="ERROR")
    with tempfile.TemporaryDirectory(prefix="partita-chaos-") as store:
        outcome = anyio.run(run, options.workflows, seed, options.fault_every, options.duration, Path(store))
    return 0 if outcome.clean else 1


if __name__ == "__main__":
    sys.exit(main())
