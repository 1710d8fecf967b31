"""The node's health endpoint for orchestrators (Kubernetes probes, load balancers, systemd watchdogs).

``partita node --health 127.0.0.1:8080`` serves two paths over plain HTTP/1.1, each answered with a JSON body:

* ``GET /healthz`` (liveness): 200 while the process's event loop answers at all; an orchestrator restarts a
  node that stops answering.
* ``GET /readyz`` (readiness): 200 once the node consumes events and while it is connected to NATS and not
  shutting down; 503 otherwise (starting, reconnecting, draining). Not ready is not a reason to restart.

Anything else is 404. The server reads at most one request line and its headers (8 KiB, 5 s) per connection.
"""

from __future__ import annotations

from typing import Final, Protocol, final

import anyio
import anyio.abc
import msgspec
import structlog
from anyio.abc import TaskStatus

log = structlog.get_logger(__name__)

MAX_REQUEST: Final = 8192
READ_SECONDS: Final = 5.0
_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class Probed(Protocol):
    """What the endpoint asks the node."""

    def readiness(self) -> tuple[bool, dict[str, object]]: ...


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``:8080`` means all interfaces, as for most servers); raises ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:8080, got {text!r}")
    return host or "0.0.0.0", int(port)


@final
class HealthServer:
    """``await tg.start(server.run)``; serves until cancelled."""

    def __init__(self, node: Probed, host: str, port: int) -> None:
        self._node = node
        self.host = host
        self.port = port

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port, reuse_port=False)
        async with listener:
            sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
            if isinstance(sockname, tuple):
                self.port = int(sockname[1])  # port 0: the one the system chose
            log.info("health_endpoint_started", host=self.host, port=self.port)
            task_status.started()
            await listener.serve(self._serve)

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(READ_SECONDS):
                    request = await self._read_head(stream)
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, ValueError):
                return
            status, body = self.answer(request)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            if request.startswith("HEAD "):
                body = b""  # the same head, no body
            try:
                await stream.send(head.encode() + body)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    @staticmethod
    async def _read_head(stream: anyio.abc.SocketStream) -> str:
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            data += await stream.receive(MAX_REQUEST)
            if len(data) > MAX_REQUEST:
                raise ValueError("request head too large")
        return data.split(b"\n", 1)[0].decode("latin-1").strip()

    def answer(self, request_line: str) -> tuple[int, bytes]:
        """The status and JSON body for one request line (``GET /readyz HTTP/1.1``)."""
        parts = request_line.split()
        if len(parts) < 2:
            return 404, b'{"error":"malformed request"}'
        method, path = parts[0], parts[1].split("?", 1)[0]
        if path not in ("/healthz", "/readyz"):
            return 404, msgspec.json.encode({"error": f"no such path {path}; try /healthz or /readyz"})
        if method not in ("GET", "HEAD"):
            return 405, b'{"error":"use GET"}'
        if path == "/healthz":
            return 200, b'{"status":"alive"}'
        ready, details = self._node.readiness()
        return (200 if ready else 503), msgspec.json.encode({"status": "ready" if ready else "not ready", **details})
