"""A two-minute soak run for CI (``make soak`` runs the long one)."""

from __future__ import annotations

import pytest

from .soak import PATIENCE, soak


# Above the run itself: two minutes of load, its final wait (PATIENCE) and the checks, so a stuck workflow is
# reported as stranded by the run rather than cut short by the timeout.
@pytest.mark.timeout(int(120 + PATIENCE + 300))
async def test_workflows_end_exactly_right_under_two_minutes_of_load_and_faults_on_a_cluster() -> None:
    outcome = await soak(minutes=2, seed=20261207)  # kept on failure; concurrent sessions prune tmp_path
    assert outcome is not None
    assert outcome.faults >= 5
    assert (outcome.stranded, outcome.lost, outcome.wrong, outcome.duplicate_completions) == (0, 0, 0, 0), (
        outcome.summary
    )
