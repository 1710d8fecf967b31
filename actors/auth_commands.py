"""``partita auth``: least-privilege NATS identities for a deployment, and the connection options every
command takes (``--nkey``, ``--creds``, ``--user``/``--password``, ``--tls-ca``/``--tls-cert``/``--tls-key``).

See docs/security.md for the model. The commands only write files; nats-server reads ``accounts.conf``
(include it from the server's configuration, then restart the server: a reload does not wire the imports of
a new account, nats-io/nats-server#8560).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable

from partita.transport import AuthDirectory, AuthError, Credentials, Identity, Layout, Role, permissions
from partita.transport.auth import account_name, account_of

DEFAULT_AUTH_DIR = ".partita/auth"
NO_DOMAIN_FLAG = "--no-domain"


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("NATS authentication and TLS (see docs/security.md)")
    group.add_argument("--nkey", default=env("PARTITA_NATS_NKEY"), help="nkey seed file (env PARTITA_NATS_NKEY)")
    group.add_argument("--creds", default=env("PARTITA_NATS_CREDS"), help="NATS .creds file (env PARTITA_NATS_CREDS)")
    group.add_argument("--user", default=env("PARTITA_NATS_USER"), help="user (env PARTITA_NATS_USER)")
    group.add_argument(
        "--password", default=env("PARTITA_NATS_PASSWORD"), help="password (env PARTITA_NATS_PASSWORD; prefer it)"
    )
    group.add_argument(
        "--tls-ca", default=env("PARTITA_NATS_TLS_CA"), help="CA of the server (env PARTITA_NATS_TLS_CA)"
    )
    group.add_argument(
        "--tls-cert", default=env("PARTITA_NATS_TLS_CERT"), help="client certificate (env PARTITA_NATS_TLS_CERT)"
    )
    group.add_argument("--tls-key", default=env("PARTITA_NATS_TLS_KEY"), help="client key (env PARTITA_NATS_TLS_KEY)")


def credentials(args: argparse.Namespace) -> Credentials:
    return Credentials(
        nkey=args.nkey or None,
        creds=args.creds or None,
        user=args.user or None,
        password=args.password or None,
        tls_ca=args.tls_ca or None,
        tls_cert=args.tls_cert or None,
        tls_key=args.tls_key or None,
    )


def add_auth_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = commands.add_parser("auth", help="generate least-privilege NATS identities (nkeys) and server accounts")
    auth.add_argument(
        "--dir",
        default=os.environ.get("PARTITA_AUTH_DIR", DEFAULT_AUTH_DIR),
        help="where identities, seeds and accounts.conf live (env PARTITA_AUTH_DIR; default %(default)s)",
    )
    sub = auth.add_subparsers(dest="auth_command", required=True)
    init = sub.add_parser("init", help="create the identities 'node', 'admin' and 'client' (those missing)")
    init.set_defaults(handler=cmd_auth_init)
    for role in (Role.NODE, Role.ADMIN, Role.CLIENT):
        add = sub.add_parser(f"add-{role}", help=f"add a {role} identity")
        add.add_argument("name")
        add.add_argument("--replace", action="store_true", help="change an existing identity's grants, keep its key")
        add.set_defaults(handler=cmd_auth_add, role=role)
    worker = sub.add_parser("add-worker", help="add a worker application granted task types and domains")
    worker.add_argument("name")
    worker.add_argument("--task", action="append", required=True, help="a task type it runs (repeatable)")
    worker.add_argument("--domain", action="append", default=[], help="a domain it serves (repeatable)")
    worker.add_argument(
        NO_DOMAIN_FLAG, action="store_true", help="also the queues without a domain (the default if no --domain)"
    )
    worker.add_argument("--start-workflows", action="store_true", help="it may also start workflows and read them")
    worker.add_argument("--payloads", action="store_true", help="it may read and write large payloads")
    worker.add_argument("--replace", action="store_true", help="change an existing identity's grants, keep its key")
    worker.set_defaults(handler=cmd_auth_add, role=Role.WORKER)
    remove = sub.add_parser("remove", help="remove an identity (and its seed file here)")
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_auth_remove)
    render = sub.add_parser("render", help="write accounts.conf again from identities.json (after an upgrade)")
    render.set_defaults(handler=cmd_auth_render)
    listing = sub.add_parser("list", help="identities, roles and grants")
    listing.set_defaults(handler=cmd_auth_list)
    show = sub.add_parser("permissions", help="the subjects an identity may publish and subscribe to")
    show.add_argument("name")
    show.set_defaults(handler=cmd_auth_permissions)


def _directory(args: argparse.Namespace) -> AuthDirectory:
    return AuthDirectory(args.dir, Layout(prefix=args.prefix))


def _plain_identity(role: Role, public_key: str) -> Identity:
    return Identity(name=str(role), role=role, public_key=public_key)


def _identity_factory(args: argparse.Namespace) -> Callable[[str], Identity]:
    role: Role = args.role
    if role is not Role.WORKER:
        return lambda key: Identity(name=args.name, role=role, public_key=key)
    domains: list[str | None] = list(dict.fromkeys(args.domain))
    if args.no_domain or not domains:
        domains.append(None)
    return lambda key: Identity(
        name=args.name,
        role=role,
        public_key=key,
        tasks=tuple(dict.fromkeys(args.task)),
        domains=tuple(domains),
        start_workflows=args.start_workflows,
        payloads=args.payloads,
    )


def _report(directory: AuthDirectory, identity: Identity) -> None:
    print(f"{identity.name} ({_describe(identity)}): seed {directory.seed_file(identity.name)}")


def _describe(identity: Identity) -> str:
    if identity.role is not Role.WORKER:
        return str(identity.role)
    pairs = [f"{t}@{d}" if d is not None else t for t in identity.tasks for d in identity.domains]
    extras = [
        name for name, on in (("start-workflows", identity.start_workflows), ("payloads", identity.payloads)) if on
    ]
    return f"worker: {', '.join(pairs)}" + (f"; {', '.join(extras)}" if extras else "")


def _done(directory: AuthDirectory) -> None:
    print(
        f"wrote {directory.accounts_file}: include it in nats-server's configuration, then restart the servers "
        "(one at a time; a reload does not wire a new account's imports)",
        file=sys.stderr,
    )


async def cmd_auth_init(args: argparse.Namespace) -> int:
    directory = _directory(args)
    for role in (Role.NODE, Role.ADMIN, Role.CLIENT):
        if directory.get(str(role)) is None:
            _report(directory, directory.add(functools.partial(_plain_identity, role), str(role)))
    directory.render()  # what this version generates, for identities made by an older one too
    _done(directory)
    return 0


async def cmd_auth_render(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        if not directory.identities():
            print(f"error: no identities in {directory.path} (run `partita auth init` first)", file=sys.stderr)
            return 2
        count = directory.render()
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = account_name(directory.layout)
    print(f"{count} identities: the nodes in account {engine}, every other identity in an account of its own")
    _done(directory)
    return 0


async def cmd_auth_add(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        identity = directory.add(_identity_factory(args), args.name, replace=args.replace)
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report(directory, identity)
    _done(directory)
    return 0


async def cmd_auth_remove(args: argparse.Namespace) -> int:
    directory = _directory(args)
    if not directory.remove(args.name):
        print(f"error: no identity {args.name!r} in {directory.path}", file=sys.stderr)
        return 2
    print(f"removed {args.name}")
    _done(directory)
    return 0


async def cmd_auth_list(args: argparse.Namespace) -> int:
    identities = _directory(args).identities()
    if args.json:
        print(json.dumps([{"name": i.name, "role": str(i.role), "publicKey": i.public_key} for i in identities]))
    for identity in identities if not args.json else ():
        print(f"{identity.name:<24} {_describe(identity)}  {identity.public_key}")
    return 0


async def cmd_auth_permissions(args: argparse.Namespace) -> int:
    directory = _directory(args)
    identity = directory.get(args.name)
    if identity is None:
        print(f"error: no identity {args.name!r} in {directory.path}", file=sys.stderr)
        return 2
    perms = permissions(identity, directory.layout)
    shown = {"account": account_of(identity, directory.layout), "publish": perms.publish, "subscribe": perms.subscribe}
    print(json.dumps(shown, indent=2))
    return 0
