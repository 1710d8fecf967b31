"""The shipped nats-server configurations are valid for the server Partita runs on."""

from __future__ import annotations

import subprocess

import pytest

from partita.transport import find_server_binary

from .harness import REPO

CONFIGS = sorted((REPO / "deploy" / "nats").glob("*.conf"))


def test_there_is_a_single_node_and_a_three_node_cluster_configuration() -> None:
    assert [c.name for c in CONFIGS] == ["cluster-1.conf", "cluster-2.conf", "cluster-3.conf", "single.conf"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_the_configuration_passes_nats_server_config_check(config: object) -> None:
    result = subprocess.run(
        [find_server_binary(), "-c", str(config), "-t"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr + result.stdout
