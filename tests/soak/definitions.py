"""What the soak run registers and starts: the chaos suite's workflows plus a dynamic fork, a longer WAIT and a
task that sometimes outlasts its response timeout; every task type a registered TaskDef with timeouts.

Each kind has an input drawn from a seeded generator and the one output it must end with.
"""

from __future__ import annotations

import random

from ..chaos.chaos import DEFINITIONS as CHAOS_DEFINITIONS
from ..chaos.chaos import expected_output as chaos_expected_output

# As a user would register them: a response timeout (a dead or silent worker's task is retried after it), a
# task timeout (an attempt that started but never ended), retried (not failing the workflow), and retries
# enough that the faults of a long run, which cost a task an attempt each time they hit it, cannot exhaust them.
_POLICY: dict[str, object] = {
    "retryCount": 6,
    "retryLogic": "FIXED",
    "retryDelaySeconds": 1,
    "responseTimeoutSeconds": 5,
    "timeoutSeconds": 90,
    "timeoutPolicy": "RETRY",
}
TASK_DEFS: list[dict[str, object]] = [
    {"name": "chaos_inc", **_POLICY},
    {"name": "chaos_flaky", **_POLICY},  # fails every first attempt (tests/chaos/workers.py)
    {"name": "soak_slow", **_POLICY, "responseTimeoutSeconds": 3},  # tests/soak/workers.py
]
REUSED = ("chaos_seq", "chaos_fork", "chaos_retry", "chaos_sub")  # a chain of 3, FORK_JOIN, retries, SUB_WORKFLOW
WAIT_SECONDS = 3
WORKFLOW_DEFS: list[dict[str, object]] = [
    *(d for d in CHAOS_DEFINITIONS if d["name"] in REUSED),
    {
        "name": "soak_dynamic",
        "tasks": [
            {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"forkTaskName": "chaos_inc", "forkTaskInputs": "${workflow.input.items}"}},
            {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
        ],
        "outputParameters": {"joined": "${join.output}"},
    },
    {
        "name": "soak_wait",
        "tasks": [
            {"name": "nap", "taskReferenceName": "nap", "type": "WAIT",
             "inputParameters": {"duration": f"{WAIT_SECONDS}s"}},
            {"name": "chaos_inc", "taskReferenceName": "after", "inputParameters": {"n": "${workflow.input.n}"}},
        ],
        "outputParameters": {"n": "${after.output.n}"},
    },
    {
        "name": "soak_timeout",
        "tasks": [{"name": "soak_slow", "taskReferenceName": "slow",
                   "inputParameters": {"n": "${workflow.input.n}", "slow": "${workflow.input.slow}"}}],
        "outputParameters": {"n": "${slow.output.n}"},
    },
]  # fmt: skip
KINDS = [*REUSED, "soak_dynamic", "soak_wait", "soak_timeout"]
SLOW_SHARE = 0.3  # of soak_timeout workflows whose task outlasts its response timeout once


def next_workflow(rng: random.Random) -> tuple[str, dict[str, object]]:
    """A kind of workflow and its input."""
    kind = rng.choice(KINDS)
    n = rng.randrange(1000)
    if kind == "soak_dynamic":
        return kind, {"items": [{"n": n + 10 * i} for i in range(rng.randint(2, 5))]}
    if kind == "soak_timeout":
        return kind, {"n": n, "slow": rng.random() < SLOW_SHARE}
    return kind, {"n": n}


def expected_output(kind: str, input: dict[str, object]) -> dict[str, object]:
    if kind == "soak_dynamic":
        items = input["items"]
        assert isinstance(items, list)
        return {"joined": {f"_chaos_inc_{i}": {"n": item["n"] + 1} for i, item in enumerate(items)}}
    n = input["n"]
    assert isinstance(n, int)
    if kind in ("soak_wait", "soak_timeout"):
        return {"n": n + 1}
    return chaos_expected_output(kind, n)
