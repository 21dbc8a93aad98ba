"""The benchmark runs and reports every row (its ratios are findings, never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.postgres.servers import find_bindir

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_langgraph.py"

#: The side-by-side rows (each ``<name>: ours / <their saver>``) of a quick run.
SIDE_ROWS = (
    "delta step at step 10",
    "delta step at step 30",
    "get_tuple (newest) at step 30",
    "list(thread, ns='', limit=10) at step 30",
    "list(thread, limit=10) at step 30",
    "30 messages: step",
    "30 messages: get_tuple (newest)",
    "list(None, filter=metadata, limit=10)",
)


def _quick(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== sessionstore-langgraph benchmark (quick) ==" in proc.stdout
    rows: list[dict[str, Any]] = json.loads(out.read_text())["rows"]
    for row in rows:
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("op_ms", "floor_ms", "ratio"))
    return rows


def _side(rows: list[dict[str, Any]], backend: str, theirs: str) -> None:
    found = {row["name"] for row in rows if row["driver"] == backend and row["runs"]}
    assert {f"{name}: ours / {theirs}" for name in SIDE_ROWS} <= found


def test_the_quick_benchmark_reports_every_row(tmp_path: Path) -> None:
    rows = _quick(tmp_path, "--drivers", "memory", "--side-by-side", "sqlite")
    names = {row["name"] for row in rows}
    assert "put + put_writes at step 300 / step 50" in names
    assert "1000 messages: ours / AsyncSqliteSaver" in names
    _side(rows, "sqlite", "AsyncSqliteSaver")


@pytest.mark.integration
@pytest.mark.skipif(find_bindir() is None, reason="no PostgreSQL binaries")
def test_the_quick_side_by_side_on_postgres_reports_every_row(tmp_path: Path) -> None:
    """Against ``AsyncPostgresSaver`` on a private server the benchmark starts."""
    rows = _quick(tmp_path, "--side-by-side", "postgres")
    assert {row["driver"] for row in rows} == {"postgres"}
    _side(rows, "postgres", "AsyncPostgresSaver")
