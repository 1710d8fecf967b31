"""Decoding events at the edge: whatever bytes arrive on whatever subject, the decoder either returns an event
or raises PayloadError (the node dead-letters it); nothing else may escape, and nothing it lets through may
later break the node (integers MessagePack cannot hold, nesting deeper than the stack allows)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partita.actors import events
from partita.actors.decider import decide
from partita.actors.events import (
    MAX_EPOCH_MILLIS,
    MAX_NAME_LENGTH,
    DecodedEvent,
    decode_event,
    decode_event_data,
)
from partita.schemas import (
    PayloadError,
    StartWorkflow,
    TaskResult,
    TaskResultReceived,
    TaskResultStatus,
    TaskStarted,
    TaskStartedReceived,
    Workflow,
    WorkflowDef,
    WorkflowStartRequested,
)
from partita.transport import Delivery, Layout
from partita.transport.codec import MAX_NESTING_DEPTH, encode_json

from ..strategies import FIELDS, JSON

LAYOUT = Layout()
WID = "wf-1"
P = LAYOUT.partition(WID)
OTHER = (P + 1) % LAYOUT.partitions
KINDS = ("start", "result.work", "started.work", "cmd", "timer")


def subject(kind: str, partition: int = P) -> str:
    return f"partita.wf.{partition}.{kind}"


def result(**fields: object) -> bytes:
    return encode_json({"workflowInstanceId": WID, "taskId": "t1", "status": "COMPLETED", **fields})


def started(**fields: object) -> bytes:
    return encode_json({"workflowInstanceId": WID, "taskId": "t1", **fields})


def valid_body(kind: str, workflow_id: str = WID) -> bytes:
    """A well-formed message of the kind published on ``subject(kind)``."""
    if kind.startswith(("result", "started")):
        fields: dict[str, object] = {"workflowInstanceId": workflow_id, "taskId": "t1"}
        return encode_json({**fields, "status": "COMPLETED"} if kind.startswith("result") else fields)
    if kind == "start":
        return encode_json({"workflowId": workflow_id, "name": "flow"})
    if kind == "cmd":
        return encode_json({"kind": "TerminateWorkflow", "workflowId": workflow_id})
    return encode_json({"workflowId": workflow_id})


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def rejected(subject_: str, data: bytes) -> str:
    with pytest.raises(PayloadError) as caught:
        decode_event_data(LAYOUT, subject_, data)
    reason = str(caught.value)
    assert reason
    return reason


# --- anything at all ---------------------------------------------------------------------------------

# Objects with the real field names and values of any type: the wrong-types and missing-fields cases.
MESSAGES = st.dictionaries(FIELDS, JSON, max_size=8).map(encode_json)


@settings(max_examples=300)
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=64) | MESSAGES | JSON.map(encode_json))
def test_the_decoder_returns_an_event_or_raises_payload_error_for_any_bytes(kind: str, data: bytes) -> None:
    try:
        decoded = decode_event_data(LAYOUT, subject(kind), data)
    except PayloadError as exc:
        reason = str(exc)
        assert reason  # the dead letter says why
    else:
        assert isinstance(decoded, DecodedEvent)
        assert 1 <= len(decoded.workflow_id) <= 256
        msgspec.msgpack.encode(decoded.event)  # whatever passes can be stored in the workflow record


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "data",
    [b"", b" ", b"null", b"[]", b'"text"', b"0", b"\xff\xfe\x00", b'{"a": "\xff"}', b"{" * 10, b"\x00" * 8],
    ids=["empty", "space", "null", "array", "string", "number", "binary", "non-utf8", "unclosed", "nul"],
)
def test_bodies_that_are_no_message_are_poison_on_every_event_subject(kind: str, data: bytes) -> None:
    rejected(subject(kind), data)


@pytest.mark.parametrize("kind", KINDS)
def test_a_hundred_thousand_nested_arrays_are_rejected_cleanly(kind: str) -> None:
    assert "nested" in rejected(subject(kind), b'{"workflowId": "wf-1", "x": ' + nested(100_000) + b"}")


def test_nesting_is_limited_below_what_the_node_can_store_and_walk() -> None:
    # Deep, but within what the semantic limit may be set to: the decider fails the task, saying why.
    deep = nested(MAX_NESTING_DEPTH - 2)
    within = decode_event_data(LAYOUT, subject("result.work"), result(outputData={"a": msgspec.Raw(deep)}))
    assert isinstance(within.event, TaskResult)
    reason = rejected(subject("result.work"), result(outputData={"a": msgspec.Raw(nested(MAX_NESTING_DEPTH))}))
    assert f"nested deeper than {MAX_NESTING_DEPTH}" in reason


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_integers_messagepack_cannot_hold_are_rejected(value: int) -> None:
    assert "outside -2**63..2**64-1" in rejected(subject("result.work"), result(outputData={"n": value}))


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 1e308, -1e308, -0.0, 0.0])
def test_numbers_at_the_edge_of_what_can_be_stored_are_accepted(value: float) -> None:
    decoded = decode_event_data(LAYOUT, subject("result.work"), result(outputData={"n": value}))
    assert isinstance(decoded.event, TaskResult)
    assert decoded.event.output_data == {"n": value}


@pytest.mark.parametrize(
    "raw",
    [b"1e400", b"NaN", b"Infinity", b"-Infinity", b"9" * 5000],
    ids=["1e400", "nan", "inf", "-inf", "5000-digits"],
)
def test_numbers_json_cannot_hold_are_rejected(raw: bytes) -> None:
    rejected(subject("result.work"), result(outputData={"n": msgspec.Raw(raw)}))


def test_strings_that_are_not_unicode_are_rejected() -> None:
    assert "UTF-8" in rejected(subject("result.work"), result(outputData={"s": msgspec.Raw(b'"\xed\xa0\x80"')}))
    rejected(subject("result.work"), result(outputData={"s": msgspec.Raw(b'"\\ud800"')}))  # a lone surrogate


def test_a_very_long_string_in_a_payload_is_only_data() -> None:
    decoded = decode_event_data(LAYOUT, subject("result.work"), result(outputData={"s": "x" * 500_000}))
    assert isinstance(decoded.event, TaskResult)


@pytest.mark.parametrize("kind", KINDS)
def test_a_workflow_id_that_is_empty_or_too_long_is_poison(kind: str) -> None:
    for workflow_id in ("", "x" * 257):
        assert "workflow id must be 1..256 characters" in rejected(subject(kind), valid_body(kind, workflow_id))


# --- subjects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "partita.wf.3.nonsense",
        "partita.wf.3.result",
        "partita.wf.3.result.a.b.c",
        "partita.wf.3.result.a.=61",
        "partita.wf.3.result.a.*",
        "partita.wf.3.result.=ZZ",
        "partita.wf.3.result.=FF",
        "partita.wf.3.result.*",
        "partita.wf.3.result.>",
        "partita.wf.3.result.",
        "partita.wf.3.started.=61",
        "partita.wf.3.*",
        "partita.wf.3.>",
        "partita.wf.3.start.extra",
        "partita.wf.3",
        "partita.esched.x",
        "other.wf.3.start",
    ],
)
def test_subjects_no_partita_component_publishes_are_poison(name: str) -> None:
    assert "no event kind" in rejected(name, result())


@pytest.mark.parametrize("kind", KINDS)
def test_an_event_on_another_workflows_partition_is_poison(kind: str) -> None:
    body = valid_body(kind)
    assert isinstance(decode_event_data(LAYOUT, subject(kind), body), DecodedEvent)
    reason = rejected(subject(kind, OTHER), body)
    assert f"published on partition {OTHER}" in reason
    assert f"is on partition {P}" in reason


def test_a_start_on_another_partition_is_poison_even_when_its_body_is_malformed() -> None:
    # Recording it FAILED here would let this partition's node create a workflow that belongs to another.
    body = encode_json({"workflowId": WID, "name": "n", "input": "not an object"})
    assert "partition" in rejected(subject("start", OTHER), body)


def test_a_report_must_be_published_on_the_subject_of_the_type_it_names() -> None:
    assert decode_event_data(LAYOUT, subject("result.work"), result(taskType="work")).subject_task_type == "work"
    assert decode_event_data(LAYOUT, subject("result.work"), result()).subject_task_type == "work"
    assert "names task type 'other'" in rejected(subject("result.work"), result(taskType="other"))
    assert "names task type 'other'" in rejected(subject("started.work"), started(taskType="other"))
    escaped = decode_event_data(LAYOUT, subject("result.a=2Eb=20c"), result(taskType="a.b c"))
    assert escaped.subject_task_type == "a.b c"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (result(pollCount=-1), "pollCount"),
        (result(pollCount=2**31), "pollCount"),
        (result(pollCount=2**64 - 1), "pollCount"),
        (result(callbackAfterSeconds=2**31), "callbackAfterSeconds"),
        (result(startTime=MAX_EPOCH_MILLIS + 1), "startTime"),
        (result(endTime=-1), "endTime"),
        (started(startTime=2**63), "startTime"),
        (started(pollCount=-5), "pollCount"),
    ],
)
def test_report_numbers_a_node_would_compute_dates_or_counts_from_are_bounded(body: bytes, field: str) -> None:
    kind = "result.work" if b"status" in body else "started.work"
    assert f"{field} is" in rejected(subject(kind), body)


# --- starts ---------------------------------------------------------------------------------------------


def start_body(**fields: object) -> bytes:
    return encode_json({"workflowId": WID, "name": "flow", **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"input": "not an object"}, "malformed StartWorkflow"),
        ({"version": "1"}, "malformed StartWorkflow"),
        ({"name": ""}, "name must not be empty"),
        ({"name": "   "}, "name must not be empty"),
        ({"name": "n" * (MAX_NAME_LENGTH + 1)}, f"the limit is {MAX_NAME_LENGTH}"),
        ({"taskToDomain": {"work": "a," + "d" * 65}}, "a domain longer than 64 characters"),
        ({"version": 2**31}, "version is 2147483648"),
        ({"priority": -(2**40)}, "priority is"),
        ({"input": {"n": 2**64}}, "outside -2**63..2**64-1"),
        ({"input": {"a": msgspec.Raw(nested(MAX_NESTING_DEPTH))}}, "nested deeper"),
    ],
)
def test_a_start_that_cannot_run_but_names_its_workflow_is_recorded_failed(
    fields: dict[str, object], expected: str
) -> None:
    decoded = decode_event_data(LAYOUT, subject("start"), start_body(**fields))
    assert expected in (decoded.problem or "")
    assert isinstance(decoded.event, StartWorkflow)
    # Only what names the workflow is kept: the bad values are never stored.
    assert decoded.event == StartWorkflow(workflow_id=WID, name=decoded.event.name)
    assert len(decoded.event.name) <= MAX_NAME_LENGTH


def test_a_start_with_an_inline_definition_needs_no_name() -> None:
    inline = msgspec.to_builtins(WorkflowDef(name="adhoc", tasks=[]))
    decoded = decode_event_data(LAYOUT, subject("start"), start_body(name="", workflowDef=inline))
    assert decoded.problem is None


# --- the guard ------------------------------------------------------------------------------------------


def test_a_decoder_bug_becomes_a_dead_letter_not_a_node_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(layout: Layout, subject: str, data: bytes) -> DecodedEvent:
        raise TypeError("a bug")

    monkeypatch.setattr(events, "decode_event_data", broken)
    delivery = cast(Delivery, SimpleNamespace(subject=subject("cmd"), data=b"{}", headers={}, stream_seq=7))
    with pytest.raises(PayloadError, match="the event decoder failed: TypeError: a bug"):
        decode_event(LAYOUT, delivery)


# --- worker reports the decider rejects (counted by the node) or merely ignores ------------------------


def running_workflow() -> tuple[Workflow, str]:
    definition = msgspec.convert({"name": "wf", "tasks": [{"name": "work", "taskReferenceName": "w"}]}, WorkflowDef)
    request = StartWorkflow(workflow_id=WID, name="wf")
    decision = decide(None, WorkflowStartRequested(request=request, definition=definition), 1_000)
    assert decision.workflow is not None
    return decision.workflow, decision.workflow.tasks[0].task_id


def test_a_result_for_another_task_type_or_an_older_delivery_is_rejected() -> None:
    workflow, task_id = running_workflow()

    def received(subject_type: str, poll_count: int | None) -> TaskResultReceived:
        report = TaskResult(workflow_instance_id=WID, task_id=task_id, status=TaskResultStatus.COMPLETED,
                            poll_count=poll_count)  # fmt: skip
        return TaskResultReceived(result=report, subject_task_type=subject_type)

    forged = decide(workflow, received("other", 0), 2_000)
    assert (forged.workflow, forged.rejected) == (None, True)
    stale = decide(workflow, received("work", 3), 2_000)
    assert (stale.workflow, stale.rejected) == (None, True)
    real = decide(workflow, received("work", 0), 2_000)
    assert real.workflow is not None
    late = decide(real.workflow, received("work", 0), 3_000)  # at-least-once noise: ignored, not rejected
    assert (late.workflow, late.rejected) == (None, False)


def test_a_start_report_for_another_task_type_or_an_older_delivery_is_rejected() -> None:
    workflow, task_id = running_workflow()

    def received(subject_type: str, poll_count: int) -> TaskStartedReceived:
        report = TaskStarted(workflow_instance_id=WID, task_id=task_id, poll_count=poll_count)
        return TaskStartedReceived(started=report, subject_task_type=subject_type)

    assert decide(workflow, received("other", 0), 2_000).rejected
    assert decide(workflow, received("work", 1), 2_000).rejected
    began = decide(workflow, received("work", 0), 2_000)
    assert began.workflow is not None
    again = decide(began.workflow, received("work", 0), 3_000)  # a duplicate: the task is IN_PROGRESS
    assert (again.workflow, again.rejected) == (None, False)


def test_only_timers_fired_by_a_node_made_schedule_are_trusted() -> None:
    """What a schedule fires carries ``Nats-Scheduler`` (set by the server, never by a publisher): a timer from a
    schedule on ``<prefix>.esched.`` is an event; anything else a schedule fired, a schedule or a schedule purge
    published on an events subject, and a timer no schedule fired, are refused."""
    fired = {"Nats-Scheduler": "partita.esched.t1=3Aab12", "Nats-Schedule-Next": "purge"}
    events.check_provenance(LAYOUT, "partita.wf.3.timer", fired)
    events.check_provenance(LAYOUT, "partita.wf.3.result.work._", {"Nats-Msg-Id": "result:x"})
    refused = {
        ("partita.wf.3.timer", ()): "no schedule fired",
        ("partita.wf.3.cmd", (("Nats-Scheduler", "partita.wf.71.result.work._"),)): "which no node made",
        ("partita.wf.3.timer", (("Nats-Scheduler", "partita.wf.71.result.work._"),)): "which no node made",
        ("partita.wf.3.start", (("Nats-Scheduler", "partita.esched.t1"),)): "which no node made",
        ("partita.wf.3.result.work._", (("Nats-Schedule", "@at 2026-01-01T00:00:00Z"),)): "a message schedule",
        ("partita.wf.3.result.work._", (("nats-schedule-target", "partita.wf.3.cmd"),)): "a message schedule",
        ("partita.wf.3.result.work._", (("Nats-Schedule-Next", "purge"),)): "a schedule purge",
        ("partita.wf.3.result.work._", (("Nats-Schedule-Next", "purge"), ("Nats-Scheduler", "partita.esched.t1")),):
            "which no node made",
    }  # fmt: skip
    for (subject, headers), reason in refused.items():
        with pytest.raises(PayloadError, match=reason):
            events.check_provenance(LAYOUT, subject, dict(headers))
    # A forged header in another case survives the server's stripping (it matches case-sensitively).
    twice = {"nats-scheduler": "partita.timers.t1", "Nats-Scheduler": "partita.wf.0.result.work._"}
    with pytest.raises(PayloadError, match="more than one"):
        events.check_provenance(LAYOUT, "partita.wf.3.timer", twice)
