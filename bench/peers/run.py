"""Measure one peer: ``python -m bench.peers.run NAME --steps 3 --count 2000 --in-flight 50 --repeat 3``.

Run with ``.venv-peers/bin/python`` (made by ``bench/peers/setup``). Every repetition gets a fresh system in a
scratch directory; the figures are medians, printed as one JSON object on the last line of stdout, which is
what ``bench.suite --peers`` reads.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from ..measure import measure, tree_cpu_seconds
from .common import Peer

PEERS = ("temporal", "restate", "restate-run", "dbos", "celery")
WARM_UP = 20
MIN_COUNT = 100


def load(name: str) -> Peer:
    if name not in PEERS:
        raise SystemExit(f"unknown peer {name!r}; peers: {', '.join(PEERS)}")
    if name == "restate-run":  # Restate with inline ``ctx.run`` steps instead of calls to a step service
        os.environ["PARTITA_RESTATE_STEP"] = "run"  # read at import, and inherited by the service process
        name = "restate"
    module = importlib.import_module(f"bench.peers.{name}")
    peer: Peer = module.peer
    return peer


async def run_once(
    peer: Peer, steps: int, count: int, in_flight: int, max_seconds: float
) -> tuple[dict[str, float], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="partita-peer-") as scratch:
        async with peer(Path(scratch), steps) as system:

            def cpu() -> float:
                return time.process_time() + tree_cpu_seconds(system.pids)

            warm = await measure(system.run_one, min(WARM_UP, count), in_flight, 10**6, steps, cpu)
            # A slow system gets fewer workflows (at least MIN_COUNT) so that a run stays near max_seconds.
            count = min(count, max(MIN_COUNT, int(warm.workflows_per_second * max_seconds)))
            result = await measure(system.run_one, count, in_flight, 0, steps, cpu)
            about = {"durability": system.durability, "versions": system.versions, "notes": system.notes}
    return {**result.figures(), "workflows": count}, about


async def main(options: argparse.Namespace) -> dict[str, Any]:
    peer = load(options.name)
    runs = []
    about: dict[str, Any] = {}
    for _ in range(options.repeat):
        figures, about = await run_once(peer, options.steps, options.count, options.in_flight, options.max_seconds)
        runs.append(figures)
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    report = {"peer": options.name, "steps": options.steps, "in_flight": options.in_flight, **median, **about}
    print(json.dumps(report), flush=True)
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"one of {', '.join(PEERS)}")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--max-seconds", type=float, default=30.0, help="fewer workflows (not below 100) for a system this slow"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, parse())
