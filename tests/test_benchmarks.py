"""The benchmarks run and report every row (timings are never asserted: they are findings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from benchmarks._harness import Report, Row, Target, Timing

ROOT = Path(__file__).resolve().parents[1]

MEMORY_ROWS = {
    "get_session (~2 KB)",
    "create_session (~2 KB)",
    "update_session merge_data",
    "append_events, 10,000 events",
    "list_sessions tag+range, 10,000",
}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_bench_memory_quick_runs_and_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== sessionstore memory:// benchmark (quick) ==" in proc.stdout
    report = json.loads(out.read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == MEMORY_ROWS
    for row in rows.values():
        for key in ("op_s", "floor_s", "ratio", "target_limit"):
            assert _number(row[key]) and row[key] > 0, (row["name"], key, row[key])
        assert isinstance(row["passed"], bool)
        assert row["target_kind"] in ("at_most", "at_least")
        assert all(_number(t) for t in row["op_timing"]["per_call_s"])
        assert all(_number(t) for t in row["floor_timing"]["per_call_s"])
        assert ("PASS" if row["passed"] else "FAIL") in proc.stdout
    assert report["meta"]["quick"] is True
    assert _number(report["meta"]["load_seconds"])


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
