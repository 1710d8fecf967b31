"""Conductor's ``${...}`` parameter expressions, evaluated purely."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from partita.actors.decider import resolve

DOC = {
    "workflow": {"input": {"x": 3, "name": "ada", "obj": {"a": [1, 2, {"b": "deep"}]}, "key": "x"}, "variables": {}},
    "t1": {"output": {"items": [{"status": "ok"}, {"status": "bad"}], "weird key": 1}, "status": "COMPLETED"},
}


def test_a_lone_expression_yields_the_raw_value() -> None:
    assert resolve("${workflow.input.x}", DOC) == 3
    assert resolve("${workflow.input.obj}", DOC) == {"a": [1, 2, {"b": "deep"}]}
    assert resolve("${workflow.input.obj.a[2].b}", DOC) == "deep"
    assert resolve("${workflow.input.obj.a[-1]}", DOC) == {"b": "deep"}


def test_expressions_inside_text_are_interpolated() -> None:
    assert resolve("hi ${workflow.input.name}, x=${workflow.input.x}", DOC) == "hi ada, x=3"
    assert resolve("missing=${workflow.input.nope}", DOC) == "missing=null"
    assert resolve("obj=${workflow.input.obj.a}", DOC) == 'obj=[1,2,{"b":"deep"}]'


def test_missing_paths_yield_null_not_errors() -> None:
    assert resolve("${workflow.input.nope.deeper}", DOC) is None
    assert resolve("${nobody.output}", DOC) is None
    assert resolve("${workflow.input.obj.a[9]}", DOC) is None


def test_templates_resolve_recursively_through_maps_and_lists() -> None:
    template = {"a": ["${workflow.input.x}", {"b": "${t1.status}"}], "n": 5, "none": None}
    assert resolve(template, DOC) == {"a": [3, {"b": "COMPLETED"}], "n": 5, "none": None}


def test_escapes_empty_expressions_and_the_task_id_placeholder() -> None:
    assert resolve("$${workflow.input.x}", DOC) == "${workflow.input.x}"
    assert resolve("${}", DOC) == ""
    assert resolve("${CPEWF_TASK_ID}", DOC, task_id="tid-1") == "tid-1"


def test_quoted_keys_wildcards_deep_scan_and_nested_expressions() -> None:
    assert resolve("${t1.output['weird key']}", DOC) == 1
    assert resolve("${t1.output.items[*].status}", DOC) == ["ok", "bad"]
    assert resolve("${t1.output..status}", DOC) == ["ok", "bad"]
    assert resolve("${workflow.input.${workflow.input.key}}", DOC) == 3


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=40))
def test_text_without_dollar_signs_is_left_exactly_as_is(text: str) -> None:
    assert resolve(text, DOC) == text


def test_filters_keep_the_list_elements_a_predicate_holds_for() -> None:
    doc = {"t": {"output": {"items": [
        {"id": 1, "state": "ok", "size": 3}, {"id": 2, "state": "bad", "size": 9}, {"id": 3, "state": "ok", "size": 12},
    ]}}}  # fmt: skip
    assert resolve("${t.output.items[?(@.state == 'ok')].id}", doc) == [1, 3]
    assert resolve("${t.output.items[?(@.size > 5 && @.state == 'ok')].id}", doc) == [3]
    assert resolve("${t.output.items[?(@.size < 4 || @.id == 2)].id}", doc) == [1, 2]
    assert resolve("${t.output.items[?(@.missing)]}", doc) == []
    assert resolve('${t.output.items[?(@.state != "ok")].id}', doc) == [2]


def test_environment_values_resolve_only_when_allow_listed() -> None:
    doc = {"workflow": {"env": {"REGION": "eu-1"}}, "\x00env": {"REGION": "eu-1"}}
    assert resolve("${workflow.env.REGION}", doc) == "eu-1"
    assert resolve("${REGION}", doc) == "eu-1"
    assert resolve("${HOME}", doc) is None  # not on the allow-list: never read from the process


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet="abc xyz", max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_a_lone_expression_returns_any_value_unchanged(value: object) -> None:
    assert resolve("${workflow.input.v}", {"workflow": {"input": {"v": value}}}) == value


def test_filters_respect_quotes_and_do_not_equate_true_with_one() -> None:
    doc = {"w": {"list": [{"name": "a && b", "v": 1}, {"name": "c", "v": True}, {"name": "}", "v": 2}]}}
    assert resolve("${w.list[?(@.name == 'a && b')].v}", doc) == [1]
    assert resolve("${w.list[?(@.name == '}')].v}", doc) == [2]
    assert resolve("${w.list[?(@.v == 1)].name}", doc) == ["a && b"]
