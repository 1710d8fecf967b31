"""The shipped nats-server configurations are valid for the server Partita runs on."""

from __future__ import annotations

import argparse
import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from partita.actors.cli import build_parser
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


# --- every other file in deploy/ is validated: schemas, and every command line against the real CLI -----------

DEPLOY = REPO / "deploy"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("partita-*.yaml"))


def _parses_as_partita(argv: list[str]) -> argparse.Namespace:
    """A command line in a deploy file, checked by the CLI's own parser (a renamed flag fails here)."""
    assert argv[0].endswith("partita"), argv
    return build_parser().parse_args(argv[1:])


def test_the_compose_file_is_valid_compose_and_runs_real_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(DEPLOY / "compose.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    node = _parses_as_partita(compose["services"]["node"]["command"])
    assert node.health == ("0.0.0.0", 8080)
    worker = _parses_as_partita(compose["services"]["worker"]["command"])
    assert worker.modules == ["examples.order_fulfillment.workers"]
    assert compose["services"]["node"]["environment"]["PARTITA_REPLICAS"] == "3"
    for name in ("nats-1", "nats-2", "nats-3"):
        mounted = compose["services"][name]["volumes"][0].split(":")[0]
        assert (DEPLOY / mounted).is_file(), mounted  # the cluster files the tests start


@pytest.mark.parametrize("manifest", KUBERNETES, ids=lambda m: m.name)
def test_the_kubernetes_manifests_are_valid_and_probe_the_health_endpoint(manifest: Path) -> None:
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment", "PodDisruptionBudget"]
    for document in documents:
        kubernetes_validate.validate(document, "1.31", strict=True)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = _parses_as_partita(container["args"])
    if args.command == "node":
        assert args.health == ("0.0.0.0", 8080)
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    else:
        assert args.command == "worker"


def test_the_nats_helm_values_ask_for_a_three_server_jetstream_cluster() -> None:
    values = yaml.safe_load((DEPLOY / "kubernetes" / "nats-values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["enabled"] is True


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda u: u.name)
def test_the_systemd_units_run_real_commands(unit: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(unit.read_text())
    assert parser["Service"]["KillSignal"] == "SIGTERM"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(parser["Service"]["ExecStart"].replace("%H", "host").replace("%i", "instance"))
    assert argv[0] == "/opt/partita/venv/bin/partita"
    parsed = _parses_as_partita(argv)
    assert parsed.command in ("node", "worker")
    if parsed.command == "node":
        assert parsed.name == "host-instance"  # a stable name: a restarted node takes its partitions back at once
    if shutil.which("systemd-analyze"):  # where systemd is installed, its own checker too
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        problems = [line for line in result.stderr.splitlines() if unit.name in line and "not executable" not in line
                    and "No such file" not in line and "Failed to resolve user" not in line]  # fmt: skip
        assert not problems, result.stderr
