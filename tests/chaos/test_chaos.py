"""A short fault-injection run for CI (``make chaos`` runs the long one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .chaos import run


@pytest.mark.timeout(300)  # above the run's own 180 s wait, so a stuck workflow is reported as lost
async def test_workflows_end_exactly_right_while_nodes_workers_and_the_server_die(tmp_path: Path) -> None:
    outcome = await run(workflows=60, seed=20261122, fault_every=1.0, duration=8.0, store=tmp_path)
    assert outcome.faults >= 5
    assert (outcome.lost, outcome.wrong, outcome.duplicate_completions) == (0, 0, 0)
