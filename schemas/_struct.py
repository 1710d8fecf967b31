"""Base classes shared by every Struct in ``partita.schemas``."""

from __future__ import annotations

import msgspec


class Definition(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Conductor JSON: camelCase, defaults omitted on encode, unknown fields ignored on decode."""


class Record(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Runtime records shaped like Conductor's JSON (``Workflow``, ``Task``)."""


class Message(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True, tag_field="kind", tag=True
):
    """A wire message. The ``kind`` tag names the class; it is optional on decode of a single type."""
