"""JsonJQTransformSpec (conductor-oss/conductor test-harness/.../integration/JsonJQTransformSpec.groovy),
ported: each test cites the feature's line; the fixtures are the spec's, unchanged."""

from __future__ import annotations

from partita.transport import Client, Connection

from ._loops_steps import expect
from .conductor import Conductor, conductor_server

C, F = "COMPLETED", "FAILED"
JSON_JQ_TRANSFORM_WF = "test_json_jq_transform_wf"
SEQUENTIAL_JSON_JQ_TRANSFORM_WF = "sequential_json_jq_transform_wf"
JSON_JQ_TRANSFORM_RESULT_WF = "json_jq_transform_result_wf"
VALID = {"in1": {"array": ["a", "b"]}, "in2": {"array": ["c", "d"]}}
INVALID = {"in1": "a", "in2": "b"}


async def register(conductor: Conductor) -> None:
    # JsonJQTransformSpec.groovy:33 setup()
    for name in (
        "simple_json_jq_transform_integration_test.json",
        "sequential_json_jq_transform_integration_test.json",
        "json_jq_transform_result_integration_test.json",
    ):
        await conductor.register_fixture(name)


async def test_workflow_with_json_jq_transform_task_succeeds(conn: Connection, client: Client) -> None:
    # JsonJQTransformSpec.groovy:49 "Test workflow with json jq transform task succeeds"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        wid = await conductor.start(JSON_JQ_TRANSFORM_WF, 1, "", VALID)
        workflow = await expect(conductor, wid, "COMPLETED", [("JSON_JQ_TRANSFORM", C)])
        assert "result" in workflow["tasks"][0]["outputData"]
        assert "resultList" in workflow["tasks"][0]["outputData"]


async def test_workflow_with_json_jq_transform_task_fails(conn: Connection, client: Client) -> None:
    # JsonJQTransformSpec.groovy:78 "Test workflow with json jq transform task fails"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        wid = await conductor.start(JSON_JQ_TRANSFORM_WF, 1, "", INVALID)
        workflow = await expect(conductor, wid, "FAILED", [("JSON_JQ_TRANSFORM", F)])
        assert workflow["tasks"][0]["reasonForIncompletion"] == 'Cannot index string with string "array"'


async def test_rerun_workflow_with_failed_json_jq_transform_task(conn: Connection, client: Client) -> None:
    # JsonJQTransformSpec.groovy:113 "Test rerun workflow with failed json jq transform task"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        wid = await conductor.start(JSON_JQ_TRANSFORM_WF, 1, "", INVALID)
        workflow = await expect(conductor, wid, "FAILED", [("JSON_JQ_TRANSFORM", F)])
        assert workflow["tasks"][0]["reasonForIncompletion"] == 'Cannot index string with string "array"'

        valid_input = {"input": VALID, "queryExpression": ".input as $_ | { out: ($_.in1.array + $_.in2.array) }"}
        await conductor.client.rerun(wid, from_task_id=workflow["tasks"][0]["taskId"], task_input=valid_input)
        workflow = await expect(conductor, wid, "COMPLETED", [("JSON_JQ_TRANSFORM", C)])
        assert "result" in workflow["tasks"][0]["outputData"]
        assert "resultList" in workflow["tasks"][0]["outputData"]


async def test_json_jq_transform_task_with_nested_json_object_succeeds(conn: Connection, client: Client) -> None:
    # JsonJQTransformSpec.groovy:160 "Test json jq transform task with nested json object succeeds"
    workflow_input = {
        "method": "POST",
        "body": {"name": "Beary Beariston", "title": "the Brown Bear"},
        "requestTransform": '{name: (.body.name + " you are " + .body.title) }',
        "responseTransform": '{result: "reply: " + .response.body.message}',
    }
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        wid = await conductor.start(SEQUENTIAL_JSON_JQ_TRANSFORM_WF, 1, "", workflow_input)
        workflow = await expect(conductor, wid, "COMPLETED", [("JSON_JQ_TRANSFORM", C), ("JSON_JQ_TRANSFORM", C)])
        first, second = workflow["tasks"]
        assert "result" in first["outputData"]
        assert "resultList" in first["outputData"]
        result1 = first["outputData"]["result"]
        assert result1["method"] == workflow_input["method"]
        assert result1["requestTransform"] == workflow_input["requestTransform"]
        assert result1["responseTransform"] == workflow_input["responseTransform"]
        assert "result" in second["outputData"]
        assert second["outputData"]["result"]["name"] == "Beary Beariston you are the Brown Bear"


async def test_json_jq_transform_task_with_different_json_object_results_succeeds(
    conn: Connection, client: Client
) -> None:
    # JsonJQTransformSpec.groovy:195 "Test json jq transform task with different json object results succeeds"
    async with conductor_server(conn, client) as conductor:
        await register(conductor)
        wid = await conductor.start(JSON_JQ_TRANSFORM_RESULT_WF, 1, "", {"requestedAction": "redeliver"})
        workflow = await expect(conductor, wid, "COMPLETED", [
            ("JSON_JQ_TRANSFORM", C), ("DECISION", C), ("JSON_JQ_TRANSFORM", C), ("DECISION", C),
        ])  # fmt: skip
        tasks = workflow["tasks"]
        assert "result" in tasks[0]["outputData"]
        assert "resultList" in tasks[0]["outputData"]
        assert tasks[0]["outputData"]["result"] == "CREATE"
        assert tasks[1]["inputData"].get("case") == "CREATE"
        assert "result" in tasks[2]["outputData"]
        result = tasks[2]["outputData"]["result"]
        assert len(result) == 3
        assert "redeliver" in result
        assert tasks[3]["inputData"].get("case") == "true"
