"""Everything that talks to NATS: connection, provisioning, subject layout, codecs, the embedded server and
the Python :class:`Client`. The only package importing ``nats``."""

from .auth import AuthDirectory, Identity, Role, permissions
from .client import Client, workflow_id_for
from .connection import (
    DEFAULT_URL,
    MIN_SERVER_VERSION,
    Connection,
    Credentials,
    Delivery,
    KvBucket,
    KvEntry,
    PullConsumer,
    connect,
)
from .deadletter import DeadLetter, dead_letter, keep_dead_letter, read_dead_letters
from .definitions import DefinitionStore
from .errors import (
    AuthError,
    CasConflict,
    ConnectionFailed,
    Fenced,
    NoStreamListening,
    PermissionDenied,
    ProvisioningError,
    ServerVersionError,
    TransportError,
    TransportTimeout,
)
from .layout import Layout, escape_token, partition_of, unescape_token
from .provision import ensure_layout, ensure_task_consumer, find_task_consumer, purge_task
from .server import EmbeddedServer, find_server_binary, free_port
from .tls import TlsFiles, local_ca

__all__ = [
    "DEFAULT_URL",
    "MIN_SERVER_VERSION",
    "AuthDirectory",
    "AuthError",
    "CasConflict",
    "Client",
    "Connection",
    "ConnectionFailed",
    "Credentials",
    "DeadLetter",
    "DefinitionStore",
    "Delivery",
    "EmbeddedServer",
    "Fenced",
    "Identity",
    "KvBucket",
    "KvEntry",
    "Layout",
    "NoStreamListening",
    "PermissionDenied",
    "ProvisioningError",
    "PullConsumer",
    "Role",
    "ServerVersionError",
    "TlsFiles",
    "TransportError",
    "TransportTimeout",
    "connect",
    "dead_letter",
    "ensure_layout",
    "ensure_task_consumer",
    "escape_token",
    "find_server_binary",
    "find_task_consumer",
    "free_port",
    "keep_dead_letter",
    "local_ca",
    "partition_of",
    "permissions",
    "purge_task",
    "read_dead_letters",
    "unescape_token",
    "workflow_id_for",
]
