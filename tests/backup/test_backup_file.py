"""create_backup / verify_backup / list_backups / prune_backups, and the round trip."""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import sessionstore
from sessionstore import (
    ConfigurationError,
    IntegrityError,
    ManualClock,
    SessionFilter,
    UnsupportedFormatError,
)
from sessionstore.backup import (
    BACKUP_FORMAT_VERSION,
    BackupInfo,
    create_backup,
    list_backups,
    prune_backups,
    restore_from_backup,
    verify_backup,
)

from .conftest import (
    EXTRA_KINDS,
    STORE_KINDS,
    Opener,
    names,
    populate,
    rewrite,
    size,
    snapshot,
)

pytestmark = pytest.mark.asyncio


def lines_of(path: Path) -> list[dict[str, Any]]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [orjson.loads(line) for line in raw.splitlines()]


#: The issue's round trip: every leg is a backup of the previous store restored into the next.
ROUND_TRIP = ("memory", "file", "redis", "cluster", "postgres", "sqlite", "memory")


@pytest.mark.integration
@pytest.mark.parametrize("name", ["b.jsonl", "b.jsonl.gz", "b.jsonl.zst"])
async def test_round_trip_memory_file_redis_cluster_postgres_sqlite_memory_keeps_every_field(
    open_kind: Opener, clock: ManualClock, tmp_path: Path, name: str
) -> None:
    if name.endswith(".zst"):
        pytest.importorskip("zstandard")
    missing = [k for k in ROUND_TRIP if k not in {**STORE_KINDS, **EXTRA_KINDS}]
    if missing:
        pytest.skip(f"the round trip needs the {', '.join(missing)} driver(s)")
    source = await open_kind(ROUND_TRIP[0], "leg0")
    await populate(source, clock)
    expected = await snapshot(source)
    assert any(s.group for s, _, _ in expected.values())  # the data set covers every field
    infos = []
    previous = source
    for leg, kind in enumerate(ROUND_TRIP[1:], start=1):
        info = await create_backup(previous, tmp_path / f"leg{leg}-{name}", include_expired=True)
        infos.append((info.sessions, info.events, info.checkpoints))
        store = await open_kind(kind, f"leg{leg}")
        result = await restore_from_backup(store, info.path)
        assert (result.restored, result.events, result.checkpoints) == infos[0], kind
        # ids, versions, timestamps, events, checkpoints, tags, metadata, group, expiry
        assert await snapshot(store) == expected, f"leg {leg}: {ROUND_TRIP[leg - 1]} -> {kind}"
        previous = store
    assert len(set(infos)) == 1


async def test_every_driver_backs_up_and_restores_itself(
    open_kind: Opener, kind: str, clock: ManualClock, tmp_path: Path
) -> None:
    source = await open_kind(kind, "src")
    await populate(source, clock)
    info = await create_backup(source, tmp_path / "x.jsonl.gz", include_expired=True)
    target = await open_kind(kind, "dst")
    await restore_from_backup(target, info.path)
    assert await snapshot(target) == await snapshot(source)


async def test_file_layout_header_records_and_trailer(
    open_kind: Opener, clock: ManualClock, tmp_path: Path
) -> None:
    store = await open_kind("memory")
    await populate(store, clock)
    store._url = "memory://admin:hunter2@example/"  # as if opened with a password
    info = await create_backup(store, tmp_path / "b.jsonl", filter=SessionFilter(tags_any={"prod"}))
    rows = lines_of(Path(info.path))
    header, trailer = rows[0], rows[-1]
    assert header["kind"] == "header" and header["format"] == "sessionstore-backup"
    assert header["format_version"] == BACKUP_FORMAT_VERSION
    assert "hunter2" not in info.path and "hunter2" not in str(rows)
    assert header["source"] == store.url and "***" in header["source"]
    assert header["filter"] == {"tags_any": ["prod"]}
    assert header["sessionstore_version"] == sessionstore.__version__
    assert header["created_at"].endswith("Z")
    kinds = [r["kind"] for r in rows]
    assert kinds == [
        "header",
        "session", "checkpoint", "checkpoint", "events",  # a-full (d-expiring is expired)
        "session", "events",  # c-events
        "trailer",
    ]  # fmt: skip
    assert trailer == {
        "kind": "trailer",
        "sessions": 2,
        "events": 5 + 25,
        "checkpoints": 2,
        "lines": 7,
        "sha256": info.sha256,
    }
    assert info.complete and not info.verified and info.size == size(info.path)


async def test_long_event_history_is_written_in_chunks(open_kind: Opener, tmp_path: Path) -> None:
    store = await open_kind("memory")
    await store.create_session(id="long")
    for _ in range(6):
        await store.append_events(
            "long", [{"type": "e", "data": {"i": i, "pad": "x" * 200}} for i in range(2_000)]
        )
    info = await create_backup(store, tmp_path / "b.jsonl")
    chunks = [r for r in lines_of(Path(info.path)) if r["kind"] == "events"]
    assert len(chunks) > 2
    assert [e["seq"] for c in chunks for e in c["events"]] == list(range(1, 12_001))
    assert max(len(orjson.dumps(c)) for c in chunks) < 2 << 20


async def test_verify_returns_verified_info(
    open_kind: Opener, clock: ManualClock, tmp_path: Path
) -> None:
    store = await open_kind("memory")
    await populate(store, clock)
    info = await create_backup(store, tmp_path / "b.jsonl.gz")
    seen: list[tuple[str, int, int | None]] = []
    verified = await verify_backup(info.path, progress=lambda *a: seen.append(a))
    assert verified.verified and verified.complete
    assert (verified.sessions, verified.events, verified.checkpoints, verified.sha256) == (
        info.sessions,
        info.events,
        info.checkpoints,
        info.sha256,
    )
    assert seen[-1] == ("verify", info.sessions, info.sessions)


async def test_newer_format_version_is_refused(open_kind: Opener, tmp_path: Path) -> None:
    store = await open_kind("memory")
    await store.create_session(id="x")
    info = await create_backup(store, tmp_path / "b.jsonl")
    rewrite(
        info.path,
        lambda raw: raw.replace(
            b'"format_version":%d' % BACKUP_FORMAT_VERSION, b'"format_version":99', 1
        ),
    )
    with pytest.raises(UnsupportedFormatError, match="newer"):
        await verify_backup(info.path)


async def test_not_a_backup_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"hello": "world"}\n')
    with pytest.raises(IntegrityError, match="line 1"):
        await verify_backup(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(IntegrityError):
        await verify_backup(empty)


async def test_backup_into_a_directory_makes_up_a_name(open_kind: Opener, tmp_path: Path) -> None:
    store = await open_kind("memory")
    await store.create_session(id="x")
    info = await create_backup(store, tmp_path, compression="gzip")
    assert Path(info.path).parent == tmp_path
    assert Path(info.path).name.startswith("sessionstore-backup-memory-")
    assert info.path.endswith(".jsonl.gz") and info.compression == "gzip"
    assert names(tmp_path) == [Path(info.path).name]  # no temp file left


async def test_failed_backup_leaves_no_file(open_kind: Opener, tmp_path: Path) -> None:
    store = await open_kind("memory")
    for n in range(600):
        await store.create_session(id=f"s{n:04d}")

    def stop(phase: str, done: int, total: int | None) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        await create_backup(store, tmp_path / "b.jsonl", progress=stop)
    assert names(tmp_path) == []


async def test_zstd_without_zstandard_is_a_clear_configuration_error(
    open_kind: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_kind("memory")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ConfigurationError, match=r"sessionstore\[backup\]"):
        await create_backup(store, tmp_path / "b.jsonl.zst")


async def test_backup_created_hook_fires(open_kind: Opener, tmp_path: Path) -> None:
    got: list[BackupInfo] = []

    class Observer:
        @sessionstore.hookimpl
        def sessionstore_backup_created(self, info: BackupInfo) -> None:
            got.append(info)

    observer = Observer()
    sessionstore.plugin_manager().register(observer)
    try:
        store = await open_kind("memory")
        info = await create_backup(store, tmp_path / "b.jsonl")
    finally:
        sessionstore.plugin_manager().unregister(observer)
    assert got == [info]


async def test_list_and_prune_backups(
    open_kind: Opener, clock: ManualClock, tmp_path: Path
) -> None:
    store = await open_kind("memory")
    await store.create_session(id="x")
    made = []
    for name in ("one.jsonl", "two.jsonl.gz", "three.jsonl.zst", "four.jsonl"):
        if name.endswith(".zst") and pytest.importorskip("zstandard") is None:
            continue
        made.append(await create_backup(store, tmp_path / name))
        clock.advance(60)
    (tmp_path / "notes.txt").write_text("not a backup\n")
    cut = tmp_path / "cut.jsonl"
    shutil.copy(made[0].path, cut)
    rewrite(cut, lambda raw: raw[:-30])
    listed = await list_backups(tmp_path)
    assert [Path(i.path).name for i in listed if i.complete] == [Path(i.path).name for i in made]
    assert [i.complete for i in listed if i.path == str(cut)] == [False]
    assert all(i.sessions == 1 for i in listed if i.complete)
    assert [i.compression for i in listed if i.complete] == ["none", "gzip", "zstd", "none"]
    removed = await prune_backups(tmp_path, max_backups=2)
    assert [Path(i.path).name for i in removed] == ["one.jsonl", "two.jsonl.gz"]
    assert names(tmp_path) == sorted(["three.jsonl.zst", "four.jsonl", "notes.txt", "cut.jsonl"])
    with pytest.raises(ValueError, match="max_backups"):
        await prune_backups(tmp_path, max_backups=0)


async def test_overwrite_false_refuses_an_existing_file(open_kind: Opener, tmp_path: Path) -> None:
    store = await open_kind("memory", "src")
    await store.create_session(id="s1")
    target = tmp_path / "b.jsonl"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists") as refused:
        await create_backup(store, target, overwrite=False)
    assert refused.value.filename == str(target)
    assert target.read_bytes() == b"precious"
    assert _names(tmp_path) == ["b.jsonl"]  # no temporary left
    info = await create_backup(store, target)  # the default replaces it
    assert (await verify_backup(info.path)).sessions == 1
    fresh = await create_backup(store, tmp_path / "new.jsonl", overwrite=False)
    assert fresh.sessions == 1

    # a file that appears while the backup runs is not replaced either
    late = tmp_path / "late.jsonl"

    def someone_else_writes(phase: str, done: int, total: int | None) -> None:
        late.write_bytes(b"theirs")

    with pytest.raises(FileExistsError, match="already exists"):
        await create_backup(store, late, overwrite=False, progress=someone_else_writes)
    assert late.read_bytes() == b"theirs"
    assert _names(tmp_path) == ["b.jsonl", "late.jsonl", "new.jsonl"]


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())
