"""docs/protocol.md and the exported JSON Schema agree: every example in the doc validates against the schema
and decodes with the msgspec type it names, and every message the schema exports has an example in the doc."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import msgspec
import pytest

from partita.actors.cli import main
from partita.actors.schema_commands import EXPORTED, INDEX_FILE, Exported, protocol_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_NAMED = re.compile(r"<!--\s*schema:\s*(?P<name>\w+)\s*-->\s*$")
BY_NAME = {entry.name: entry for entry in EXPORTED}
SCHEMA = protocol_schema()
BY_KIND = {item["kind"]: item["name"] for item in SCHEMA["messages"] if item["kind"]}  # type: ignore[union-attr,index]


@dataclass(frozen=True)
class Example:
    line: int
    name: str | None  # the exported message it claims to be (None: it does not say)
    text: str

    def __str__(self) -> str:
        return f"docs/protocol.md:{self.line} ({self.name})"


def examples(doc: str) -> list[Example]:
    """Every fenced ``json`` block, named by a ``<!-- schema: Name -->`` line before it, else by its ``kind``."""
    found = []
    for match in _FENCE.finditer(doc):
        info = match["info"].strip()
        if not info.startswith("json"):
            continue
        line = doc.count("\n", 0, match.start()) + 1
        assert info == "json", f"docs/protocol.md:{line}: examples are strict JSON (```json), checked; not {info!r}"
        before = doc[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        named = _NAMED.search(before)
        name = named["name"] if named else None
        if name is None:
            try:
                kind = json.loads(match["body"]).get("kind")
            except (json.JSONDecodeError, AttributeError):
                kind = None
            name = BY_KIND.get(kind) if isinstance(kind, str) else None
        found.append(Example(line, name, match["body"]))
    return found


EXAMPLES = examples(DOC.read_text(encoding="utf-8"))


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {"$schema": SCHEMA["$schema"], "$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]}
    return jsonschema.Draft202012Validator(schema)


def problems(name: str, instance: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator(name).iter_errors(instance)]


def schemas_of(example: Example) -> list[Exported]:
    assert example.name is not None, f"{example}: name its message (`kind`, or `<!-- schema: Name -->` before it)"
    assert example.name in BY_NAME, f"{example}: {example.name} is not a message the schema exports"
    entry = BY_NAME[example.name]
    return [entry] + ([BY_NAME[entry.union]] if entry.union else [])


def test_the_doc_has_examples_to_check() -> None:
    assert len(EXAMPLES) >= len(EXPORTED) - 1


def test_the_exported_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_every_example_in_the_doc_validates_and_decodes(example: Example) -> None:
    instance = json.loads(example.text)
    for entry in schemas_of(example):
        assert problems(entry.name, instance) == [], f"{example} against the schema {entry.name}"
        decoded = msgspec.json.decode(example.text.encode(), type=entry.type)
        # What Partita would send back for it (defaults omitted) is valid too.
        assert problems(entry.name, json.loads(msgspec.json.encode(decoded))) == []


@pytest.mark.parametrize("name", [entry.name for entry in EXPORTED])
def test_every_exported_message_has_an_example_in_the_doc(name: str) -> None:
    checked = {entry.name for example in EXAMPLES if example.name in BY_NAME for entry in schemas_of(example)}
    assert name in checked, f"docs/protocol.md has no example of {name}, which `partita schema export` exports"


def test_kind_is_optional_on_a_single_type_subject_and_required_on_cmd() -> None:
    result = {"workflowInstanceId": "w", "taskId": "t", "status": "COMPLETED"}
    assert problems("TaskResult", result) == []
    msgspec.json.decode(json.dumps(result), type=BY_NAME["TaskResult"].type)
    assert problems("TaskResult", {**result, "kind": "TaskStarted"}) != []
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps({**result, "kind": "TaskStarted"}), type=BY_NAME["TaskResult"].type)
    update = {"workflowId": "w", "taskRefName": "approve", "status": "COMPLETED"}
    assert problems("UpdateTask", update) == []
    assert problems("Command", update) != []
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps(update), type=BY_NAME["Command"].type)
    assert problems("Command", {**update, "kind": "UpdateTask"}) == []


def test_absent_fields_are_their_defaults_in_the_schema_and_in_the_decoder() -> None:
    task = {"taskId": "t", "taskType": "x", "taskDefName": "x", "referenceTaskName": "r", "workflowInstanceId": "w",
            "workflowType": "wf", "resultSubject": "partita.wf.0.result.x._"}  # fmt: skip
    assert problems("TaskMessage", task) == []
    decoded = msgspec.json.decode(json.dumps(task), type=BY_NAME["TaskMessage"].type)
    properties = SCHEMA["$defs"]["TaskMessage"]["properties"]  # type: ignore[index]
    for field in msgspec.structs.fields(decoded):
        if field.encode_name in task:
            continue
        assert properties[field.encode_name]["default"] == msgspec.to_builtins(getattr(decoded, field.name)), field
    assert problems("TaskMessage", {**task, "retryCount": None}) != []  # null only where the schema allows it


def test_unknown_fields_are_accepted_by_schema_and_decoder() -> None:
    started = {"workflowInstanceId": "w", "taskId": "t", "fromTheFuture": [1]}
    assert problems("TaskStarted", started) == []
    msgspec.json.decode(json.dumps(started), type=BY_NAME["TaskStarted"].type)


def test_schema_export_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "export"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA


def test_schema_export_out_writes_a_file_per_message_and_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schemas"
    assert main(["schema", "export", "--out", str(out)]) == 0
    capsys.readouterr()
    index = json.loads((out / INDEX_FILE).read_text())
    assert [item["name"] for item in index["messages"]] == [entry.name for entry in EXPORTED]
    for item in index["messages"]:
        document = json.loads((out / item["file"]).read_text())
        jsonschema.Draft202012Validator.check_schema(document)
        assert document["$defs"][item["name"]] == SCHEMA["$defs"][item["name"]]  # type: ignore[index]
    assert sorted(path.name for path in out.iterdir()) == sorted([INDEX_FILE, *(i["file"] for i in index["messages"])])


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["schema", "export", "--bogus"], "unrecognized arguments: --bogus"),
        (["schema", "export", "--out"], "expected one argument"),
        (["schema"], "name a command: export"),
    ],
)
def test_schema_export_refuses_bad_arguments_in_one_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert said in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_schema_export_refuses_an_out_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    assert main(["schema", "export", "--out", str(target)]) == 2
    assert capsys.readouterr().err == f"error: --out {target}: not a directory\n"
