"""Soak run: a 3-server JetStream cluster, three nodes and two workers under a continuous mixed load for many
minutes while seeded random faults hit every part of it; then every workflow must have ended exactly right.

    python -m tests.soak.soak [--minutes 20] [--seed S] [--in-flight 60] [--fault-every 12]

The load keeps ``--in-flight`` workflows running: chains of three tasks, FORK_JOIN, FORK_JOIN_DYNAMIC,
SUB_WORKFLOW, WAIT, a flaky task retried, a task that sometimes outlasts its response timeout. The faults, one at
a time: kill -9 of a node or a worker (restarted), kill -9 of one nats-server (restarted seconds later), SIGSTOP
of a node past its membership lease (then SIGCONT), a graceful restart of a server. At the end the load stops,
everything is healed, and each workflow is checked: ended, COMPLETED, the expected output, every task completed
once (sub-workflows' too), a history ending in the final status with no event recorded twice.

Prints one line on stdout, ``soak: workflows=N faults=F stranded=0 lost=0 wrong=0 duplicate_completions=0
repaired=R seed=S minutes=M`` (repaired: ``workflow_repaired`` events in the nodes' logs), and exits 0 only if
stranded, lost, wrong and duplicate_completions are all zero. Otherwise the first bad workflows go to stderr
and the run's directory (servers' stores and every process's log) is kept.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import anyio

from partita.actors import configure_logging
from partita.schemas import Workflow, WorkflowTimeout
from partita.transport import Client, Connection, Layout, TransportError, connect, ensure_layout

from ..integration.harness import retrying
from .checks import Started, check, count_repaired
from .definitions import TASK_DEFS, WORKFLOW_DEFS, next_workflow
from .fleet import NODES, WORKERS, Faults, open_fleet, say

IN_FLIGHT: Final = 60  # workflows running at any moment
FAULT_EVERY: Final = 12.0  # mean seconds between faults
PATIENCE: Final = 300.0  # after the load: how long every workflow gets to end
SHOWN: Final = 10  # bad workflows printed


@dataclass(frozen=True)
class Outcome:
    workflows: int
    faults: int
    stranded: int
    lost: int
    wrong: int
    duplicate_completions: int
    repaired: int
    seed: int
    minutes: float

    @property
    def clean(self) -> bool:
        return self.stranded == self.lost == self.wrong == self.duplicate_completions == 0

    @property
    def summary(self) -> str:
        return (
            f"soak: workflows={self.workflows} faults={self.faults} stranded={self.stranded} lost={self.lost} "
            f"wrong={self.wrong} duplicate_completions={self.duplicate_completions} repaired={self.repaired} "
            f"seed={self.seed} minutes={self.minutes:g}"
        )


async def _prepare(conn: Connection) -> Client:
    """R3 streams and buckets (as ``partita node --replicas 3`` makes them), then every definition."""
    await conn.wait_for_jetstream(within=60)
    await ensure_layout(conn, Layout(), replicas=3)
    client = await Client.over(conn, Layout())
    for definition in (*TASK_DEFS, *WORKFLOW_DEFS):
        await client.register_json(json.dumps(definition))
    return client


async def _load(client: Client, rng: random.Random, started: list[Started], in_flight: int) -> None:
    """Start workflows for ever (the caller cancels), ``in_flight`` at a time: a slot frees when one ends."""
    slots = anyio.Semaphore(in_flight)
    async with anyio.create_task_group() as tg:
        while True:
            await slots.acquire()
            kind, input = next_workflow(rng)
            with anyio.CancelScope(shield=True):  # a start once stored is recorded, even as the load stops
                workflow_id = await retrying(partial(client.start, kind, input))
                started.append(Started(workflow_id, kind, input))
            tg.start_soon(_release_when_ended, client, workflow_id, slots)


async def _release_when_ended(client: Client, workflow_id: str, slots: anyio.Semaphore) -> None:
    """Hold a slot until the workflow ends, or at most ``PATIENCE``: a stuck one must not stop the load (the
    final check finds it)."""
    deadline = time.monotonic() + PATIENCE
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                await client.wait(workflow_id, within=min(30.0, remaining))
                return
            except WorkflowTimeout:
                continue
            except TransportError:  # a server going away under the wait's subscription or read
                await anyio.sleep(0.5)
    finally:
        slots.release()


async def _wait_ended(client: Client, started: list[Started], within: float) -> dict[str, Workflow | None]:
    """Each workflow's last record, polled until every one has ended or ``within`` seconds have passed."""
    finals: dict[str, Workflow | None] = {}
    pending = [item.workflow_id for item in started]
    deadline = time.monotonic() + within
    while True:
        still = []
        for workflow_id in pending:
            workflow = await retrying(partial(client.find, workflow_id))
            finals[workflow_id] = workflow
            if workflow is None or not workflow.status.is_terminal:
                still.append(workflow_id)
        pending = still
        if not pending or time.monotonic() > deadline:
            return finals
        await anyio.sleep(1.0)  # polling, with the deadline above: records are not pushed to a bulk reader


async def run(
    minutes: float,
    seed: int,
    store: Path,
    *,
    in_flight: int = IN_FLIGHT,
    fault_every: float = FAULT_EVERY,
    patience: float = PATIENCE,
) -> Outcome:
    """One soak run with its servers' stores and logs under ``store``; prints the summary (and on stderr, what
    went wrong) and returns the outcome."""
    started: list[Started] = []
    async with open_fleet(store) as fleet:
        conn = await connect(fleet.urls, name="soak")
        try:
            client = await _prepare(conn)
            for role in (*NODES, *WORKERS):
                fleet.spawn(role)
            faults = Faults(fleet, random.Random(seed), fault_every)
            async with anyio.create_task_group() as tg:
                tg.start_soon(faults.run, time.monotonic() + minutes * 60)
                with anyio.move_on_after(minutes * 60):
                    await _load(client, random.Random(f"load-{seed}"), started, in_flight)
            await fleet.heal()
            say(f"soak: load stopped after {len(started)} workflows; waiting up to {patience:g} s for them to end")
            began = time.monotonic()
            finals = await _wait_ended(client, started, patience)
            ended = time.monotonic()
            verdict = await check(client, started, finals)
            say(f"soak: waited {ended - began:.0f} s for the workflows to end, checked them in "
                f"{time.monotonic() - ended:.0f} s")  # fmt: skip
        finally:
            await conn.aclose()
    outcome = Outcome(
        workflows=len(started), faults=faults.count, stranded=verdict.stranded, lost=verdict.lost,
        wrong=verdict.wrong, duplicate_completions=verdict.duplicate_completions,
        repaired=count_repaired(fleet.node_logs()), seed=seed, minutes=minutes,
    )  # fmt: skip
    print(outcome.summary, flush=True)
    if not outcome.clean or fleet.crashes:
        for line in [*verdict.bad[:SHOWN], *fleet.crashes]:
            print(f"soak: bad: {line}", file=sys.stderr)
        if verdict.causes:
            print(f"soak: problems by kind: {dict(verdict.causes)}", file=sys.stderr)
        print(f"soak: logs (nodes, workers: {fleet.logs}; servers: {store}/nats-*/)", file=sys.stderr)
    return outcome


async def soak(
    minutes: float, seed: int, *, in_flight: int = IN_FLIGHT, fault_every: float = FAULT_EVERY,
    patience: float = PATIENCE,
) -> Outcome | None:  # fmt: skip
    """:func:`run` in a directory of its own, removed after a clean run and kept (and named) otherwise; None if
    SIGINT or SIGTERM stopped it (everything it started stopped first)."""
    store = Path(tempfile.mkdtemp(prefix="partita-soak-"))
    outcome: Outcome | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_signal, tg.cancel_scope)
            outcome = await run(minutes, seed, store, in_flight=in_flight, fault_every=fault_every,
                                patience=patience)  # fmt: skip
            tg.cancel_scope.cancel()
        return outcome
    finally:
        if outcome is not None and outcome.clean:
            shutil.rmtree(store, ignore_errors=True)
        else:
            say(f"soak: the run's directory is kept: {store}")


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    """Ctrl-C or SIGTERM cancels the run through anyio, which delivers the cancellation until it lands: the
    asyncio default, one ``task.cancel()``, can be swallowed by nats-py (it turns some into its own errors)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            say(f"soak: {signal.Signals(signum).name}: stopping everything")
            scope.cancel()
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="how long the load and the faults last")
    parser.add_argument("--seed", type=int, default=None, help="replays the same fault schedule and load mix")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="workflows running at any moment")
    parser.add_argument("--fault-every", type=float, default=FAULT_EVERY, help="mean seconds between faults")
    parser.add_argument("--patience", type=float, default=PATIENCE, help="seconds for every workflow to end")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    configure_logging(json=True, level="ERROR")
    outcome = anyio.run(
        partial(soak, options.minutes, seed, in_flight=options.in_flight, fault_every=options.fault_every,
                patience=options.patience)
    )  # fmt: skip
    if outcome is None:
        return 130  # interrupted
    return 0 if outcome.clean else 1


if __name__ == "__main__":
    sys.exit(main())
