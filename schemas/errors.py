"""Partita's exception tree.

Every error Partita raises on purpose derives from :class:`PartitaError`::

    PartitaError
    ├── DefinitionError            a task or workflow definition is invalid (registration or start)
    │   └── UnsupportedError       valid Conductor, but a feature this version does not execute yet
    ├── WorkflowError              a workflow-level request cannot be honoured
    │   ├── WorkflowNotFound       no workflow with that id
    │   └── WorkflowTimeout        a wait for a workflow ended before the workflow did
    ├── PayloadError               a message is malformed or too large
    ├── AuthError                  an identity, a grant or a credentials file is invalid (partita.transport)
    ├── EgressRefused              an HTTP task would connect where the egress policy refuses (partita.actors)
    └── TransportError             NATS/JetStream failed us (partita.transport.errors)
        ├── ConnectionFailed       cannot reach any server, or the server refused our credentials
        ├── ServerVersionError     the server lacks a feature we depend on
        ├── TransportTimeout       a request got no answer in time
        ├── CasConflict            a compare-and-set write lost the race
        ├── PermissionDenied       the server refused a publish or subscription to this identity
        ├── PartitionTaken         another node's consumer still filters a partition
        └── ProvisioningError      a stream, consumer or bucket cannot be created as required, or is missing

Foreign exceptions (``nats.errors``, ``msgspec``) are translated where they are caught, so callers only
ever need to know this tree.
"""

from __future__ import annotations


class PartitaError(Exception):
    """Root of every error Partita raises on purpose."""


class DefinitionError(PartitaError):
    """A definition is invalid; ``problems`` lists every violation found, not just the first."""

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.subject = subject
        self.problems = list(problems)
        joined = "; ".join(self.problems)
        super().__init__(f"invalid definition {subject}: {joined}")


class UnsupportedError(DefinitionError):
    """The definition is valid Conductor but uses something this version does not run yet."""


class WorkflowError(PartitaError):
    """A request about a workflow cannot be honoured."""


class WorkflowNotFound(WorkflowError):
    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id!r} not found")


class CommandRefused(WorkflowError):
    """A node refused an operator's command, in Conductor's words; ``outcome`` is ``NOT_FOUND`` (no such task
    to update: Conductor's 404), ``CONFLICT`` (the workflow's status does not allow it: 409) or ``INVALID``
    (it names something the workflow does not have: 400)."""

    def __init__(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        super().__init__(message)


class UnknownDefinition(PartitaError):
    """A start names a workflow definition (or version) that is not registered: refused, nothing recorded."""


class CommandNotConfirmed(WorkflowError):
    """The command is durable, but no node answered it in time (no node running, or all behind): it will be
    applied when one does."""


class WorkflowTimeout(WorkflowError):
    def __init__(self, workflow_id: str, seconds: float) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id!r} did not finish within {seconds:g} s")


class PayloadError(PartitaError):
    """A message could not be decoded, or exceeds a size limit."""
