"""The pure decider: Conductor's workflow semantics as a function, no I/O."""

from .decide import (
    Decision,
    decide,
    domain_for,
    fail_workflow,
    retry_delay_ms,
    snapshot_definition,
    task_to_domain_problems,
)
from .expressions import resolve
from .operators import uses_scripts

__all__ = [
    "Decision",
    "decide",
    "domain_for",
    "fail_workflow",
    "resolve",
    "retry_delay_ms",
    "snapshot_definition",
    "task_to_domain_problems",
    "uses_scripts",
]
