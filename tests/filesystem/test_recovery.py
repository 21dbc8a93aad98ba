"""Recovery after a writer died at a chosen point (a real process, ``os._exit``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sessionstore_filesystem import FileStore

from sessionstore import QueryOptions, SessionFilter, Status

from . import workers
from .conftest import leftovers
from .spawner import Spawner

# Real child processes (crashes, several writers): left out of the fast run.
pytestmark = pytest.mark.integration


async def _seed(root: str) -> None:
    async with FileStore(root=root) as store:
        await store.create_session(id="ta", data={"k": 0}, tags={"t"})
        await store.create_session(id="tb", data={"k": 0}, tags={"t"})


def _crash(root: str, point: str) -> None:
    asyncio.run(_seed(root))
    with Spawner() as spawner:
        child = spawner.start(workers.crash_at, root=root, point=point)
        assert child.wait(60) == []  # it died before acknowledging anything


def _pending(root: Path, sub: str) -> list[str]:
    return sorted(os.listdir(root / "_default" / sub))


@pytest.mark.asyncio
async def test_transaction_interrupted_between_sessions_is_completed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    await asyncio.to_thread(_crash, str(root), "between_sessions")
    assert len(_pending(root, "journal")) == 1  # committed, half applied
    async with FileStore(root=str(root)) as store:  # initialize() completes it
        assert _pending(root, "journal") == []
        ta, tb = await store.get_session("ta"), await store.get_session("tb")
        assert ta is not None and tb is not None
        assert (ta.data, ta.version, ta.event_count) == ({"k": 1}, 3, 1)
        assert (tb.data, tb.status, tb.version) == ({"k": 1}, Status.COMPLETED, 2)
        assert await store.count_sessions(SessionFilter(status="completed")) == 1  # indexed
        assert leftovers(root) == []


@pytest.mark.asyncio
async def test_a_running_store_completes_it_before_reading(tmp_path: Path) -> None:
    root = tmp_path / "store"
    await _seed(str(root))
    async with FileStore(root=str(root)) as store:  # already open when the writer dies
        await asyncio.to_thread(_crash_again, str(root))
        tb = await store.get_session("tb")  # a reader steps past the dead journal first
        assert tb is not None and tb.data == {"k": 1}
        assert _pending(root, "journal") == []


def _crash_again(root: str) -> None:
    with Spawner() as spawner:
        child = spawner.start(workers.crash_at, root=root, point="between_sessions")
        assert child.wait(60) == []


@pytest.mark.asyncio
async def test_journal_never_renamed_in_means_nothing_happened(tmp_path: Path) -> None:
    root = tmp_path / "store"
    await asyncio.to_thread(_crash, str(root), "before_journal_rename")
    assert [n for n in _pending(root, "journal") if n.startswith(".tmp.")]
    async with FileStore(root=str(root)) as store:
        assert _pending(root, "journal") == []  # the dead temp file is gone
        ta, tb = await store.get_session("ta"), await store.get_session("tb")
        assert ta is not None and tb is not None
        assert (ta.data, ta.version, tb.data, tb.version) == ({"k": 0}, 1, {"k": 0}, 1)
        assert leftovers(root) == []


@pytest.mark.asyncio
async def test_index_behind_the_files_is_repaired(tmp_path: Path) -> None:
    root = tmp_path / "store"
    await asyncio.to_thread(_crash, str(root), "before_index")
    assert len(_pending(root, "writers")) == 1  # the dead writer's in-flight marker
    async with FileStore(root=str(root)) as store:
        assert _pending(root, "writers") == []
        page = await store.list_sessions(SessionFilter(tags_all={"moved"}), QueryOptions())
        assert page.ids == ["ta"]
        assert await store.count_sessions(SessionFilter(tags_any={"moved"})) == 1


@pytest.mark.asyncio
async def test_a_pop_and_delete_transaction_interrupted_between_sessions(tmp_path: Path) -> None:
    """The journal replays removals and keyed appends; the event index follows."""
    root = tmp_path / "store"
    await asyncio.to_thread(_crash, str(root), "pop_between_sessions")
    assert len(_pending(root, "journal")) == 1
    async with FileStore(root=str(root)) as store:
        assert _pending(root, "journal") == []
        ta, tb = await store.get_session("ta"), await store.get_session("tb")
        assert ta is not None and tb is not None
        assert [e.key for e in await store.get_events("ta")] == ["k0", "k1", "k2"]
        assert [e.key for e in await store.get_events("tb")] == ["k0", "k2", "k3", "k4", "k9"]
        assert (ta.event_count, ta.last_seq, tb.event_count, tb.last_seq) == (3, 5, 5, 6)
        assert await store.get_event("ta", key="k3") is None
        assert await store.get_event("tb", key="k1") is None
        found = await store.get_event("tb", key="k9")
        assert found is not None and found.seq == 6
        assert [e.key for e in await store.get_events("tb", types=["e"], last=2)] == ["k4", "k9"]
        assert leftovers(root) == []


@pytest.mark.asyncio
async def test_pop_interrupted_before_the_cut(tmp_path: Path) -> None:
    """The document that drops the popped events is in place; their lines are not cut
    off the log yet. Readers ignore them; recovery cuts them; the keys are free."""
    root = tmp_path / "store"
    await asyncio.to_thread(_crash, str(root), "after_cut_commit")
    async with FileStore(root=str(root)) as store:
        ta = await store.get_session("ta")
        assert ta is not None and (ta.event_count, ta.last_seq) == (4, 6)
        assert [e.key for e in await store.get_events("ta")] == ["k0", "k1", "k2", "k3"]
        assert await store.get_event("ta", key="k5") is None
        assert [e.seq for e in await store.get_events("ta", types=["e"], last=2)] == [3, 4]
        assert leftovers(root) == []
        report = await store.doctor(dry_run=True)
        assert report.healthy and report.removed == []  # the writer's marker led to a tidy
        s = await store.append_events("ta", [{"type": "e", "key": "k5"}])
        assert (s.event_count, s.last_seq) == (5, 7)


@pytest.mark.asyncio
async def test_deleted_index_is_rebuilt(tmp_path: Path) -> None:
    root = tmp_path / "store"
    async with FileStore(root=str(root)) as store:
        for i in range(30):
            await store.create_session(id=f"s{i:02d}", tags={"even" if i % 2 else "odd"})
    for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
        (root / "_default" / name).unlink(missing_ok=True)
    async with FileStore(root=str(root)) as store:
        assert await store.count_sessions() == 30
        page = await store.list_sessions(SessionFilter(tags_all={"even"}), QueryOptions(limit=3))
        assert len(page) == 3
        assert await store.reindex() == 30
        assert await store.optimize() == {"indexed_sessions": 30}
        assert await store.count_sessions(SessionFilter(tags_any={"odd"})) == 15


@pytest.mark.asyncio
async def test_planted_journal_with_a_traversal_id_is_quarantined(tmp_path: Path) -> None:
    from sessionstore_filesystem._file_formats import seal

    root = tmp_path / "store"
    await _seed(str(root))
    body = b'{"v":1,"tx":"x","sessions":["../../escape"],"mutations":[]}'
    (root / "_default" / "journal" / "00000000000000000001-deadbeef.json").write_bytes(seal(body))
    async with FileStore(root=str(root)) as store:
        assert _pending(root, "journal") == []
        assert [n.split(".", 2)[1] for n in _pending(root, "quarantine")] == ["journal"]
        assert not (tmp_path / "escape").exists()
        assert any("journal" in name for name in store.corrupt_records)
        assert (await store.get_session("ta")) is not None


@pytest.mark.asyncio
async def test_stray_entries_do_not_break_scans(tmp_path: Path) -> None:
    root = tmp_path / "store"
    await _seed(str(root))
    (root / "_default" / "sessions" / "00" / "not a session").mkdir(parents=True)
    async with FileStore(root=str(root)) as store:
        assert sorted([r.session.id async for r in store.scan()]) == ["ta", "tb"]
        assert "sessions/00/not a session" in store.corrupt_records
