"""The node's health endpoint: liveness, readiness through start, reconnection and shutdown."""

from __future__ import annotations

import anyio
import httpx
import pytest

from partita.actors import Node
from partita.actors.health import HealthServer, parse_address
from partita.transport import Connection, EmbeddedServer, free_port

from .harness import Process, eventually


def test_a_health_address_is_host_and_port() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address(":9000") == ("0.0.0.0", 9000)
    for bad in ("8080", "host:", "host:http", "host:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


async def test_readiness_follows_the_node_from_start_to_shutdown(conn: Connection) -> None:
    node = Node(conn)
    health = HealthServer(node, "127.0.0.1", 0)
    async with anyio.create_task_group() as tg, httpx.AsyncClient() as http:
        await tg.start(health.run)
        base = f"http://127.0.0.1:{health.port}"
        assert (await http.get(f"{base}/healthz")).status_code == 200
        starting = await http.get(f"{base}/readyz")
        assert starting.status_code == 503
        assert starting.json()["consuming"] is False
        await tg.start(node.run)
        ready = await http.get(f"{base}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready", "node": node.name, "consuming": True, "connected": True, "stopping": False,
            "partitions": 64, "events_in_flight": 0, "actors_active": 0,
        }  # fmt: skip
        head = await http.head(f"{base}/readyz")
        assert (head.status_code, head.content) == (200, b"")
        assert (await http.get(f"{base}/nothing")).status_code == 404
        assert (await http.post(f"{base}/readyz")).status_code == 405
        node.request_stop()
        draining = await http.get(f"{base}/readyz")
        assert draining.status_code == 503
        assert draining.json()["stopping"] is True
        tg.cancel_scope.cancel()


async def test_a_node_process_serves_its_health_endpoint(nats_server: EmbeddedServer, tmp_path: object) -> None:
    port = free_port()
    node = Process("--nats", nats_server.url, "node", "--health", f"127.0.0.1:{port}")
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, within=30, what="the node to report ready")
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).json() == {"status": "alive"}
    finally:
        assert node.stop() == 0
