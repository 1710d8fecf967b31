"""How much work one decision does: counted calls, not timings (no wall clock in tests)."""

from __future__ import annotations

import pytest

from partita.actors.decider import state

from .test_operators import complete, pending, run

WIDTH = 60
FANOUT = {
    "name": "fan",
    "tasks": [
        {"name": "fork", "taskReferenceName": "fork", "type": "FORK_JOIN_DYNAMIC",
         "inputParameters": {"forkTaskName": "step", "forkTaskInputs": [{"i": i} for i in range(WIDTH)]}},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"},
    ],
}  # fmt: skip


def test_a_dynamic_fork_decodes_its_branches_once_per_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    workflow = run(FANOUT)
    branches = pending(workflow)
    assert len(branches) == WIDTH
    decoded: list[str] = []
    original = state.dynamic_branches

    def counting(fork: state.Task) -> list[state.WorkflowTask]:
        decoded.append(fork.task_id)
        return original(fork)

    monkeypatch.setattr(state, "dynamic_branches", counting)
    for ref in branches:
        decoded.clear()
        workflow = complete(workflow, ref, {"done": ref})
        # A JOIN on WIDTH branches looks up WIDTH definitions; the fork's list is decoded once for all of them
        # (it was once per lookup: quadratic per event, cubic per workflow).
        assert len(decoded) <= 1, len(decoded)
    assert workflow.status.is_terminal
    join = next(t for t in workflow.tasks if t.reference_task_name == "join")
    assert len(join.output_data) == WIDTH
