"""The example runs, the docs page's Python blocks run, the benchmark runs (its figures
are not asserted here: speed is measured as ratios by the benchmark itself)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from sessionstore import open_store
from tests.adapters.plugin import supports_event_log
from tests.docs.runner import redis_rewrite, run_page
from tests.docs.sandbox import sandboxed

ADAPTER = Path(__file__).resolve().parent.parent
DOCS_PAGE = ADAPTER.parent.parent / "docs" / "adapters" / "openai-agents.md"
DOCS_DB = 15


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    return env


async def _require_event_log(url: str) -> None:
    async with open_store(url) as store:
        if not supports_event_log(store):
            pytest.skip(f"{url.split(':')[0]} does not declare Capabilities.event_log")


@pytest.mark.integration
def test_the_example_runs_and_continues_the_conversation(tmp_path: Path) -> None:
    """On a durable store (file: the subprocess's imports of the SDK dominate its time,
    so one driver; the session code is the same on every driver, tested above)."""
    url = f"file://{tmp_path / 'sessions'}"
    asyncio.run(_require_event_log(url))
    runs = [
        subprocess.run(
            [sys.executable, str(ADAPTER / "examples" / "support_chat.py"), url],
            capture_output=True,
            text=True,
            env=_offline_env(),
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (run.stdout for run in runs)
    assert "history: 0 items" in first
    assert "agent: Found it: it arrives tomorrow." in first
    assert "history: 6 items" in first
    assert "popped: assistant" in first
    assert "sessions: ['customer 17/support']" in first
    assert "history: 5 items" in second  # the first run's conversation, less the pop
    assert "history: 11 items" in second


@pytest.mark.integration
def test_the_docs_page_runs(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    for name in [k for k in os.environ if k.startswith("OPENAI_API")]:
        monkeypatch.delenv(name)
    asyncio.run(_require_event_log("memory://"))
    parts = urlsplit(redis_url)
    url = f"redis://{parts.hostname}:{parts.port}/{DOCS_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    assert parts.hostname is not None and parts.port is not None
    with sandboxed(tmp_path, {(parts.hostname, parts.port)}) as fence:
        run = run_page(DOCS_PAGE, rewrite=redis_rewrite(url))
    assert not fence.violations, fence.violations
    assert len(run.ran) >= 8
    assert not run.skipped


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One of the adapter's benchmarks/ scripts, offline, from the adapter's directory."""
    return subprocess.run(
        [sys.executable, str(ADAPTER / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=_offline_env(),
        cwd=ADAPTER,
        timeout=300,
        check=False,
    )


def _run_benchmark(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    """The benchmark's ``--smoke`` run with ``args``; the rows of its ``--json``."""
    out = tmp_path / "bench.json"
    run = _run_script("bench_openai_agents.py", "--smoke", *args, "--json", str(out))
    assert out.exists(), run.stdout[-2000:] + run.stderr[-3000:]
    rows: list[dict[str, Any]] = json.loads(out.read_text())["rows"]
    assert all(row["ours_s"] > 0 and row["floor_s"] > 0 for row in rows)
    return rows


@pytest.mark.integration
def test_the_benchmark_runs_and_writes_every_row(tmp_path: Path, redis_url: str) -> None:
    rows = _run_benchmark(tmp_path, "--drivers", "memory,redis", "--redis-url", redis_url)
    names = [(row["driver"], row["name"], row["floor_name"]) for row in rows]
    assert names == [
        ("memory", "add_items([1 item])", "append_events"),
        ("memory", "get_items(limit=20)", "get_events(last=20)"),
        ("redis", "add_items([1 item])", "append_events"),
        ("redis", "get_items(limit=20)", "get_events(last=20)"),
        ("redis", "add_items([1 item])", "RedisSession"),
        ("redis", "get_items(limit=20)", "RedisSession"),
        ("redis", "get_items(limit=20), ~600 B items", "RedisSession"),
    ]


@pytest.mark.integration
def test_the_side_by_side_benchmark_runs_and_writes_every_row(
    tmp_path: Path, postgres_url: str
) -> None:
    """``--versus``: ours against the SDK's SQLAlchemySession on PostgreSQL, and against
    its SQLiteSession and SQLAlchemySession(aiosqlite) on SQLite (smoke sizes)."""
    rows = _run_benchmark(
        tmp_path, "--drivers", "", "--versus", "postgres,sqlite", "--postgres-url", postgres_url
    )
    ops = [
        "add_items([1 item]) @20",
        "add_items([1 item]) @50",
        "get_items(limit=20) of 20",
        "get_items() of 20",
        "pop_item() @20",
        "clear_session() of 20",
        "turn: get_items(20)+add_items(3) @20",
    ]
    pairs = [
        ("postgres", "SQLAlchemySession"),
        ("sqlite/fsync", "SQLiteSession"),
        ("sqlite/fsync", "SQLAlchemySession(aiosqlite)"),
    ]
    assert [(row["driver"], row["floor_name"], row["name"]) for row in rows] == [
        (backend, theirs, op) for backend, theirs in pairs for op in ops
    ]


@pytest.mark.integration
def test_the_sqlite_append_probe_runs_and_prints_every_side(tmp_path: Path) -> None:
    """``benchmarks/sqlite_append_probe.py`` at tiny sizes: every side is printed, and the
    WAL counts hold what docs/performance.md reads from them (our append writes more pages
    than SQLiteSession's; the copy without the four indexes fewer than ours)."""
    run = _run_script(
        "sqlite_append_probe.py",
        *("--dir", str(tmp_path), "--history", "5", "--calls", "5", "--rounds", "2"),
        *("--batch", "2"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    pages = {
        found[1]: float(found[2])
        for line in run.stdout.splitlines()
        if (found := re.match(r"\s+(.+?)\s{2,}([\d.]+) pages a commit", line))
    }
    assert set(pages) == {
        "SQLiteSession.add_items",
        "adapter add_items",
        "store.append_events",
        "raw statements (to_thread)",
        "raw statements, 4 indexes dropped",
    }, run.stdout
    assert pages["adapter add_items"] > pages["SQLiteSession.add_items"]
    assert pages["raw statements, 4 indexes dropped"] < pages["raw statements (to_thread)"]
    for side in ("adapter get_items(limit=20)", "SQLiteSession.get_items(limit=20)"):
        assert side in run.stdout
    assert "synchronous=FULL" in run.stdout
