"""The public surface: what each package exports, so removals are deliberate."""

from __future__ import annotations

import partita.actors
import partita.schemas
import partita.transport


def test_the_worker_sdk_names_the_issue_promised_are_exported() -> None:
    for name in ("worker_task", "TerminalError", "InProgress", "run_workers", "Node", "TaskMessage"):
        assert name in partita.actors.__all__


def test_every_exported_name_exists() -> None:
    for module in (partita.actors, partita.schemas, partita.transport):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], module.__name__
        assert sorted(module.__all__) == sorted(set(module.__all__))


def test_the_transport_exports_the_client_and_the_embedded_server() -> None:
    assert {"Client", "EmbeddedServer", "Layout", "connect", "ensure_layout"} <= set(partita.transport.__all__)
    assert {"AuthDirectory", "Credentials", "Identity", "Role", "local_ca", "PermissionDenied"} <= set(
        partita.transport.__all__
    )
