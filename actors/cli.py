"""The ``partita`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
import msgspec
import structlog

from partita.schemas import (
    CommandAnswer,
    CommandNotConfirmed,
    DefinitionError,
    PartitaError,
    TaskDef,
    UnknownDefinition,
    Workflow,
    WorkflowDef,
    WorkflowError,
    WorkflowNotFound,
    WorkflowStatus,
    WorkflowTimeout,
)
from partita.transport import (
    DEFAULT_URL,
    AuthDirectory,
    AuthError,
    Client,
    ConnectionFailed,
    Credentials,
    EmbeddedServer,
    Layout,
    Role,
    connect,
    local_ca,
    read_dead_letters,
)
from partita.transport.codec import encode_json, workflow_json

from .auth_commands import add_auth_commands, add_connection_options, credentials
from .egress import ALLOW_ENV, LOOPBACK, parse_entry
from .health import HealthServer, parse_address
from .logs import configure_logging
from .membership import read_cluster
from .migrate_commands import add_migrate_commands
from .node import DECISION_ATTEMPTS, Node
from .reconciler import RECONCILE_AFTER_SECONDS, RECONCILE_RATE
from .schema_commands import add_schema_commands
from .worker import load_workers, run_workers

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_NOT_COMPLETED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def _read_json_arg(value: str | None, what: str) -> object:
    """``JSON`` or ``@file`` (``@-`` = stdin)."""
    if value is None:
        return None
    if value.startswith("@"):
        path = value[1:]
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    else:
        text = value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(what, [f"not valid JSON: {exc}"]) from exc


async def _wait_for_signal(on_first: Callable[[], None]) -> None:
    """First SIGINT/SIGTERM: graceful stop. Second: return, so the caller cancels."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for signum in signals:
            count += 1
            log.info("signal_received", signal=signal.Signals(signum).name, count=count)
            if count == 1:
                on_first()
            else:
                return


# --- commands ----------------------------------------------------------------------------------------


async def cmd_node(args: argparse.Namespace) -> int:
    try:
        http_allow = _http_allow(args, default=())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    conn = await connect(args.nats, name="partita-node", credentials=credentials(args))
    try:
        node = Node(
            conn,
            Layout(prefix=args.prefix),
            name=args.name,
            replicas=args.replicas,
            expression_env=_expression_env(),
            history=not args.no_history,
            decision_attempts=args.decision_attempts,
            reconcile_after=args.reconcile_after,
            reconcile_rate=args.reconcile_rate,
            http_allow=http_allow,
        )
        if args.health is None:
            await _run_until_signal(node.run, node.request_stop)
        else:
            health = HealthServer(node, *args.health)

            async def run_with_health() -> None:
                async with anyio.create_task_group() as tg:
                    await tg.start(health.run)
                    await node.run()
                    tg.cancel_scope.cancel()

            await _run_until_signal(run_with_health, node.request_stop)
    finally:
        with anyio.CancelScope(shield=True):
            await conn.aclose()
    return EXIT_OK


def _health_address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _http_allow_entry(text: str) -> str:
    try:
        parse_entry(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _add_http_allow(parser: argparse.ArgumentParser, default: Sequence[str]) -> None:
    shown = ", ".join(default) if default else "none, public addresses only"
    parser.add_argument(
        "--http-allow",
        action="append",
        type=_http_allow_entry,
        default=None,
        metavar="CIDR_OR_HOST",
        help="a network (10.0.0.0/8), address or host name HTTP tasks may reach although it is internal "
        "(loopback, private, link-local such as the cloud metadata service 169.254.169.254, ...). Repeatable; "
        f"replaces env {ALLOW_ENV} (comma-separated), and either replaces the default (default: {shown})",
    )


def _http_allow(args: argparse.Namespace, *, default: Sequence[str]) -> list[str]:
    """--http-allow if given, else PARTITA_HTTP_ALLOW (comma-separated) if set, else ``default``."""
    if args.http_allow is not None:
        return list(args.http_allow)
    if ALLOW_ENV not in os.environ:
        return list(default)
    entries = [entry.strip() for entry in os.environ[ALLOW_ENV].split(",") if entry.strip()]
    for entry in entries:
        try:
            parse_entry(entry)
        except ValueError as exc:
            raise ValueError(f"{ALLOW_ENV}: {exc}") from exc
    return entries


def _expression_env() -> list[str]:
    """PARTITA_EXPRESSION_ENV: comma-separated names of environment variables expressions may read."""
    return [name.strip() for name in os.environ.get("PARTITA_EXPRESSION_ENV", "").split(",") if name.strip()]


async def _run_until_signal(run: Callable[[], Awaitable[None]], request_stop: Callable[[], None]) -> None:
    """Run a long-lived component; the first signal asks it to stop gracefully, a second cancels it."""
    async with anyio.create_task_group() as tg:

        async def signals() -> None:
            await _wait_for_signal(request_stop)
            tg.cancel_scope.cancel()

        tg.start_soon(signals)
        await run()
        tg.cancel_scope.cancel()  # stopped gracefully: stop listening for signals


async def cmd_dev(args: argparse.Namespace) -> int:
    try:
        http_allow = _http_allow(args, default=LOOPBACK)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    data = Path(await anyio.Path(args.data).resolve())
    extra, node_credentials = "", Credentials()
    if args.tls:
        files = local_ca(data.parent / "tls")
        extra += files.server_block(verify_clients=True)
        node_credentials = Credentials(
            tls_ca=str(files.ca), tls_cert=str(files.client_cert), tls_key=str(files.client_key)
        )
        print(
            "partita dev: TLS on (mutual); point clients at the local CA and client certificate:\n"
            f"  export PARTITA_NATS_TLS_CA={files.ca} PARTITA_NATS_TLS_CERT={files.client_cert} "
            f"PARTITA_NATS_TLS_KEY={files.client_key}",
            file=sys.stderr,
        )
    if args.auth is not None:
        directory = AuthDirectory(args.auth, Layout(prefix=args.prefix))
        node_identity = next((i for i in directory.identities() if i.role is Role.NODE), None)
        if node_identity is None:
            print(
                f"error: {args.auth} has no node identity: run `partita auth --dir {args.auth} init`", file=sys.stderr
            )
            return EXIT_USAGE
        extra += directory.accounts_file.read_text()
        node_credentials = dataclasses.replace(node_credentials, nkey=str(directory.seed_file(node_identity.name)))
        print(
            f"partita dev: authentication on (identities in {args.auth}; this node is {node_identity.name!r})",
            file=sys.stderr,
        )
    server = EmbeddedServer(data, port=args.port, extra_config=extra)
    try:
        await server.start()
    except PartitaError as exc:
        print(f"error: cannot start the embedded nats-server on port {args.port}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        conn = await connect(server.url, name="partita-dev", credentials=node_credentials)
        try:
            print(f"partita dev: NATS with JetStream at {server.url} (data in {data}); Ctrl-C stops", file=sys.stderr)
            node = Node(conn, Layout(prefix=args.prefix), expression_env=_expression_env(), http_allow=http_allow)
            await _run_until_signal(node.run, node.request_stop)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.aclose()
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop()
    return EXIT_OK


async def cmd_worker(args: argparse.Namespace) -> int:
    sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the current directory are importable
    specs = load_workers(args.modules)
    if not specs:
        print(f"error: no @worker_task functions found in {', '.join(args.modules)}", file=sys.stderr)
        return EXIT_USAGE
    conn = await connect(args.nats, name="partita-worker", credentials=credentials(args))
    try:
        stop = anyio.Event()

        async def run() -> None:
            await run_workers(conn, specs, Layout(prefix=args.prefix), stop=stop, stop_grace=args.grace)

        await _run_until_signal(run, stop.set)
    finally:
        with anyio.CancelScope(shield=True):
            await conn.aclose()
    return EXIT_OK


async def _client(args: argparse.Namespace) -> Client:
    return await Client.connect(args.nats, prefix=args.prefix, credentials=credentials(args))


async def cmd_def_register(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        for file in args.files:
            text = sys.stdin.read() if file == "-" else await anyio.Path(file).read_text()
            stored = await client.register_json(text, source=file)
            for definition in stored:
                print(f"registered {_describe(definition)} from {file}")
    return EXIT_OK


def _describe(definition: TaskDef | WorkflowDef) -> str:
    if isinstance(definition, WorkflowDef):
        return f"workflow {definition.name} v{definition.version} ({len(definition.iter_tasks())} tasks)"
    return f"task {definition.name}"


async def cmd_def_list(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        definitions = await client.definitions.all()
    if args.json:
        print(encode_json(definitions).decode())
    else:
        for definition in definitions:
            print(_describe(definition))
    return EXIT_OK


async def cmd_workflow_start(args: argparse.Namespace) -> int:
    workflow_input = _read_json_arg(args.input, "--input") or {}
    task_to_domain = _read_json_arg(args.task_to_domain, "--task-to-domain") or {}
    if not isinstance(workflow_input, dict):
        print("error: --input must be a JSON object", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(task_to_domain, dict) or not all(isinstance(v, str) for v in task_to_domain.values()):
        print('error: --task-to-domain must be a JSON object of strings, e.g. {"*": "john"}', file=sys.stderr)
        return EXIT_USAGE
    async with await _client(args) as client:
        workflow_id = await client.start(
            args.name,
            workflow_input,
            version=args.version,
            correlation_id=args.correlation_id,
            task_to_domain=task_to_domain,
            idempotency_key=args.idempotency_key,
            idempotency_strategy=args.idempotency_strategy,
        )
        if not args.wait:
            print(json.dumps({"workflowId": workflow_id}) if args.json else workflow_id)
            return EXIT_OK
        try:
            workflow = await client.wait(workflow_id, within=args.timeout)
        except WorkflowTimeout as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOT_COMPLETED
    _print_workflow(workflow, as_json=args.json)
    return EXIT_OK if workflow.status is WorkflowStatus.COMPLETED else EXIT_NOT_COMPLETED


async def cmd_workflow_get(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        try:
            workflow = await client.get(args.workflow_id)
        except WorkflowNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOT_COMPLETED
    _print_workflow(workflow, as_json=args.json)
    return EXIT_OK


def _print_workflow(workflow: Workflow, *, as_json: bool) -> None:
    if as_json:
        print(workflow_json(workflow).decode())
        return
    print(f"{workflow.workflow_name} v{workflow.workflow_version}  {workflow.workflow_id}  {workflow.status}")
    if workflow.reason_for_incompletion:
        print(f"  reason: {workflow.reason_for_incompletion}")
    for task in workflow.tasks:
        took = f"{task.end_time - task.start_time} ms" if task.end_time and task.start_time else ""
        domain = f" domain={task.domain}" if task.domain else ""
        print(
            f"  {task.seq:>3} {task.reference_task_name:<24} {task.status:<26} retry={task.retry_count}{domain} {took}"
        )
    print("  output: " + msgspec.json.encode(workflow.output).decode())


_DONE = {
    "pause": "paused",
    "resume": "resumed",
    "retry": "retried",
    "restart": "restarted",
    "rerun": "reran",
    "skip-task": "skipped a task of",
    "terminate": "terminated",
    "complete": "completed a task of",
    "fail": "failed a task of",
}


def _say(verb: str, workflow_id: str, answer: CommandAnswer) -> None:
    """One line saying what a command did, as the node that applied it answered."""
    status = f" (now {answer.status})" if answer.status is not None else ""
    print(answer.message or f"{_DONE[verb]} workflow {workflow_id}{status}")


async def cmd_workflow_operate(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        answer = await _operate(client, args)
    _say(args.workflow_command, args.workflow_id, answer)
    return EXIT_OK


async def _operate(client: Client, args: argparse.Namespace) -> CommandAnswer:
    command = args.workflow_command
    if command == "pause":
        return await client.pause(args.workflow_id)
    if command == "resume":
        return await client.resume(args.workflow_id)
    if command == "retry":
        return await client.retry(args.workflow_id)
    if command == "skip-task":
        output = _read_json_arg(args.output, "--output")
        task_input = _read_json_arg(args.input, "--input")
        return await client.skip_task(
            args.workflow_id,
            args.task_ref,
            task_input=task_input if isinstance(task_input, dict) else None,
            task_output=output if isinstance(output, dict) else None,
        )
    if command == "rerun":
        new_input = _read_json_arg(args.input, "--input")
        task_input = _read_json_arg(args.task_input, "--task-input")
        return await client.rerun(
            args.workflow_id,
            from_task_id=args.from_task,
            workflow_input=new_input if isinstance(new_input, dict) else None,
            task_input=task_input if isinstance(task_input, dict) else None,
        )
    return await client.restart(args.workflow_id, use_latest_definitions=args.use_latest)


async def cmd_workflow_list(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        workflows = await client.list(
            name=args.name, status=args.status, correlation_id=args.correlation_id, limit=args.limit
        )
    if args.json:
        print(json.dumps([msgspec.to_builtins(_summary(w)) for w in workflows]))
    else:
        for workflow in workflows:
            print(f"{workflow.workflow_id}  {workflow.workflow_name} v{workflow.workflow_version}  {workflow.status}")
    return EXIT_OK


def _summary(workflow: Workflow) -> dict[str, object]:
    return {
        "workflowId": workflow.workflow_id,
        "workflowName": workflow.workflow_name,
        "workflowVersion": workflow.workflow_version,
        "status": str(workflow.status),
        "correlationId": workflow.correlation_id,
        "createTime": workflow.create_time,
        "endTime": workflow.end_time,
        "reasonForIncompletion": workflow.reason_for_incompletion,
    }


async def cmd_workflow_history(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        entries = await client.history(args.workflow_id)
    if args.json:
        print(json.dumps([msgspec.to_builtins(entry) for entry in entries]))
        return EXIT_OK
    if not entries:
        print(f"error: no history for workflow {args.workflow_id!r}", file=sys.stderr)
        return EXIT_NOT_COMPLETED
    for entry in entries:
        when = dt.datetime.fromtimestamp(entry.time / 1000, dt.UTC).isoformat(timespec="milliseconds")
        status = str(entry.status)
        if entry.previous_status is not None and entry.previous_status != entry.status:
            status = f"{entry.previous_status} -> {entry.status}"
        print(f"{when}  {entry.cause}  [{status}]")
        for task in entry.tasks:
            change = f"{task.previous_status} -> {task.status}" if task.previous_status else f"new, {task.status}"
            retry = f" retry={task.retry_count}" if task.retry_count else ""
            reason = f": {task.reason_for_incompletion}" if task.reason_for_incompletion else ""
            print(f"    {task.reference_task_name} ({task.task_type}) {change}{retry}{reason}")
        if entry.reason_for_incompletion:
            print(f"    reason: {entry.reason_for_incompletion}")
    return EXIT_OK


async def cmd_dlq_list(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        letters = await read_dead_letters(client.conn, client.layout, args.limit)
    if args.json:
        print(json.dumps([msgspec.to_builtins(letter) for letter in letters]))
    else:
        for letter in letters:
            print(f"#{letter.seq} {letter.subject} (stream seq {letter.stream_seq}): {letter.reason}")
            print(f"    {letter.data[:200]}")
    return EXIT_OK


async def cmd_cluster(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        status = await read_cluster(client.conn, client.layout)
    if args.json:
        print(json.dumps(msgspec.to_builtins(status)))
        return EXIT_OK
    live = [m for m in status.members if m.live]
    print(f"members: {len(live)} live, {len(status.members) - len(live)} silent")
    for m in status.members:
        state = "live" if m.live else "silent"
        print(f"  {m.name:<28} {state:<6} {m.host} pid {m.pid}, heartbeat {m.heartbeat_age_seconds} s ago, "
              f"{len(m.partitions)} partitions, {m.in_flight} events in flight")  # fmt: skip
    unowned = [p.partition for p in status.partitions if p.owner is None]
    waiting = sum(p.waiting for p in status.partitions)
    print(f"partitions: {len(status.partitions)}, unowned: {len(unowned)}, events waiting: {waiting}")
    for part in status.partitions:
        if args.all or part.owner is None or part.waiting:
            print(f"  {part.partition:>4}  {part.owner or '(none)':<28} {part.waiting} waiting")
    return EXIT_OK


async def cmd_workflow_remove(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        await client.remove(args.workflow_id)
    return EXIT_OK


async def cmd_workflow_terminate(args: argparse.Namespace) -> int:
    async with await _client(args) as client:
        answer = await client.terminate(args.workflow_id, args.reason)
    _say("terminate", args.workflow_id, answer)
    return EXIT_OK


async def cmd_task_update(args: argparse.Namespace) -> int:
    output = _read_json_arg(args.output, "--output") or {}
    if not isinstance(output, dict):
        print("error: --output must be a JSON object", file=sys.stderr)
        return EXIT_USAGE
    async with await _client(args) as client:
        if args.task_command == "complete":
            answer = await client.complete_task(args.workflow_id, args.task_ref, output)
        else:
            answer = await client.fail_task(
                args.workflow_id, args.task_ref, args.reason or "failed by operator", output, terminal=args.terminal
            )
        if not args.json:
            _say(args.task_command, args.workflow_id, answer)
        if not args.wait:
            return EXIT_OK
        try:
            workflow = await client.wait(args.workflow_id, within=args.timeout)
        except WorkflowTimeout as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOT_COMPLETED
    _print_workflow(workflow, as_json=args.json)
    return EXIT_OK if workflow.status is WorkflowStatus.COMPLETED else EXIT_NOT_COMPLETED


# --- parser ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partita", description="Conductor-compatible workflows on NATS JetStream", allow_abbrev=False
    )
    parser.add_argument(
        "--nats",
        default=os.environ.get("PARTITA_NATS_URL", DEFAULT_URL),
        help="NATS server URL(s), comma-separated (env PARTITA_NATS_URL; default %(default)s)",
    )
    parser.add_argument(
        "--prefix",
        default=os.environ.get("PARTITA_PREFIX", "partita"),
        help="subject/stream prefix of the deployment (env PARTITA_PREFIX; default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=os.environ.get("PARTITA_LOG_FORMAT", "auto"),
        help="log renderer (env PARTITA_LOG_FORMAT; auto = console on a TTY, JSON otherwise)",
    )
    parser.add_argument(
        "--log-level", default=os.environ.get("PARTITA_LOG_LEVEL", "INFO"), help="env PARTITA_LOG_LEVEL"
    )
    add_connection_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    add_auth_commands(commands)
    add_migrate_commands(commands)
    add_schema_commands(commands)

    dev = commands.add_parser("dev", help="embedded nats-server (JetStream) plus a node, in the foreground")
    dev.add_argument("--data", default=os.environ.get("PARTITA_DATA_DIR", ".partita/data"), help="JetStream store")
    dev.add_argument("--port", type=int, default=4222, help="NATS port on 127.0.0.1 (default %(default)s)")
    dev.add_argument("--tls", action="store_true", help="TLS with a local CA (certificates next to --data)")
    dev.add_argument("--auth", default=None, metavar="DIR", help="require the identities of `partita auth --dir DIR`")
    _add_http_allow(dev, default=LOOPBACK)
    dev.set_defaults(handler=cmd_dev)

    node = commands.add_parser("node", help="run an actor node (workflow actors) against NATS")
    node.add_argument("--name", default=None, help="node name in logs (default: node-<host>-<pid>)")
    node.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ["PARTITA_REPLICAS"]) if os.environ.get("PARTITA_REPLICAS") else None,
        help="bring streams and buckets to N replicas: 3 on a 3-node cluster (env PARTITA_REPLICAS; "
        "default: create missing ones with 1, leave existing ones as they are)",
    )
    node.add_argument(
        "--health",
        type=_health_address,
        default=os.environ.get("PARTITA_HEALTH") or None,  # a string default goes through type= too
        metavar="HOST:PORT",
        help="serve /healthz and /readyz over HTTP here, e.g. 127.0.0.1:8080 (env PARTITA_HEALTH; default: off)",
    )
    node.add_argument(
        "--no-history",
        action="store_true",
        help="do not record transitions in the history stream (one publish less per event)",
    )
    node.add_argument(
        "--decision-attempts",
        type=_positive_int,
        default=DECISION_ATTEMPTS,
        metavar="N",
        help="an event whose decision fails (an engine bug) is tried N times, backing off, then dead-lettered "
        "and its workflow FAILED with the reason (default %(default)s)",
    )
    node.add_argument(
        "--reconcile-after",
        type=_positive_float,
        default=RECONCILE_AFTER_SECONDS,
        metavar="SECONDS",
        help="audit a running workflow once its state is this old, and re-drive it if nothing durable would "
        "move it (default %(default)s)",
    )
    node.add_argument(
        "--reconcile-rate",
        type=_positive_float,
        default=RECONCILE_RATE,
        metavar="PER_SECOND",
        help="audit at most this many running workflows a second on this node (default %(default)s)",
    )
    _add_http_allow(node, default=())
    node.set_defaults(handler=cmd_node)

    worker = commands.add_parser("worker", help="run the @worker_task functions of the given modules")
    worker.add_argument("modules", nargs="+", help="importable module names, e.g. myapp.workers")
    worker.add_argument("--grace", type=float, default=30.0, help="seconds running tasks get on shutdown")
    worker.set_defaults(handler=cmd_worker)

    definitions = commands.add_parser("def", help="task and workflow definitions").add_subparsers(
        dest="def_command", required=True
    )
    register = definitions.add_parser("register", help="register Conductor JSON (WorkflowDef, TaskDef or a list)")
    register.add_argument("files", nargs="+", help="JSON files ('-' = stdin)")
    register.set_defaults(handler=cmd_def_register)
    listing = definitions.add_parser("list", help="list registered definitions")
    listing.set_defaults(handler=cmd_def_list)

    workflow = commands.add_parser("workflow", help="start and inspect workflows").add_subparsers(
        dest="workflow_command", required=True
    )
    start = workflow.add_parser("start", help="publish a start-workflow message")
    start.add_argument("name")
    start.add_argument("--version", type=int, default=None, help="definition version (default: latest)")
    start.add_argument("--input", default=None, help="JSON object, or @file, or @- for stdin")
    start.add_argument("--correlation-id", default=None)
    start.add_argument("--task-to-domain", default=None, help='JSON object, e.g. {"*": "john"}')
    start.add_argument("--idempotency-key", default=None, help="the same key yields the same workflow")
    start.add_argument(
        "--idempotency-strategy",
        default="RETURN_EXISTING",
        choices=("RETURN_EXISTING", "FAIL", "FAIL_ON_RUNNING"),
        help="what a repeated key does (default %(default)s)",
    )
    start.add_argument("--wait", action="store_true", help="wait for the end; exit 0 only if COMPLETED")
    start.add_argument("--timeout", type=float, default=None, help="with --wait: give up after S seconds")
    start.set_defaults(handler=cmd_workflow_start)
    for verb, text in (
        ("pause", "pause a running workflow (running tasks finish, nothing new starts)"),
        ("resume", "resume a paused workflow"),
        ("retry", "retry a failed, timed-out or terminated workflow from its failed tasks"),
        ("restart", "run an ended workflow again from the start (same id and input)"),
    ):
        operation = workflow.add_parser(verb, help=text)
        operation.add_argument("workflow_id")
        if verb == "restart":
            operation.add_argument("--use-latest", action="store_true", help="with the latest definition")
        operation.set_defaults(handler=cmd_workflow_operate)
    skip = workflow.add_parser("skip-task", help="skip a task of a running workflow before it is scheduled")
    skip.add_argument("workflow_id")
    skip.add_argument("task_ref")
    skip.add_argument("--input", default=None, help="the skipped task's input (JSON or @file)")
    skip.add_argument("--output", default=None, help="the skipped task's output (JSON or @file)")
    skip.set_defaults(handler=cmd_workflow_operate)
    rerun = workflow.add_parser("rerun", help="run an ended workflow again from a task, or from the start")
    rerun.add_argument("workflow_id")
    rerun.add_argument("--from-task", default=None, help="the taskId to run again (later tasks are dropped)")
    rerun.add_argument("--input", default=None, help="new workflow input (JSON or @file)")
    rerun.add_argument("--task-input", default=None, help="new input for that task (JSON or @file)")
    rerun.set_defaults(handler=cmd_workflow_operate)
    listing_wf = workflow.add_parser("list", help="list workflows, newest first")
    listing_wf.add_argument("--name", default=None)
    listing_wf.add_argument("--status", default=None, choices=[str(s) for s in WorkflowStatus])
    listing_wf.add_argument("--correlation-id", default=None)
    listing_wf.add_argument("--limit", type=int, default=100)
    listing_wf.set_defaults(handler=cmd_workflow_list)
    remove = workflow.add_parser("remove", help="delete an ended workflow's record")
    remove.add_argument("workflow_id")
    remove.set_defaults(handler=cmd_workflow_remove)
    terminate = workflow.add_parser("terminate", help="terminate a running workflow")
    terminate.add_argument("workflow_id")
    terminate.add_argument("--reason", default=None)
    terminate.set_defaults(handler=cmd_workflow_terminate)
    cluster = commands.add_parser("cluster", help="nodes, the partitions each owns, and the lag of each partition")
    cluster.add_argument("--all", action="store_true", help="list every partition (default: unowned or lagging)")
    cluster.set_defaults(handler=cmd_cluster)

    dlq = commands.add_parser("dlq", help="dead letters: messages nothing could process").add_subparsers(
        dest="dlq_command", required=True
    )
    dlq_list = dlq.add_parser("list", help="the newest dead letters, with their reasons")
    dlq_list.add_argument("--limit", type=int, default=50)
    dlq_list.set_defaults(handler=cmd_dlq_list)
    tasks = commands.add_parser("task", help="complete or fail a pending task (WAIT, HUMAN, any)").add_subparsers(
        dest="task_command", required=True
    )
    for verb, text in (("complete", "complete the pending task"), ("fail", "fail the pending task")):
        update = tasks.add_parser(verb, help=text)
        update.add_argument("workflow_id")
        update.add_argument("task_ref", help="the task's reference name")
        update.add_argument("--output", default=None, help="JSON object, or @file, or @- for stdin")
        update.add_argument("--wait", action="store_true", help="then wait for the workflow to end")
        update.add_argument("--timeout", type=float, default=None, help="with --wait: give up after S seconds")
        if verb == "fail":
            update.add_argument("--reason", default=None, help="reasonForIncompletion")
            update.add_argument("--terminal", action="store_true", help="FAILED_WITH_TERMINAL_ERROR: no retries")
        update.set_defaults(handler=cmd_task_update)
    get = workflow.add_parser("get", help="show a workflow")
    get.add_argument("workflow_id")
    get.set_defaults(handler=cmd_workflow_get)
    history = workflow.add_parser("history", help="every transition of a workflow, oldest first")
    history.add_argument("workflow_id")
    history.set_defaults(handler=cmd_workflow_history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(json=None if args.log_format == "auto" else args.log_format == "json", level=args.log_level)
    handler: Callable[[argparse.Namespace], Awaitable[int]] = args.handler
    try:
        return anyio.run(handler, args)
    except DefinitionError as exc:
        print(f"error: {exc.subject}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_USAGE
    except AuthError as exc:  # credentials or identities given wrong: the user's to fix
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectionFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except UnknownDefinition as exc:  # a start of a definition that is not registered: nothing was stored
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandNotConfirmed as exc:  # stored, but no node answered: try again once one runs
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except WorkflowError as exc:  # not found, or not in a state that allows the operation
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_COMPLETED
    except PartitaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
