"""The benchmarks run and report every row (timings are never asserted: they are findings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks._harness import Report, Row, Target, Timing

# integration: benchmark smoke runs (subprocesses, servers)
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]

MEMORY_ROWS = {
    "get_session (~2 KB)",
    "create_session (~2 KB)",
    "update_session merge_data",
    "append_events, 10,000 events",
    "pop_events(n=1), 10,000 events",
    "get_event(key=), 10,000 events",
    "get_events(types, last=20), 10,000 events",
    "backwards page (before_seq, last=5), 10,000 events",
    "list_sessions tag+range, 10,000",
    "list 100 newest of a processor's 1,000 among 10,000",
}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _run_module(module: str, *args: str, timeout: float = 300) -> str:
    """Run ``python -m benchmarks.<module> <args>`` from the repo; check it exited 0;
    return what it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _run_quick(module: str, tmp_path: Path, *extra: str, title: str) -> tuple[dict[str, Any], str]:
    """Run ``python -m benchmarks.<module> --quick --json``; check it ran; return its
    report and what it printed.

    Every row must carry positive, finite op/floor times, a ratio and a target (no row's
    ratio is asserted: timing assertions do not belong in tests).
    """
    out = tmp_path / "bench.json"
    stdout = _run_module(module, "--quick", "--json", str(out), *extra)
    assert f"== sessionstore {title} benchmark (quick) ==" in stdout
    report: dict[str, Any] = json.loads(out.read_text())
    for row in report["rows"]:
        for key in ("op_s", "floor_s", "ratio", "target_limit"):
            assert _number(row[key]) and row[key] > 0, (row["name"], key, row[key])
    return report, stdout


def test_bench_memory_quick_runs_and_writes_every_row(tmp_path: Path) -> None:
    report, printed = _run_quick("bench_memory", tmp_path, title="memory://")
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == MEMORY_ROWS
    for row in rows.values():
        assert isinstance(row["passed"], bool)
        assert row["target_kind"] in ("at_most", "at_least")
        assert all(_number(t) for t in row["op_timing"]["per_call_s"])
        assert all(_number(t) for t in row["floor_timing"]["per_call_s"])
        assert ("PASS" if row["passed"] else "FAIL") in printed
    assert report["meta"]["quick"] is True
    assert _number(report["meta"]["load_seconds"])
    sweep = report["meta"]["plan_sweep"]
    assert len(sweep) == 10  # five selectivities, two filter shapes
    for entry in sweep.values():
        assert entry["plan"] in ("sort", "walk", "composite")
        assert _number(entry["ratio_to_best"]) and entry["ratio_to_best"] > 0


def _timing(*seconds: float) -> Timing:
    return Timing(per_call=seconds, number=10)


def test_target_directions() -> None:
    slower = Target.at_most(2)
    assert slower.ratio(3.0, 2.0) == 1.5
    assert slower.passed(1.5)
    assert not slower.passed(2.5)
    faster = Target.faster_by(20)
    assert faster.ratio(1.0, 40.0) == 40.0
    assert faster.passed(40.0)
    assert not faster.passed(10.0)


def test_report_uses_medians_and_round_trips_to_json(tmp_path: Path) -> None:
    report = Report("demo")
    row = report.add(Row("op", _timing(1.0, 9.0, 2.0), "floor", _timing(1.0), Target.at_most(3)))
    assert row.op.median == 2.0
    assert row.ratio == 2.0 and row.passed
    report.add(Row("slow", _timing(5.0), "floor", _timing(1.0), Target.at_most(3)))
    assert not report.all_passed
    assert "TARGETS MISSED: slow" in report.table()
    path = tmp_path / "r.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert [r["name"] for r in data["rows"]] == ["op", "slow"]
    assert data["all_passed"] is False


def test_bench_manager_quick_runs_and_writes_every_row(tmp_path: Path) -> None:
    report, _ = _run_quick("bench_manager", tmp_path, title="manager")
    names = {row["name"] for row in report["rows"]}
    expected = {
        f"{kind}: {what}"
        for kind in report["meta"]["drivers"]
        for what in ("add_interaction, per-interaction persist", "interval mode, per interaction")
    }
    assert "memory" in report["meta"]["drivers"] and names == expected


# The rows of bench_filesystem in the order it prints them: its docstring and
# docs/performance.md call them by these numbers (1-13).
FILESYSTEM_ROWS = (
    "durable save (update_session data=2 KB)",
    "get_session (~2 KB)",
    "durable append_events (1 event)",
    "append_events, 10,000 events",
    "8 concurrent durable savers (throughput)",
    "durable create_session + get_session (2 KB)",
    "pop_events(n=1), 10,000 events",
    "get_event(key=), 10,000 events",
    "get_events(types, last=20), 10,000 events",
    "backwards page (before_seq, last=5), 10,000 events",
    "get_events(last=20), 10,000 events",
    "list_sessions tag+range, 5,000",
    "100 newest of a processor's 1,000 among 2,000",
)


def test_bench_filesystem_quick_runs_and_writes_every_row(tmp_path: Path) -> None:
    report, _ = _run_quick("bench_filesystem", tmp_path, "--dir", str(tmp_path), title="file://")
    rows = {row["name"]: row for row in report["rows"]}
    assert [row["name"] for row in report["rows"]] == list(FILESYSTEM_ROWS)
    assert all(isinstance(row["passed"], bool) for row in rows.values())
    assert _number(report["meta"]["load_seconds"]) and _number(report["meta"]["query_ms"])
    small = report["meta"]["small_pages"]  # the 1 and 10 newest beside row 13
    assert sorted(small) == ["1", "10"] and all(_number(v["ratio"]) for v in small.values())
    sweep = report["meta"]["plan_sweep"]
    assert len(sweep) == 10  # five selectivities, two filter shapes
    for entry in sweep.values():
        # the store's plan is one of the forced ones (EXPLAIN QUERY PLAN, one line)
        assert entry["plan"] in entry["seconds"] and entry["best_plan"] in entry["seconds"]
        assert entry["plans"] == len(entry["seconds"]) - 1 >= 3
        assert _number(entry["ratio_to_best"]) and entry["ratio_to_best"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # the store was removed


# The rows of bench_redis that --writes-only runs, in its order (also in the full run).
_REDIS_WRITE_ROWS = (
    "get_session (~2 KB)",
    "create_session (~2 KB)",
    "create_session + get_session (~2 KB)",
    "update_session merge_data",
    "append_events, 10,000 events",
    "append flatness 10,000 vs 10",
)


def test_bench_redis_quick_runs_and_writes_every_row(tmp_path: Path) -> None:
    from tests.redis.servers import find_binaries

    if find_binaries() is None:
        import pytest

        pytest.skip("no redis-server to benchmark against")
    report, _ = _run_quick("bench_redis", tmp_path, title="redis")
    rows = {row["name"]: row for row in report["rows"]}
    for topology in ("single", "cluster"):  # the same rows on a single server and Cluster
        # (Cluster's listing also against the per-shard floor)
        extra = ["list 100 newest of a processor's 1,000 among 10,000, per shard"]
        assert {name for name in rows if name.startswith(f"[{topology}]")} == {
            f"[{topology}] {what}"
            for what in (
                *(extra if topology == "cluster" else []),
                *_REDIS_WRITE_ROWS,
                "put_records x100 pipelined",
                "list_sessions tag+range, 4,000",
                "get_events(last=20) of 10,000",
                "get_events(last=10), 10,000 events",
                "pop_events(n=1), 10,000 events",
                "get_event(key=), 10,000 events",
                "get_events(types, last=20), 10,000 events",
                "backwards page (before_seq, last=5), 10,000 events",
                "list 100 newest of a processor's 1,000 among 10,000",
            )
        }
        assert _number(report["meta"][f"query_ms_{topology}"])
        assert len(report["meta"][f"plan_sweep_{topology}"]) == 10
    assert all(isinstance(row["passed"], bool) for row in rows.values())


def test_bench_redis_writes_only_runs_the_write_rows_alone(tmp_path: Path) -> None:
    """``--writes-only`` (the quiet-machine A/B of the write rows, issue 21): exactly the
    get, create, create + get, update and append rows, nothing else."""
    from tests.redis.servers import find_binaries

    if find_binaries() is None:
        import pytest

        pytest.skip("no redis-server to benchmark against")
    report, _ = _run_quick("bench_redis", tmp_path, "--no-cluster", "--writes-only", title="redis")
    assert [row["name"] for row in report["rows"]] == [
        f"[single] {what}" for what in _REDIS_WRITE_ROWS
    ]


def test_bench_backup_quick_runs_and_writes_every_row(tmp_path: Path) -> None:
    report, _ = _run_quick(
        "bench_backup", tmp_path, "--drivers", "memory,file", "--dir", str(tmp_path), title="backup"
    )
    drivers = report["meta"]["drivers"]
    assert "memory" in drivers
    sizes = report["meta"]["sizes"]
    assert {row["name"] for row in report["rows"]} == {
        f"{kind}: {what} {n:,}" for kind in drivers for what in ("backup", "restore") for n in sizes
    }
    for kind in drivers:
        memory = report["meta"]["memory"][kind]
        for n in sizes:
            for key in ("backup_peak_mb", "restore_working_mb", "restore_sessions_per_s"):
                assert _number(memory[str(n)][key]) and memory[str(n)][key] > 0
        assert isinstance(memory["flat_backup_peak_mb"]["passed"], bool)
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # stores and files removed


def test_bench_sync_quick_runs_and_writes_every_row(tmp_path: Path, redis_url: str) -> None:
    report, _ = _run_quick("bench_sync", tmp_path, "--url", redis_url, title="sync facade")
    rows = {row["name"] for row in report["rows"]}
    assert rows == {
        "facade get_session (memory)",
        "facade get_session (memory, per-thread loops)",
        "8 threads x 100 facade get_session (Redis)",
        "8 threads x 100 facade get_session (Redis, loop thread only)",
        "8 threads x 100 facade get_session (Redis, per-thread loops)",
    }


POSTGRES_ROWS = {
    "create + get (2 KB session)",
    "append_events (1 event, 2,000 in the log)",
    "get_events last 20 of 2,000",
    "append flatness 2,000 vs 10",
    "pop_events(n=1), 2,000 events",
    "get_event(key=), 2,000 events",
    "get_events(types, last=20), 2,000 events",
    "backwards page (before_seq, last=5), 2,000 events",
    "append_events (1 event, new key), 2,000 events",
    "100 newest of a processor's 200 among 1,000",
    "8 writers x 10 updates, distinct sessions",
}


def test_bench_postgres_quick_runs_and_writes_every_row(tmp_path: Path, postgres_url: str) -> None:
    # on the test server (fast settings): this checks that the benchmark runs, not figures
    report, _ = _run_quick("bench_postgres", tmp_path, "--url", postgres_url, title="postgres")
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == POSTGRES_ROWS
    assert all(isinstance(row["passed"], bool) for row in rows.values())
    assert report["info"]["client"].startswith("asyncpg ")
    assert report["meta"]["million"] is None  # --million is opt-in: no million-session load


SQLITE_ROWS = {
    "create_session + get_session (2 KB)",
    "durable append_events (1 event)",
    "durable append_events (1 event), same statements",
    "append_events, 10,000 events",
    "get_events(last=20) of 10,000",
    "pop_events(n=1), 10,000 events",
    "get_event(key=), 10,000 events",
    "get_events(types, last=20), 10,000 events",
    "backwards page (before_seq, last=5), 10,000 events",
    "append_events (1 event, new key), 10,000 events",
    "100 newest of a processor's 1,000 among 10,000",
}


def test_bench_sqlite_quick_runs_and_writes_every_row(tmp_path: Path) -> None:
    report, _ = _run_quick("bench_sqlite", tmp_path, "--dir", str(tmp_path), title="sqlite://")
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == SQLITE_ROWS
    assert all(isinstance(row["passed"], bool) for row in rows.values())
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # the databases were removed
    assert report["meta"]["million"] is None  # --million is opt-in: no million-session load


MILLION_DRIVERS = {
    "bench_memory": ("memory://", ["memory"]),
    "bench_filesystem": ("file://", ["file"]),
    "bench_sqlite": ("sqlite://", ["sqlite"]),
    "bench_redis": ("redis", ["single", "cluster"]),
    "bench_postgres": ("postgres", ["postgres"]),
}


@pytest.mark.parametrize("module", sorted(MILLION_DRIVERS))
def test_bench_million_mode_runs_every_step_at_a_small_size(
    module: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``--million``'s code path (``benchmarks/_million.py``) at 2,000 sessions, so it
    cannot rot: the load, the footprint, the listing row (checked against its floor by
    the benchmark itself), both counts, the backup and the restore, for every driver."""
    title, labels = MILLION_DRIVERS[module]
    extra = ["--dir", str(tmp_path)] if module in ("bench_filesystem", "bench_sqlite") else []
    if module == "bench_redis":
        from tests.redis.servers import find_binaries

        if find_binaries() is None:
            pytest.skip("no redis-server to benchmark against")
    if module == "bench_postgres":
        extra = ["--url", request.getfixturevalue("postgres_url")]
    out = tmp_path / "bench.json"
    stdout = _run_module(
        module, "--million-only", "--million-size", "2000", "--json", str(out), *extra,
        timeout=600,
    )  # fmt: skip
    assert f"== sessionstore {title} benchmark ==" in stdout
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["meta"]["million"] == 2_000
    listing = "100 newest of a processor's 1,000 among 2,000"
    assert [row["name"] for row in report["rows"]] == [
        f"[{label}] {listing}" for label in labels
    ] + ([f"[cluster] {listing}, per shard"] if "cluster" in labels else [])
    for row in report["rows"]:
        for key in ("op_s", "floor_s", "ratio", "target_limit"):
            assert _number(row[key]) and row[key] > 0, (row["name"], key, row[key])
    info = report["info"]
    for label in labels:
        assert "2,000 sessions by " in info[f"[{label}] 2,000 load"]
        assert "bytes a session" in info[f"[{label}] 2,000 footprint"]
        assert "count_sessions(processor) = 1,000" in info[f"[{label}] 2,000 count"]
        assert "create_backup of 2,000 sessions" in info[f"[{label}] 2,000 backup"]
        assert "restore_from_backup of 2,000 sessions" in info[f"[{label}] 2,000 restore"]
        if module == "bench_redis":  # the servers' CPU beside this process's
            for step in ("load", "backup", "restore"):
                assert "server CPU" in info[f"[{label}] 2,000 {step}"]
    if module in ("bench_filesystem", "bench_sqlite"):
        assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # stores removed


@pytest.mark.parametrize("module", ["bench_filesystem", "bench_sqlite"])
def test_bench_million_no_copy_skips_backup_and_restore(module: str, tmp_path: Path) -> None:
    """``--million-no-copy``: load, footprint, listing and counts only; nothing backed up
    or restored, and the store is still removed at the end (the file benchmark once
    failed there, removing a restored store that did not exist)."""
    out = tmp_path / "bench.json"
    _run_module(
        module, "--million-only", "--million-no-copy", "--million-size", "2000",
        "--json", str(out), "--dir", str(tmp_path), timeout=600,
    )  # fmt: skip
    info = json.loads(out.read_text())["info"]
    label = MILLION_DRIVERS[module][1][0]
    assert "count_sessions(processor) = 1,000" in info[f"[{label}] 2,000 count"]
    assert not any(key.endswith(("backup", "restore")) for key in info)
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # stores removed


@pytest.mark.parametrize(
    ("module", "args", "expect"),
    [
        (
            "raw_blocking_ceiling",
            ["--rounds", "1", "--calls", "5"],
            ["store-tasks", "sock-threads", "facade", "facade-loop"],
        ),
        (
            "blocking_reads_cpu",
            ["--rounds", "1", "--calls", "5", "--threads", "2"],
            ["get_session", "get_sessions(10 ids)", "get_events(last=20)", "get_event(key=)"],
        ),
        (
            "cluster_colocation_probe",
            ["--rounds", "1", "--repeat", "1", "--sessions", "300", "--replicas", "0"],
            ["two-round round", "one-round round"],
        ),
        (
            "redis_wait_probe",
            ["--rounds", "1", "--calls", "5"],
            ["create wall", "get wall", "SET wall", "GET wall", "server EVALSHA"],
        ),
        (
            "sqlite_partial_probe",
            ["--sessions", "50", "--appends", "5", "--rounds", "1", "--batch", "3"],
            ["schema 4 target", "schema 5 target", "schema 5 ptarget", "CPU an append:"],
        ),
        (
            "pg_timer_cpu",
            ["--rounds", "1", "--calls", "5", "--big-log", "100", "--canned"],
            [
                "append timer:",
                "append server:",
                "last-20 raw:",
                "select timer:",
                "store get_events(last=20), canned reply:",
            ],
        ),
    ],
)
def test_the_blocking_reads_measurement_scripts_run(
    module: str, args: list[str], expect: list[str]
) -> None:
    """The issue-18 measurement scripts, issue 20's ``pg_timer_cpu``, issue 21's
    ``cluster_colocation_probe`` and ``redis_wait_probe`` (private servers of their own)
    and the SQLite schema-5 ``sqlite_partial_probe`` still run and print every
    side they measure (no figure asserted; the probe checks that its sides agree)."""
    stdout = _run_module(module, *args)
    lines = stdout.splitlines()
    for side in expect:
        assert any(line.startswith(side + " ") for line in lines), (side, stdout)
