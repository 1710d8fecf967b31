"""Fuzzing every Partita subject while a workflow runs: the node stays up, the workflow completes, and every
poison event is dead-lettered once, with the reason the decoder gave.

Hypothesis draws the messages (subjects with odd tokens; bodies of random bytes, JSON of the wrong shape,
huge numbers, deep nesting, non-UTF-8, long strings, near-valid messages aimed at the running workflow); the
test publishes them all against a real server and checks the outcome of each. The verdict "poison or not"
for an event is the pure decoder's (``decode_event_data``, pinned case by case in
``tests/unit/test_decode_event.py``); what is checked here is that the running system acts on it.
"""

from __future__ import annotations

import base64
import collections
import time
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio
import msgspec
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from partita.actors import WorkerSpec
from partita.actors.events import check_provenance, decode_event_data
from partita.schemas import PayloadError, StartWorkflow, TaskStatus, Workflow, WorkflowStatus
from partita.transport import Client, Connection, DeadLetter, Layout, TransportError, read_dead_letters
from partita.transport.codec import MAX_NESTING_DEPTH, encode_json

from ..strategies import FIELDS, JSON
from .harness import eventually, running

T = TypeVar("T")
How = Literal["durable", "core", "scheduled"]


@dataclass(frozen=True)
class Garbage:
    subject: str
    data: bytes
    how: How = "durable"
    target: str = ""  # for "scheduled": the subject the server publishes it to when it is due


def drawn(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """``count`` examples of ``strategy`` from hypothesis's engine (generation only: nothing here fails, so
    there is nothing to shrink; no example database in the shared tree)."""
    examples: list[T] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(example: T) -> None:
        examples.append(example)

    draw()
    return examples


# --- bodies ---------------------------------------------------------------------------------------------

# Sent on every event subject of the running workflow's partition, besides being drawn at random.
EDGE_BODIES = [
    b"",
    b"null",
    b"{}",
    b"[]",
    b'"\xff\xfe"',
    b'{"workflowId": "\xc3\x28"}',
    b'{"workflowId": "\\ud800"}',
    b'{"workflowId": 18446744073709551616}',
    b'{"n": 1e400}',
    b'{"n": NaN}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"workflowId": "w", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
]
EDGES = st.sampled_from(EDGE_BODIES)
LONG = st.integers(min_value=1_000, max_value=300_000).map(lambda n: encode_json({"workflowId": "w" * n}))
BODIES = (
    st.binary(max_size=48)
    | JSON.map(encode_json)
    | st.dictionaries(FIELDS, JSON, max_size=6).map(encode_json)  # the right names, values of any type
    | EDGES
    | LONG
)


def near_valid(workflow_id: str, task_id: str) -> st.SearchStrategy[dict[str, object]]:
    """A report for the running task with one thing wrong that a node must refuse: acting on it would
    finish or fail the task the worker is still running."""
    base = {"workflowInstanceId": workflow_id, "taskId": task_id, "status": "COMPLETED", "pollCount": 0}
    changes: list[dict[str, object]] = [
        {"taskType": "other"},
        {"pollCount": -1},
        {"pollCount": 2**31},
        {"pollCount": "0"},
        {"status": "DONE"},
        {"status": None},
        {"taskId": 7},
        {"outputData": {"n": 2**64}},
        {"outputData": {"n": -(2**63) - 1}},
        {"outputData": []},
        {"outputData": {"deep": msgspec.Raw(b"[" * (MAX_NESTING_DEPTH + 1) + b"]" * (MAX_NESTING_DEPTH + 1))}},
        {"outputData": {"text": msgspec.Raw(b'"\xed\xa0\x80"')}},
        {"callbackAfterSeconds": 2**40},
        {"startTime": 2**62},
        {"kind": "TaskStarted"},
    ]
    return st.sampled_from(changes).map(lambda change: {**base, **change})


# --- subjects -------------------------------------------------------------------------------------------

# Subject tokens with the characters that matter to NATS ("." splits, "*" and ">" are wildcards when a whole
# token, whitespace is refused) and to Partita's escaping ("="), besides ordinary and control characters.
# Not DEL (0x7f): nats-server 2.15 stores a message whose subject holds it, but its subject index may never
# hand it to a filtered consumer (it sits in the work queue; Partita's escaping never produces one).
ODD = st.text(alphabet=st.sampled_from(list("aZ09-_=*>.$é\u2028\x00\x1b")), min_size=1, max_size=6) | st.sampled_from(
    [" ", "a b", "\t", "x\r\n", "*", ">", "=", "=ZZ", "=FF", "=2A"]
)


def subjects(layout: Layout, partition: int) -> dict[str, tuple[st.SearchStrategy[tuple[str, How]], int]]:
    """For every kind of subject: its strategy, and how many messages to draw (hypothesis explores rather
    than samples evenly, so each kind is drawn on its own)."""
    prefix = layout.prefix
    partitions = st.sampled_from([partition] * 6 + [0, 63, 64, "03", "-1", "*", ">"]).map(str)
    kind = st.sampled_from(["start", "cmd", "timer", "result.hold", "started.hold", "result.HTTP", "result"]) | ODD
    typed = st.tuples(st.sampled_from(["result", "started"]), ODD).map(".".join)
    return {
        "events": (st.tuples(partitions, kind | typed).map(lambda pk: (f"{prefix}.wf.{pk[0]}.{pk[1]}", "durable")), 90),
        "schedules": (ODD.map(lambda token: (f"{prefix}.timers.{token}", "durable")), 15),
        "tasks": (
            st.tuples(st.sampled_from(["hold", "HTTP", "nobody"]), ODD).map(
                lambda tt: (f"{prefix}.task.{tt[0]}._.{tt[1]}", "durable")
            ),
            25,
        ),
        "workers": (st.tuples(ODD, ODD).map(lambda td: (f"{prefix}.workers.{td[0]}.{td[1]}", "core")), 15),
        "done": (ODD.map(lambda token: (f"{prefix}.done.{token}", "core")), 15),
    }


IDS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=24)


def plausible(layout: Layout) -> st.SearchStrategy[Garbage]:
    """Well-addressed events for workflows nobody started: a start that cannot run (recorded FAILED, with the
    reason), commands and timers for no workflow (retried a few times in case their start is late, then
    dropped). Not poison; none may disturb the running workflow."""
    starts = st.builds(
        lambda workflow_id, name, extra: Garbage(
            layout.start_subject(workflow_id), encode_json({"workflowId": workflow_id, "name": name, **extra})
        ),
        IDS,
        st.text(max_size=12),
        st.sampled_from(
            [
                {},
                {"input": "x"},
                {"version": 2**40},
                {"priority": "high"},
                {"input": {"n": 2**70}},
                {"taskToDomain": {"hold": ""}},
                {"workflowDef": {"name": "x", "tasks": [{}]}},
            ]
        ),
    )
    others = st.builds(
        lambda workflow_id, make: make(workflow_id),
        IDS,
        st.sampled_from(
            [
                lambda w: Garbage(
                    layout.command_subject(w), encode_json({"kind": "TerminateWorkflow", "workflowId": w})
                ),
                lambda w: Garbage(layout.timer_subject(w), encode_json({"workflowId": w, "taskId": "t"})),
            ]
        ),
    )
    return st.one_of(starts, starts, starts, others)


def arrival(layout: Layout, garbage: Garbage) -> str:
    """The subject a node sees it on: a schedule's target (``<prefix>.fired.<p>``, in the timers stream) comes
    through the events stream's source as ``<prefix>.wf.<p>.timer``."""
    if garbage.how != "scheduled":
        return garbage.subject
    prefix, fired, partition = garbage.target.split(".")
    assert fired == "fired"
    return f"{prefix}.wf.{partition}.timer"


def delivered_to_a_node(layout: Layout, subject: str) -> bool:
    """Whether a stored event reaches a node: one consumer filters ``<prefix>.wf.<p>.>`` per partition."""
    tokens = subject.split(".")
    return (
        len(tokens) >= 4
        and tokens[:2] == [layout.prefix, "wf"]
        and tokens[2] in {str(p) for p in range(layout.partitions)}
    )


def consumed_by_a_worker(layout: Layout, subject: str) -> bool:
    """Task subjects of the (type, no domain) pairs someone consumes: our worker and the node's HTTP one."""
    tokens = subject.split(".")
    # The consumers filter "<prefix>.task.<type>._.*": a last token ">" is no single token, "*" is one.
    return len(tokens) == 5 and tokens[2:4] in (["hold", "_"], ["HTTP", "_"]) and tokens[4] != ">"


def refused_by_nats(garbage: Garbage, layout: Layout) -> bool:
    """The client refuses whitespace (it could inject protocol); a JetStream publish with an empty token
    matches no stream (a core one is taken, and matches no subscriber), nor does one on a partition outside the
    layout (the events stream names each partition)."""
    if any(c in garbage.subject for c in " \t\r\n"):
        return True
    tokens = garbage.subject.split(".")
    outside = tokens[:2] == [layout.prefix, "wf"] and not delivered_to_a_node(layout, garbage.subject)
    return garbage.how != "core" and ("" in tokens or outside)


def letter_data(letter: DeadLetter) -> bytes:
    return base64.b64decode(letter.data) if letter.data_encoding == "base64" else letter.data.encode()


# --- the workflow under attack ----------------------------------------------------------------------------


@dataclass
class Held:
    """A worker task that blocks until released, so the workflow is mid-run while the garbage arrives."""

    began: anyio.Event
    release: anyio.Event

    async def hold(self, n: int) -> dict[str, object]:
        self.began.set()
        await self.release.wait()
        return {"n": n + 1}


HELD_FLOW = b'{"name": "held", "tasks": [{"name": "hold", "taskReferenceName": "h", "inputParameters": {"n": 41}}]}'


async def start_held(client: Client, held: Held) -> tuple[str, str]:
    await client.register_json(HELD_FLOW)
    workflow_id = await client.start("held")
    with anyio.fail_after(20):
        await held.began.wait()
    task = (await client.get(workflow_id)).tasks[0]
    return workflow_id, task.task_id


async def publish(conn: Connection, garbage: Garbage) -> bool:
    """Publish; False when NATS refused it (the refusal itself must be a TransportError, nothing else)."""
    try:
        if garbage.how == "core":
            await conn.publish(garbage.subject, garbage.data)
        elif garbage.how == "scheduled":
            await conn.publish_at(garbage.subject, garbage.target, time.time_ns() // 1_000_000, garbage.data)
        else:
            await conn.publish_durable(garbage.subject, garbage.data)
    except TransportError:
        return False
    return True


async def test_garbage_on_every_subject_is_dead_lettered_while_a_workflow_runs_to_completion(
    conn: Connection, client: Client
) -> None:
    layout = client.layout
    held = Held(anyio.Event(), anyio.Event())
    async with running(conn, [WorkerSpec("hold", held.hold, concurrency=8)]) as env:
        assert env.node is not None
        workflow_id, task_id = await start_held(client, held)
        partition = layout.partition(workflow_id)
        aimed = [
            Garbage(layout.result_subject(workflow_id, "hold", None), encode_json(body))
            for body in drawn(near_valid(workflow_id, task_id), 30)
        ]
        aimed += [  # on another partition: a second node would act on the workflow
            Garbage(f"{layout.prefix}.wf.{(partition + 1) % 64}.result.hold", encode_json({**body, "pollCount": 0}))
            for body in drawn(near_valid(workflow_id, task_id), 3)
        ]
        report_of_another_type = {"workflowInstanceId": workflow_id, "taskId": task_id, "taskType": "HTTP"}
        aimed.append(Garbage(layout.started_subject(workflow_id, "hold", None), encode_json(report_of_another_type)))
        aimed += [
            Garbage(f"{layout.prefix}.wf.{partition}.{kind}", body)
            for kind in ("start", "result.hold", "started.hold", "cmd", "timer")
            for body in EDGE_BODIES
        ]
        # Garbage a schedule delivers later, as the server itself publishes timers.
        aimed += [
            Garbage(layout.timer_schedule_subject(f"fuzz-{i}"), data, "scheduled", layout.fired_subject(workflow_id))
            for i, data in enumerate([b"\x00\xff", encode_json({"workflowId": workflow_id, "generation": "x"})])
        ]
        # A poison event nearly as large as a message: its dead letter must be cut to fit.
        room = conn.payload_limit - 200
        aimed.append(Garbage(layout.command_subject(workflow_id), b"\x01" * room))
        aimed.append(Garbage(layout.result_subject(workflow_id, "hold", None), b"\xff" * room))
        random = [
            Garbage(subject, data, how)
            for strategy, count in subjects(layout, partition).values()
            for (subject, how), data in drawn(st.tuples(strategy, BODIES), count)
        ]
        random += drawn(plausible(layout), 20)
        # A client waiting for the workflow hears garbage on its done subject (and must not mind).
        done = layout.done_subject(workflow_id)
        random += [Garbage(done, data, "core") for data in drawn(BODIES, 10)]

        waited: list[Workflow] = []
        async with anyio.create_task_group() as tg:

            async def wait_for_it() -> None:
                waited.append(await client.wait(workflow_id, within=60))

            tg.start_soon(wait_for_it)
            await anyio.sleep(0.2)  # let the waiter subscribe (it re-reads the record anyway)

            stored: list[Garbage] = []
            for garbage in [*aimed, *random]:
                if await publish(conn, garbage):
                    assert not refused_by_nats(garbage, layout), f"NATS took {garbage.subject!r}"
                    stored.append(garbage)
                else:
                    assert refused_by_nats(garbage, layout), f"NATS refused {garbage.subject!r}"
            await conn.flush()

            poison: list[tuple[Garbage, str]] = []
            starts: list[str] = []  # workflows that garbage which is not poison must have created (FAILED)
            for garbage in stored:
                subject = arrival(layout, garbage)
                if not delivered_to_a_node(layout, subject):
                    continue
                try:
                    # What the server adds when a schedule fires: the schedule's subject, in Nats-Scheduler.
                    fired = {"Nats-Scheduler": garbage.subject} if garbage.how == "scheduled" else {}
                    check_provenance(layout, subject, fired)
                    decoded = decode_event_data(layout, subject, garbage.data)
                except PayloadError as exc:
                    poison.append((garbage, str(exc)))
                else:
                    if isinstance(decoded.event, StartWorkflow):
                        starts.append(decoded.workflow_id)
            let_through = [g for g in aimed if not any(g is p for p, _ in poison)]
            assert not let_through, f"garbage aimed at the workflow that is no poison: {let_through[:3]}"
            task_garbage = [g for g in stored if consumed_by_a_worker(layout, g.subject)]

            async def letters_arrived() -> bool:
                letters = await read_dead_letters(conn, layout, limit=10_000)
                return len(letters) >= len(poison) + len(task_garbage)

            await eventually(letters_arrived, within=30, what="a dead letter for every poison message")

            async def recorded_failed() -> bool:
                found = [await client.find(workflow_id) for workflow_id in starts]
                return all(w is not None and w.status is WorkflowStatus.FAILED for w in found)

            await eventually(recorded_failed, within=30, what="every start that cannot run recorded FAILED")
            assert not waited  # still running: nothing aimed at it got through
            stats = env.node.statistics()
            assert stats.events_rejected == len(poison)
            held.release.set()
            workflow = await client.wait(workflow_id, within=30)

        assert env.node.readiness()[0]
        assert env.node.statistics().events_rejected == len(poison)

    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"n": 42}
    assert [t.output_data for t in workflow.tasks] == [{"n": 42}]
    assert [w.status for w in waited] == [WorkflowStatus.COMPLETED]

    letters = await read_dead_letters(conn, layout, limit=10_000)
    events = [letter for letter in letters if letter.subject.startswith(f"{layout.prefix}.wf.")]
    tasks = [letter for letter in letters if letter.subject.startswith(f"{layout.prefix}.task.")]
    assert len(letters) == len(events) + len(tasks)

    expected = collections.Counter((arrival(layout, g), reason) for g, reason in poison)
    assert collections.Counter((letter.subject, letter.reason) for letter in events) == expected
    for letter in events:
        assert letter.reason
        kept = letter_data(letter)
        assert letter.truncated == (len(kept) < letter.size)
        assert any(
            arrival(layout, g) == letter.subject and g.data.startswith(kept) and len(g.data) == letter.size
            for g, _ in poison
        )
    assert sum(letter.truncated for letter in events) == 2  # the two near the size limit
    assert collections.Counter(x.subject for x in tasks) == collections.Counter(g.subject for g in task_garbage)
    assert all(letter.reason for letter in tasks)


async def test_a_forged_or_stale_report_is_rejected_and_counted_and_the_real_result_completes_the_task(
    conn: Connection, client: Client
) -> None:
    layout = client.layout
    held = Held(anyio.Event(), anyio.Event())
    await client.register_json(b'{"name": "other"}')
    async with running(conn, [WorkerSpec("hold", held.hold)]) as env:
        assert env.node is not None
        workflow_id, task_id = await start_held(client, held)

        def report(**fields: object) -> bytes:
            return encode_json({"workflowInstanceId": workflow_id, "taskId": task_id, **fields})

        forged = {"status": "COMPLETED", "outputData": {"forged": True}, "workerId": "mallory"}
        # Allowed subjects (a worker of "other" may publish results of its own type), wrong task.
        await conn.publish_durable(layout.result_subject(workflow_id, "other", None), report(**forged))
        await conn.publish_durable(layout.result_subject(workflow_id, "hold", None), report(**forged, pollCount=3))
        await conn.publish_durable(layout.started_subject(workflow_id, "other", None), report(workerId="mallory"))

        def rejected() -> bool:
            assert env.node is not None
            return env.node.statistics().results_rejected == 3

        await eventually(rejected, what="three rejected reports")
        assert (await client.get(workflow_id)).tasks[0].status is TaskStatus.SCHEDULED
        held.release.set()
        workflow = await client.wait(workflow_id, within=30)
        # A late duplicate of the real result is at-least-once noise: ignored, not counted.
        await conn.publish_durable(
            layout.result_subject(workflow_id, "hold", None),
            report(status="COMPLETED", outputData={"n": 1}, pollCount=0),
        )

        async def drained() -> bool:
            info = await conn.js.stream_info(layout.events_stream)
            return info.state.messages == 0

        await eventually(drained, what="the late duplicate processed")
        stats = env.node.statistics()
    assert stats.results_rejected == 3
    assert stats.events_rejected == 0
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.output == {"n": 42}
    (task,) = workflow.tasks
    assert task.output_data == {"n": 42}
    assert task.worker_id != "mallory"
