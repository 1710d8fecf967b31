"""The soak run's verdict: every workflow it started, read back once the load has stopped and the faults healed.

A workflow is *lost* if its start was stored but it has no record, *stranded* if it has not ended by the
deadline, *wrong* if it ended otherwise than COMPLETED with its expected output, with a sub-workflow that did not
complete, or with a history that does not end in its final status or records an event twice. A task reference
completed more than once in one workflow (or its sub-workflow) is a *duplicate completion*.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import anyio
import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from partita.schemas import HistoryEntry, TaskStatus, Workflow, WorkflowStatus
from partita.transport import Client

from ..integration.harness import retrying
from .definitions import expected_output

CHECKS_AT_ONCE: Final = 8
HISTORY_BATCH: Final = 1024
T = TypeVar("T")
_history_decoder = msgspec.json.Decoder(HistoryEntry)


@dataclass
class Started:
    workflow_id: str
    kind: str
    input: dict[str, object]


@dataclass(frozen=True)
class Step:
    """What the soak needs of one history entry."""

    event_seq: int
    status: WorkflowStatus
    cause: str


@dataclass
class Verdict:
    stranded: int = 0
    lost: int = 0
    wrong: int = 0
    duplicate_completions: int = 0
    causes: Counter[str] = field(default_factory=Counter)  # what made workflows bad, by kind of problem
    bad: list[str] = field(default_factory=list)

    def note(self, item: Started, problems: dict[str, str], workflow: Workflow | None = None) -> None:
        self.causes.update(problems.keys())
        details = "; ".join(f"{cause}: {detail}" for cause, detail in problems.items())
        tasks = f"; tasks: {_trail(workflow)}" if workflow is not None else ""
        self.bad.append(f"{item.workflow_id} {item.kind} {json.dumps(item.input)}: {details}{tasks}")


async def read_histories(client: Client) -> dict[str, list[Step]]:
    """Every workflow's history, in one pass over the history stream (one ephemeral consumer, not one per
    workflow as ``Client.history``: tens of thousands of those take longer than the run)."""
    layout = client.layout
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60.0, mem_storage=True
    )
    histories: dict[str, list[Step]] = {}
    sub = await client.conn.js.pull_subscribe(f"{layout.prefix}.history.*", stream=layout.history_stream,
                                              config=config)  # fmt: skip
    pending: int | None = None  # messages left after the last batch (None: none read yet)
    try:
        with anyio.fail_after(600):  # a stream of a few hundred thousand entries takes seconds
            while pending != 0:
                try:
                    batch = await sub.fetch(HISTORY_BATCH, timeout=5.0)
                except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises its own subclass or asyncio's
                    if pending is None:
                        break  # an empty stream
                    continue  # a slow server: more is pending
                for msg in batch:
                    entry = _history_decoder.decode(msg.data)
                    step = Step(entry.event_seq, entry.status, entry.cause)
                    histories.setdefault(entry.workflow_id, []).append(step)
                pending = batch[-1].metadata.num_pending
    finally:
        await sub.unsubscribe()
    return histories


def _duplicates(workflow: Workflow) -> int:
    completed = Counter(t.reference_task_name for t in workflow.tasks if t.status is TaskStatus.COMPLETED)
    return sum(count - 1 for count in completed.values())


def _trail(workflow: Workflow) -> str:
    return " ".join(f"{t.reference_task_name}:{t.status}" for t in workflow.tasks)


async def _judge(
    client: Client, item: Started, workflow: Workflow | None, history: list[Step], verdict: Verdict
) -> None:
    """One workflow's part of the verdict."""
    if workflow is None:
        verdict.lost += 1
        verdict.note(item, {"lost": "no record"})
        return
    if not workflow.status.is_terminal:
        verdict.stranded += 1
        verdict.note(item, {"stranded": f"{workflow.status}, last updated at {workflow.update_time}"}, workflow)
        return
    duplicates = _duplicates(workflow)
    problems: dict[str, str] = {}
    if workflow.status is not WorkflowStatus.COMPLETED or workflow.output != expected_output(item.kind, item.input):
        problems["outcome"] = f"{workflow.status} {workflow.output} {workflow.reason_for_incompletion}"
    for child_id in {t.sub_workflow_id for t in workflow.tasks if t.sub_workflow_id}:
        child = await retrying(partial(client.find, child_id))
        if child is None or child.status is not WorkflowStatus.COMPLETED:
            problems["sub-workflow"] = f"{child_id} {child.status if child else 'has no record'}"
        duplicates += _duplicates(child) if child else 0
    # The history survived the faults too: each event recorded once, ending where the workflow ended.
    seqs = [step.event_seq for step in history]
    if not history or history[-1].status is not workflow.status or len(seqs) != len(set(seqs)):
        problems["history"] = str([(step.cause, str(step.status), step.event_seq) for step in history])
    verdict.wrong += bool(problems)
    verdict.duplicate_completions += duplicates
    if duplicates:
        problems["duplicate completions"] = str(duplicates)
    if problems:
        verdict.note(item, problems, workflow)


async def check(client: Client, started: list[Started], finals: dict[str, Workflow | None]) -> Verdict:
    """Judge every started workflow by its final record (``finals``), its sub-workflows and its history."""
    verdict = Verdict()
    histories = await read_histories(client)
    limiter = anyio.CapacityLimiter(CHECKS_AT_ONCE)

    async def judge(item: Started) -> None:
        async with limiter:
            history = histories.get(item.workflow_id, [])
            await _judge(client, item, finals.get(item.workflow_id), history, verdict)

    async with anyio.create_task_group() as tg:
        for item in started:
            tg.start_soon(judge, item)
    return verdict


def count_repaired(logs: Iterable[Path]) -> int:
    """Lines of the JSON logs whose event is ``workflow_repaired`` (the reconciler re-drove a workflow)."""
    repaired = 0
    for path in logs:
        with path.open("rb") as lines:
            for line in lines:
                if b"workflow_repaired" not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:  # a line that is not JSON (a traceback): not a structured event
                    continue
                repaired += isinstance(entry, dict) and entry.get("event") == "workflow_repaired"
    return repaired
