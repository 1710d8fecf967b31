"""Shared fixtures: a real nats-server (JetStream) per test, on a free loopback port, with a temporary store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from partita.actors import configure_logging
from partita.transport import Client, Connection, EmbeddedServer, connect

configure_logging(json=True, level="INFO")


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def conn(nats_server: EmbeddedServer) -> AsyncIterator[Connection]:
    connection = await connect(nats_server.url, name="test")
    try:
        yield connection
    finally:
        await connection.aclose()


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    async with await Client.connect(nats_server.url, name="test-client") as c:
        yield c
