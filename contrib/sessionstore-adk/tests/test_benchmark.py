"""The benchmark runs and reports every row (timings are findings, never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sessionstore import SessionStore

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_adk.py"


@pytest.mark.parametrize("adapter_driver", ["memory"], indirect=True)
def test_bench_adk_quick(adapter_store: SessionStore, tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--url", "memory://", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert {(r["store"], r["name"].split(" ")[0]) for r in rows} == {
        ("ADK InMemorySessionService", "append_event"),
        ("ADK InMemorySessionService", "get_session(num_recent_events=20)"),
        ("memory://", "append_event"),
        ("memory://", "get_session(num_recent_events=20)"),
        ("memory://", "get_session(20)"),
    }
    assert len(rows) == 6
    for row in rows:
        assert row["op"] > 0 and row["floor"] > 0 and math.isfinite(row["ratio"])
    assert len(done.stdout.splitlines()) == 6
