"""Subject naming: reversible escaping, stable partitions, deterministic consumer names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partita.transport import Layout, escape_token, partition_of, unescape_token

_TOKEN = re.compile(r"^[A-Za-z0-9_=-]+$")


@given(st.text(min_size=1, max_size=60))
def test_escaping_is_reversible_and_yields_one_safe_token(name: str) -> None:
    token = escape_token(name)
    assert _TOKEN.match(token)
    assert unescape_token(token) == name


def test_plain_names_stay_readable_and_the_no_domain_marker_cannot_collide() -> None:
    assert escape_token("get-inventory_v2") == "get-inventory_v2"
    assert escape_token("a.b c") == "a=2Eb=20c"
    assert escape_token("_") != "_"
    layout = Layout()
    assert layout.task_subject("get-inventory", None) == "partita.task.get-inventory._"
    assert layout.task_subject("get-inventory", "_") == "partita.task.get-inventory.=5F"
    assert layout.task_message_subject("a", "john", "t-1") == "partita.task.a.john.t-1"
    assert layout.task_consumer("a.b", "john") == "task@a=2Eb@john"


def test_partitions_are_crc32_modulo_the_partition_count() -> None:
    assert partition_of("abc", 64) == 0x352441C2 % 64  # crc32("abc"), the documented rule
    layout = Layout(partitions=8)
    assert layout.start_subject("abc") == f"partita.wf.{0x352441C2 % 8}.start"


def test_event_subjects_parse_back_to_their_kind_and_task_type() -> None:
    layout = Layout(prefix="acme")
    assert layout.parse_event_subject(layout.start_subject("w")) == ("start", None)
    assert layout.parse_event_subject(layout.result_subject("w", "a.b", "d")) == ("result", "a.b")
    assert layout.parse_event_subject("acme.wf.1.result.a") == ("result", "a")  # before domains were named
    assert layout.report_domain(layout.result_subject("w", "a", "x.y")) == (True, "x.y")
    assert layout.report_domain(layout.started_subject("w", "a", None)) == (True, None)
    assert layout.report_domain("acme.wf.1.result.a") == (False, None)
    for forged in ("acme.wf.1.result.a.*", "acme.wf.1.result.a.=61", "acme.wf.1.result.a.=ZZ"):
        assert layout.report_domain(forged) is None, forged
    assert layout.parse_event_subject("acme.wf.1.bogus") == ("unknown", None)
    assert layout.parse_definition_key(layout.workflow_def_key("my flow", 3)) == ("workflow", "my flow", 3)


def test_bad_prefixes_and_partition_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        Layout(prefix="a.b")
    with pytest.raises(ValueError, match="partitions"):
        Layout(partitions=0)
