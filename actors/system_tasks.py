"""System tasks that nodes execute: HTTP and EVENT.

They travel through the task stream like worker tasks (``partita.task.HTTP._``, ``partita.task.EVENT._``) and
every node runs a :class:`TaskWorker` for each, so they get the same guarantees (durable queue, result
published before ack, redelivery) and never run inside the decider: a slow HTTP server holds one execution
slot, not a node's event loop or another workflow. HTTP tasks connect only where the node's egress policy
allows (:mod:`.egress`; public addresses, and what ``--http-allow`` names).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx
import structlog

from partita.schemas import TaskMessage
from partita.transport import Connection, Layout, TransportError, escape_token

from .egress import EgressPolicy
from .http_egress import CheckedTransport, EgressRefused
from .worker import Failure, InProgress, TerminalError, WorkerSpec

log = structlog.get_logger(__name__)

HTTP_CONCURRENCY: Final = 64
EVENT_CONCURRENCY: Final = 16
DEFAULT_TIMEOUT_MS: Final = 3000  # Conductor's connectionTimeOut and readTimeOut defaults
_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
# Conductor's other event providers have no meaning here; they are refused at registration.
EVENT_PROVIDERS: Final = frozenset({"nats", "jsm", "conductor"})


def _async_complete(task: TaskMessage) -> bool:
    return task.input_data.get("asyncComplete") in (True, "true")


def _milliseconds(value: object, default: int) -> float:
    return (int(value) if isinstance(value, int | float | str) and str(value).isdigit() else default) / 1000


@dataclass(frozen=True, slots=True)
class _HttpRequest:
    method: str
    uri: str
    headers: dict[str, str]
    content: bytes | None
    timeout: httpx.Timeout


def _http_request(task: TaskMessage) -> _HttpRequest:
    """``http_request`` (or the input itself) with ``uri``, ``method``, ``headers``, ``body``, ``accept``,
    ``contentType``, ``connectionTimeOut``/``readTimeOut`` (ms); a malformed one fails the task terminally."""
    request = task.input_data.get("http_request", task.input_data)
    if not isinstance(request, Mapping):
        raise TerminalError("http_request must be an object")
    uri = request.get("uri")
    if not isinstance(uri, str) or not uri:
        raise TerminalError("http_request.uri is required")
    method = str(request.get("method") or "GET").upper()
    if method not in _METHODS:
        raise TerminalError(f"unsupported HTTP method {method!r}")
    headers = {str(k): str(v) for k, v in dict(request.get("headers") or {}).items()}
    accept = request.get("accept") or "application/json"
    headers.setdefault("Accept", ", ".join(accept) if isinstance(accept, list) else str(accept))
    body = request.get("body")
    content: bytes | None = None
    if body is not None:
        headers.setdefault("Content-Type", str(request.get("contentType") or "application/json"))
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    connect = _milliseconds(request.get("connectionTimeOut"), DEFAULT_TIMEOUT_MS)
    read = _milliseconds(request.get("readTimeOut"), DEFAULT_TIMEOUT_MS)
    timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
    return _HttpRequest(method, uri, headers, content, timeout)


def _http_outcome(task: TaskMessage, reply: httpx.Response) -> dict[str, object] | InProgress | Failure:
    """2xx: COMPLETED with ``response`` {body, headers, statusCode, reasonPhrase}; anything else FAILED, reason =
    the body."""
    try:
        parsed: object = reply.json()
    except ValueError:
        parsed = reply.text
    response = {
        "body": parsed,
        "headers": {name: reply.headers.get_list(name) for name in reply.headers},
        "statusCode": reply.status_code,
        "reasonPhrase": reply.reason_phrase,
    }
    if not reply.is_success:
        return Failure(reply.text or f"HTTP {reply.status_code}", {"response": response})
    if _async_complete(task):
        return InProgress(output={"response": response})
    return {"response": response}


def http_task(policy: EgressPolicy) -> Callable[[TaskMessage], Awaitable[dict[str, object] | InProgress | Failure]]:
    """Conductor's HTTP task, connecting only where ``policy`` allows: a refused address (redirects included)
    fails the task terminally, naming the address and how to allow it."""

    async def call(task: TaskMessage) -> dict[str, object] | InProgress | Failure:
        request = _http_request(task)
        transport = CheckedTransport(policy)
        try:
            async with httpx.AsyncClient(transport=transport, timeout=request.timeout, follow_redirects=True) as client:
                reply = await client.request(
                    request.method, request.uri, headers=request.headers, content=request.content
                )
        except EgressRefused as exc:
            refused = exc.refusal
            log.warning(
                "http_request_refused",
                workflow_id=task.workflow_instance_id,
                task_id=task.task_id,
                task_ref=task.reference_task_name,
                uri=request.uri,
                host=refused.host,
                address=str(refused.address),
                kind=refused.kind,
                network=str(refused.network),
            )
            return Failure(str(exc), terminal=True)
        except httpx.HTTPError as exc:
            return Failure(f"{request.method} {request.uri} failed: {type(exc).__name__}: {exc}")
        return _http_outcome(task, reply)

    return call


def event_subject(sink: str, task: TaskMessage, layout: Layout) -> tuple[str, bool]:
    """``(subject, durable)`` for an EVENT sink: ``nats:<subject>`` (core NATS), ``jsm:<subject>`` (JetStream,
    acknowledged), ``conductor`` / ``conductor:<name>`` (``<prefix>.event.<workflowType>.<taskRef or name>``)."""
    provider, _, target = sink.partition(":")
    provider = provider.strip().lower()
    if provider == "conductor":
        name = target.strip() or task.reference_task_name
        return f"{layout.prefix}.event.{escape_token(task.workflow_type)}.{escape_token(name)}", True
    if provider not in EVENT_PROVIDERS or not target.strip():
        raise TerminalError(f"sink {sink!r} is not supported: use nats:<subject>, jsm:<subject> or conductor[:name]")
    return target.strip(), provider == "jsm"


def event_task(conn: Connection, layout: Layout) -> WorkerSpec:
    async def publish_event(task: TaskMessage) -> dict[str, object] | InProgress:
        sink = task.input_data.get("sink")
        if not isinstance(sink, str) or not sink:
            raise TerminalError("EVENT task requires a sink")
        subject, durable = event_subject(sink, task, layout)
        payload = {k: v for k, v in task.input_data.items() if k not in ("sink", "asyncComplete")}
        payload |= {
            "workflowInstanceId": task.workflow_instance_id,
            "workflowType": task.workflow_type,
            "workflowVersion": task.workflow_version,
            "correlationId": task.correlation_id,
        }
        data = json.dumps(payload, default=str).encode()
        try:
            if durable:
                await conn.publish_durable(subject, data, msg_id=f"event:{task.task_id}")
            else:
                await conn.publish(subject, data)
        except TransportError as exc:
            raise RuntimeError(f"publishing to {subject!r} failed: {exc}") from exc
        output = {**payload, "event_produced": f"{sink.split(':', 1)[0]}:{subject}"}
        return InProgress(output=output) if _async_complete(task) else output

    return WorkerSpec("EVENT", publish_event, concurrency=EVENT_CONCURRENCY, redelivery_times_out=False)


def system_task_workers(conn: Connection, layout: Layout, egress: EgressPolicy) -> list[WorkerSpec]:
    """The node-executed system tasks, as worker specs for :func:`run_workers`; HTTP tasks connect only where
    ``egress`` allows."""
    return [
        WorkerSpec("HTTP", http_task(egress), concurrency=HTTP_CONCURRENCY, redelivery_times_out=False),
        event_task(conn, layout),
    ]
