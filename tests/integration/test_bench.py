"""A smoke run of the benchmark suite (tiny counts): every workload and system runs and reports every figure.
It measures nothing: no timing is asserted, only that the suite works, so it never rots."""

from __future__ import annotations

import pytest

from bench.scale import main as scale_main
from bench.scale import parse as scale_parse
from bench.suite import WORKLOADS, main, parse


@pytest.mark.timeout(300)
async def test_the_benchmark_suite_runs_every_workload_against_raw_jetstream() -> None:
    report = await main(parse(["--quick", "--repeat", "1", "--sync", "default", "--no-out"]))
    rows = report["rows"]
    assert {(r["workload"], r["variant"]) for r in rows} == {(w.name, v) for w in WORKLOADS for v in w.variants}
    for row in rows:
        assert row["workflows"] > 0
        assert row["wf_per_s"] > 0
        assert row["p99_ms"] >= row["p50_ms"] > 0
        assert row["cpu_ms_per_wf"] > 0
    assert len(report["ratios"]) == len(rows) - len(WORKLOADS)  # every Partita row against its raw row
    parked = report["idle_many"]
    assert parked["workflows"] == 200
    assert parked["resume_wf_per_s"] > 0
    # Memory figures are only present: 200 workflows may fit in memory earlier phases freed (RSS unchanged).
    assert parked["kib_per_workflow_with_actors"] >= 0
    assert parked["bytes_heap_per_passivated_workflow"] >= 0
    recovered = report["recovery"]
    assert recovered["wf_per_s_before"] > 0
    assert 0 < recovered["first_completion_s"] <= recovered["all_in_flight_done_s"]


@pytest.mark.timeout(300)
async def test_the_scaling_benchmark_runs_nodes_on_the_shipped_cluster_files() -> None:
    rows = await scale_main(scale_parse(["--quick", "--nodes", "1,2"]))
    assert [row["nodes"] for row in rows] == [1, 2]
    for row in rows:
        assert row["workflows"] == 40
        assert row["wf_per_s"] > 0
        assert row["cpu_ms_per_wf"] > 0
