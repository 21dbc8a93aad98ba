"""The benchmark runs and reports every row (timings are findings, never asserted)."""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_adk", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_adk", module)  # its dataclasses look their module up
    spec.loader.exec_module(sys.modules["bench_adk"])
    return sys.modules["bench_adk"]


#: what --vs measures, at sizes small enough for a smoke test
VS_ROWS = {
    "create_session (session, app: and user: state)",
    "append_event at 2 events",
    "append_event at 4 events",
    "get_session, all 4 events",
    "get_session(num_recent_events=20) at 4",
    "list_sessions(app, user), 4 sessions",
    "delete_session (3 events)",
}


async def test_bench_adk_side_by_side_sqlite(tmp_path: Path) -> None:
    bench = _bench()
    sizes = bench.VsSizes(small=2, big=4, sessions=4, rounds=2, number=1, heavy=1)
    # every row runs with the fixtures frozen out of the collector's scans (what was alive
    # before the pair), and the process is left unfrozen
    frozen: list[int] = []
    compare = bench.compare

    async def watched(a: Any, b: Any, *, rounds: int, number: int) -> tuple[float, float]:
        frozen.append(gc.get_freeze_count())
        result: tuple[float, float] = await compare(a, b, rounds=rounds, number=number)
        return result

    bench.compare = watched
    # durability=none only: ADK's services fsync every write already
    try:
        rows = await bench.run_vs_sqlite(sizes, tmp_path, durabilities=("none",))
    finally:
        bench.compare = compare
    assert len(frozen) == 2 * len(VS_ROWS) and min(frozen) > 0
    assert gc.get_freeze_count() == 0
    pairs = {r.store for r in rows}
    assert len(pairs) == 2  # against ADK's two SQLite services
    assert all(r.store.startswith("sqlite: ours, durability=none (wal, NORMAL) / ") for r in rows)
    assert {r.name for r in rows} == VS_ROWS and len(rows) == 2 * len(VS_ROWS)
    for row in rows:
        assert row.op > 0 and row.floor > 0 and math.isfinite(row.ratio)


@pytest.mark.parametrize("adapter_driver", ["postgres"], indirect=True)
async def test_bench_adk_side_by_side_postgres(adapter_store_url: str) -> None:
    bench = _bench()
    sizes = bench.VsSizes(small=2, big=4, sessions=4, rounds=2, number=1, heavy=1)
    rows = await bench.run_vs_postgres(sizes, adapter_store_url)
    assert {r.store for r in rows} == {"postgresql: ours / ADK DatabaseSessionService(asyncpg)"}
    assert {r.name for r in rows} == VS_ROWS and len(rows) == len(VS_ROWS)
    for row in rows:
        assert row.op > 0 and row.floor > 0 and math.isfinite(row.ratio)
