"""Partita's actors: the node (workflow actors around the pure decider), the worker SDK and the CLI."""

from partita.schemas import TaskMessage

from .decider import Decision, decide
from .logs import configure_logging
from .node import Node, NodeStatistics
from .worker import (
    Failure,
    InProgress,
    TaskWorker,
    TerminalError,
    WorkerSpec,
    WorkerStatistics,
    load_workers,
    registered_workers,
    run_workers,
    worker_task,
)

__all__ = [
    "Decision",
    "Failure",
    "InProgress",
    "Node",
    "NodeStatistics",
    "TaskMessage",
    "TaskWorker",
    "TerminalError",
    "WorkerSpec",
    "WorkerStatistics",
    "configure_logging",
    "decide",
    "load_workers",
    "registered_workers",
    "run_workers",
    "worker_task",
]
