"""Transport errors (see the tree in ``partita.schemas.errors``). No ``nats`` exception leaves this package."""

from __future__ import annotations

from partita.schemas.errors import PartitaError


class AuthError(PartitaError):
    """A bad identity, grant or credentials file; the message says which and why."""


class TransportError(PartitaError):
    """NATS or JetStream failed to do what we asked."""


class ConnectionFailed(TransportError):
    """No server in the list could be reached."""


class ServerVersionError(TransportError):
    """The server is older than a feature Partita depends on."""


class TransportTimeout(TransportError):
    """A request or acknowledgement did not arrive in time."""


class NoStreamListening(TransportError):
    """No stream took a publish: none stores its subject, or the one that does is electing a leader (a cluster
    failing over answers so too, for a moment)."""


class CasConflict(TransportError):
    """A compare-and-set write lost: someone else wrote the key since we read it."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"compare-and-set conflict on key {key!r}")


class ProvisioningError(TransportError):
    """A stream, consumer or bucket could not be created or updated as required."""


class PartitionTaken(TransportError):
    """An event partition a node tried to take is still filtered by another node's consumer."""


class Fenced(TransportError):
    """A task dispatch the tasks stream refused: its partition was fenced by a newer owner since this node's
    token (actors/fencing.py), or this node holds no token for it. The event goes back to the partition's owner."""


class PermissionDenied(TransportError):
    """The NATS server refused a publish or subscription: this identity's role does not allow it."""
