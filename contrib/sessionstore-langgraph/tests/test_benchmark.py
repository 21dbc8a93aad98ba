"""The benchmark runs and reports every row (its ratios are findings, never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_langgraph.py"


def test_the_quick_benchmark_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--drivers", "memory", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== sessionstore-langgraph benchmark (quick) ==" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    names = {row["name"] for row in rows}
    assert "put + put_writes at step 300 / step 50" in names
    assert "1000 messages: ours / AsyncSqliteSaver" in names
    for row in rows:
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("op_ms", "floor_ms", "ratio"))
