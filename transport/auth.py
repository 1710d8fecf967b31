"""Least-privilege NATS identities for a deployment: who may publish and subscribe to what (design §9).

NATS authenticates and authorises; Partita only writes the configuration. The engine (nodes, every stream and
bucket) lives in one NATS account with JetStream; every other identity lives in an account of its own that
imports from the engine's exactly what its permissions allow (:func:`render_accounts`), so that no reply
subject of its can name an engine stream. Every identity has a role:

* ``node``: everything in the account (nodes provision streams, run workflows, own partitions);
* ``admin``: what a client may do, plus registering definitions, removing workflows and reading the DLQ and
  the members bucket;
* ``client``: start workflows, send operator commands, read workflows, definitions and history, wait for ends;
* ``worker``: fetch, ack and extend tasks of the (type, domain) queues it is granted, and nothing else: publish
  results and start reports only for its task types, announce only its pairs, use the rate-limit counters of
  its types, and (only if granted) the payload store and starting workflows.

Every identity subscribes only under its own inbox prefix, so it cannot read other identities' replies.

This module is pure: :func:`permissions` turns an :class:`Identity` into subject lists, :func:`boundary` into
its account's imports, and :func:`render_accounts` writes the ``accounts {}`` block for ``nats-server``. Key
generation uses nkeys (Ed25519 seeds the server never sees).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Final

import msgspec
import nacl.signing
import nkeys

from .errors import AuthError
from .layout import Layout, domain_token, escape_token

INBOX_ROOT: Final = "_INBOX"
_NKEY_USER_PREFIX: Final = "U"


class Role(StrEnum):
    NODE = "node"
    ADMIN = "admin"
    CLIENT = "client"
    WORKER = "worker"


class Identity(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One NATS user of a deployment. ``public_key`` is its nkey (``U...``); the seed stays with its owner."""

    name: str
    role: Role
    public_key: str
    tasks: tuple[str, ...] = ()  # workers: granted task types
    domains: tuple[str | None, ...] = ()  # workers: granted domains; None = the queue without a domain
    start_workflows: bool = False  # workers: may also start workflows (and read them)
    payloads: bool = False  # workers: may read and write the large-payload store

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64 or not all(c.isalnum() or c in "-_." for c in self.name):
            raise AuthError(f"identity name {self.name!r}: use 1..64 letters, digits, '-', '_' or '.'")
        if not (self.public_key.startswith(_NKEY_USER_PREFIX) and len(self.public_key) == 56):
            raise AuthError(f"identity {self.name!r}: {self.public_key!r} is not an nkey user public key")
        if any(not task for task in self.tasks) or any(domain == "" for domain in self.domains):
            raise AuthError(f"identity {self.name!r}: task types and domains must not be empty")
        if self.role is Role.WORKER:
            if not self.tasks:
                raise AuthError(f"worker {self.name!r} needs at least one task type (--task)")
            if not self.domains:
                raise AuthError(f"worker {self.name!r} needs at least one domain, or the no-domain queue")
        elif self.tasks or self.domains or self.start_workflows or self.payloads:
            raise AuthError(f"identity {self.name!r}: task, domain and grant options are for workers only")

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix_for(self.public_key)


class Permissions(msgspec.Struct, frozen=True):
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def inbox_prefix_for(principal: str) -> str:
    """The inbox prefix of an identity (its nkey public key, or its user name): the only place it may
    subscribe besides what its role reads. The SDK derives the same prefix from the credentials it is given."""
    return f"{INBOX_ROOT}_{escape_token(principal)}"


def _reader(stream: str, *, ephemeral_reads: bool = True) -> list[str]:
    """What reading a limits-retention stream needs: its info, message gets, and ephemeral or ordered
    consumers (KV watches and listings, object reads, history) with their flow control. No consumer deletion:
    ephemeral consumers go away on their own, and durable ones (an application's on EMITTED) are not ours."""
    api = "$JS.API"
    subjects = [
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.STREAM.MSG.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}.>",
    ]
    if ephemeral_reads:
        subjects += [
            f"{api}.CONSUMER.CREATE.{stream}",
            f"{api}.CONSUMER.CREATE.{stream}.>",
            f"{api}.CONSUMER.INFO.{stream}.>",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.>",
            f"$JS.FC.{stream}.>",
            f"$JS.ACK.{stream}.>",
        ]
    return subjects


def _base(identity: Identity) -> tuple[list[str], list[str]]:
    """Every restricted identity: account info, stream lookup by subject, and replies in its own inbox only.
    Each role adds the streams it uses; nobody else gets a stream's info (its subjects would list every
    workflow id, task id or definition name in it)."""
    return ["$JS.API.INFO", "$JS.API.STREAM.NAMES"], [f"{identity.inbox_prefix}.>"]


def _payloads(layout: Layout) -> list[str]:
    return [*_reader(f"OBJ_{layout.payloads_bucket}"), f"$O.{layout.payloads_bucket}.>"]


def _client(layout: Layout) -> tuple[list[str], list[str]]:
    p = layout.prefix
    publish = [f"{p}.wf.*.start", f"{p}.wf.*.cmd"]
    for stream in (f"KV_{layout.workflows_bucket}", f"KV_{layout.definitions_bucket}", layout.history_stream):
        publish += _reader(stream)
    publish += _payloads(layout)  # a large workflow input is stored before its start is published
    return publish, [f"{p}.done.>"]


def _admin(layout: Layout) -> tuple[list[str], list[str]]:
    publish, subscribe = _client(layout)
    publish += [f"$KV.{layout.definitions_bucket}.>", f"$KV.{layout.workflows_bucket}.>"]  # register; remove
    for stream in (layout.dead_letter_stream, f"KV_{layout.members_bucket}", layout.emitted_stream):
        publish += _reader(stream)
    return publish, subscribe


def _worker(identity: Identity, layout: Layout) -> tuple[list[str], list[str]]:
    p, tasks = layout.prefix, layout.tasks_stream
    publish: list[str] = []
    for task_type in identity.tasks:
        token = escape_token(task_type)
        publish.append(f"$KV.{layout.limits_bucket}.rate.{token}.*")
        for domain in identity.domains:
            consumer = layout.task_consumer(task_type, domain)
            pair = f"{token}.{domain_token(domain)}"
            publish += [
                f"{p}.wf.*.result.{pair}",
                f"{p}.wf.*.started.{pair}",
                f"$JS.API.CONSUMER.INFO.{tasks}.{consumer}",
                f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.{consumer}",
                f"$JS.ACK.{tasks}.{consumer}.>",
                layout.worker_announce_subject(task_type, domain),
            ]
    publish += _reader(f"KV_{layout.limits_bucket}", ephemeral_reads=False)
    publish.append(f"{p}.dlq.task")  # a task message it cannot read is dead-lettered with the reason
    if identity.payloads:
        publish += _payloads(layout)
    if identity.start_workflows:  # and read them, as the client it then is (not operate them)
        publish.append(f"{p}.wf.*.start")
        publish += _reader(f"KV_{layout.workflows_bucket}") + _reader(f"KV_{layout.definitions_bucket}")
    return publish, []


def permissions(identity: Identity, layout: Layout) -> Permissions:
    """The subjects ``identity`` may publish to and subscribe to: for a node everything in the engine's account;
    for any other identity the allow-lists of its user, which are also what its account imports."""
    if identity.role is Role.NODE:
        return Permissions(publish=(">",), subscribe=(">",))
    publish, subscribe = _base(identity)
    if identity.role is Role.CLIENT:
        more = _client(layout)
    elif identity.role is Role.ADMIN:
        more = _admin(layout)
    else:
        more = _worker(identity, layout)
    return Permissions(publish=_unique(publish + more[0]), subscribe=_unique(subscribe + more[1]))


def _unique(subjects: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(subjects))


def account_name(layout: Layout) -> str:
    """The engine's account: its streams and buckets, and the nodes (the name older versions used for all)."""
    return layout.prefix.upper().replace("-", "_")


def account_of(identity: Identity, layout: Layout) -> str:
    """The NATS account ``identity`` lives in: nodes in the engine's, every other identity in one of its own."""
    if identity.role is Role.NODE:
        return account_name(layout)
    return f"{account_name(layout)}-{identity.role}-{identity.name}"


# Requests whose reply is several messages (a pull request delivers a batch of tasks to its reply subject).
_STREAMED_REPLIES: Final = ("$JS.API.CONSUMER.MSG.NEXT.",)


class Boundary(msgspec.Struct, frozen=True):
    """What crosses from one identity's account into the engine's: the services it imports (everything it may
    publish: the engine answers in the identity's account, so no reply subject of its can name an engine
    stream) and the streams (what it may subscribe to: its inbox for push deliveries, done notices)."""

    account: str
    services: tuple[str, ...]
    streams: tuple[str, ...]


def boundary(identity: Identity, layout: Layout) -> Boundary | None:
    """The imports of a non-node identity's account, exactly its allow-lists; None for a node."""
    if identity.role is Role.NODE:
        return None
    perms = permissions(identity, layout)
    return Boundary(account_of(identity, layout), perms.publish, perms.subscribe)


def render_accounts(identities: Sequence[Identity], layout: Layout) -> str:
    """The ``accounts {}`` block of a nats-server configuration (include it from the server's file).

    The engine's account holds the nodes (and every stream and bucket); each other identity gets an account of
    its own, without JetStream, that imports from the engine exactly the subjects its permissions allow. A
    request it makes is answered in its own account, where nothing is stored, so a reply subject cannot write
    into an engine stream; and two identities share nothing but the engine's exports."""
    names = [identity.name for identity in identities]
    if len(set(names)) != len(names):
        raise AuthError("identity names must be unique")
    engine = account_name(layout)
    boundaries = [(identity, b) for identity in identities if (b := boundary(identity, layout)) is not None]
    services: dict[str, list[str]] = {}
    streams: dict[str, list[str]] = {}
    for _, b in boundaries:
        for subject in b.services:
            services.setdefault(subject, []).append(b.account)
        for subject in b.streams:
            streams.setdefault(subject, []).append(b.account)
    lines = [
        f"# Generated by `partita auth` for the deployment {layout.prefix!r}. Do not edit: re-run `partita auth`.",
        "accounts {",
        f"  {engine}: {{",
        "    jetstream: enabled",
        "    users: [",
        *_users([i for i in identities if i.role is Role.NODE], layout),
        "    ]",
        "    exports: [",
    ]
    for subject, accounts in services.items():
        streamed = ", response_type: stream" if subject.startswith(_STREAMED_REPLIES) else ""
        lines.append(f"      {{ service: {json.dumps(subject)}, accounts: {_list(accounts)}{streamed} }}")
    for subject, accounts in streams.items():
        lines.append(f"      {{ stream: {json.dumps(subject)}, accounts: {_list(accounts)} }}")
    lines += ["    ]", "  }"]
    for identity, b in boundaries:
        lines += [
            f"  {json.dumps(b.account)}: {{",
            "    users: [",
            *_users([identity], layout),
            "    ]",
            "    imports: [",
        ]
        lines += [f"      {{ service: {{ account: {engine}, subject: {json.dumps(s)} }} }}" for s in b.services]
        lines += [f"      {{ stream: {{ account: {engine}, subject: {json.dumps(s)} }} }}" for s in b.streams]
        lines += ["    ]", "  }"]
    lines += ["}", ""]
    return "\n".join(lines)


def _users(identities: Sequence[Identity], layout: Layout) -> list[str]:
    lines: list[str] = []
    for identity in identities:
        perms = permissions(identity, layout)
        lines += [
            f"      # {identity.name} ({identity.role})",
            f"      {{ nkey: {identity.public_key}",
            "        permissions: {",
            f"          publish: {{ allow: {_list(perms.publish)} }}",
            f"          subscribe: {{ allow: {_list(perms.subscribe)} }}",
            "        }",
            "      }",
        ]
    return lines


def _list(subjects: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(subject) for subject in subjects) + "]"


def new_nkey() -> tuple[str, str]:
    """A fresh user nkey: ``(seed, public_key)``. The seed is the secret; the server only needs the key."""
    raw = bytes(nacl.signing.SigningKey.generate())
    seed = nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(seed))
    public_key = pair.public_key.decode()
    pair.wipe()
    return seed.decode(), public_key


def public_key_of(seed: str) -> str:
    """The public key of an nkey seed; :class:`AuthError` if it is not one."""
    try:
        pair = nkeys.from_seed(bytearray(seed.strip().encode()))
    except Exception as exc:  # nkeys raises its own errors and binascii/ValueError for garbage
        raise AuthError(f"not an nkey seed: {type(exc).__name__}") from exc
    public_key = str(pair.public_key.decode())
    pair.wipe()
    return public_key


IDENTITIES_FILE: Final = "identities.json"
ACCOUNTS_FILE: Final = "accounts.conf"


class _Stored(msgspec.Struct, kw_only=True, rename="camel"):
    prefix: str
    identities: list[Identity] = msgspec.field(default_factory=list)


class AuthDirectory:
    """What ``partita auth`` keeps in one directory: ``identities.json`` (names, roles, grants and public keys),
    ``accounts.conf`` (generated from it, for nats-server) and one ``<name>.nk`` seed per identity (mode 0600;
    hand each to its owner and delete it here if you like: only its public key is needed to regenerate)."""

    def __init__(self, directory: str | os.PathLike[str], layout: Layout) -> None:
        self.path = Path(directory)
        self.layout = layout

    @property
    def accounts_file(self) -> Path:
        return self.path / ACCOUNTS_FILE

    def seed_file(self, name: str) -> Path:
        return self.path / f"{name}.nk"

    def identities(self) -> list[Identity]:
        file = self.path / IDENTITIES_FILE
        if not file.exists():
            return []
        try:
            stored = msgspec.json.decode(file.read_bytes(), type=_Stored)
        except (msgspec.DecodeError, AuthError) as exc:
            raise AuthError(f"{file}: {exc}") from exc
        if stored.prefix != self.layout.prefix:
            raise AuthError(f"{file} is for the deployment {stored.prefix!r}, not {self.layout.prefix!r} (--prefix)")
        return stored.identities

    def get(self, name: str) -> Identity | None:
        return next((identity for identity in self.identities() if identity.name == name), None)

    def add(self, identity_of: Callable[[str], Identity], name: str, *, replace: bool = False) -> Identity:
        """Add (or, with ``replace``, re-grant keeping the key) the identity ``identity_of(public_key)``. Nothing
        is written unless the identity and the whole configuration are valid."""
        identities = self.identities()
        existing = next((i for i in identities if i.name == name), None)
        if existing is not None and not replace:
            raise AuthError(f"identity {name!r} exists; remove it first, or pass --replace to change its grants")
        seed: str | None = None
        if existing is None:
            seed, public_key = new_nkey()
        else:
            public_key = existing.public_key
        identity = identity_of(public_key)  # validates the name and the grants
        if identity.name != name:
            raise AuthError(f"identity {identity.name!r} was asked for as {name!r}")
        identities = [i for i in identities if i.name != name] + [identity]
        render_accounts(identities, self.layout)  # refuses what nats-server would not load
        self.path.mkdir(parents=True, exist_ok=True)
        if seed is not None:
            _write_secret(self.seed_file(name), seed + "\n")
        self._save(identities)
        return identity

    def render(self) -> int:
        """Write ``accounts.conf`` again from ``identities.json`` (after an upgrade changed what is generated);
        the number of identities in it."""
        identities = self.identities()
        self._save(identities)
        return len(identities)

    def remove(self, name: str) -> bool:
        identities = self.identities()
        kept = [i for i in identities if i.name != name]
        if len(kept) == len(identities):
            return False
        self._save(kept)
        self.seed_file(name).unlink(missing_ok=True)
        return True

    def _save(self, identities: list[Identity]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        accounts = render_accounts(identities, self.layout)  # first: refuses what nats-server would not load
        stored = _Stored(prefix=self.layout.prefix, identities=identities)
        _write_atomic(self.path / IDENTITIES_FILE, msgspec.json.format(msgspec.json.encode(stored)) + b"\n")
        _write_atomic(self.accounts_file, accounts.encode())


def _write_secret(path: Path, text: str) -> None:
    """Owner-only from the first byte, never through a symlink, and complete or not there at all."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


__all__ = [
    "AuthDirectory",
    "AuthError",
    "Boundary",
    "Identity",
    "Permissions",
    "Role",
    "account_name",
    "account_of",
    "boundary",
    "inbox_prefix_for",
    "new_nkey",
    "permissions",
    "public_key_of",
    "render_accounts",
]
