"""``partita migrate events``: move an events stream made by an older version off message schedules (see
``transport/migrate.py``). Run it with every node stopped, as a node identity (it deletes and makes streams)."""

from __future__ import annotations

import argparse
import sys

from partita.transport import Layout, connect
from partita.transport.migrate import migrate_events, migration_needed

from .auth_commands import credentials
from .membership import read_cluster


def add_migrate_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = commands.add_parser("migrate", help="bring what an older version made up to this one")
    sub = migrate.add_subparsers(dest="migrate_command", required=True)
    events = sub.add_parser(
        "events",
        help="make the events stream again without message schedules (stop every node first; see docs/security.md)",
    )
    events.add_argument("--force", action="store_true", help="even if nodes still look live (their heartbeats)")
    events.set_defaults(handler=cmd_migrate_events)


async def cmd_migrate_events(args: argparse.Namespace) -> int:
    layout = Layout(prefix=args.prefix)
    conn = await connect(args.nats, name="partita-migrate", credentials=credentials(args))
    try:
        if not await migration_needed(conn, layout):
            print(f"{layout.events_stream} has no message schedules: nothing to migrate")
            return 0
        live = [member.name for member in (await read_cluster(conn, layout)).members if member.live]
        if live and not args.force:
            print(f"error: stop every node first; live: {', '.join(live)} (or --force)", file=sys.stderr)
            return 2
        await migrate_events(conn, layout)
    finally:
        await conn.aclose()
    return 0
