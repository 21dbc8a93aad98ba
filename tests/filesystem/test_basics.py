"""URLs, options, the layout on disk, permissions and what a person sees in the files."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import orjson
import pytest
from sessionstore_filesystem import FileStore
from sessionstore_filesystem._engine import STORE_FORMAT

from sessionstore import (
    ConfigurationError,
    InvalidArgumentError,
    ManualClock,
    StoreNotFoundError,
    StoreUnavailableError,
    UnsupportedFormatError,
    open_store,
)

from .conftest import MakeStore, session_dir


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:///var/lib/app/sessions", "/var/lib/app/sessions"),
        ("file://localhost/srv/s", "/srv/s"),
        ("file:///tmp/with%20space", "/tmp/with space"),
    ],
)
def test_absolute_urls(url: str, expected: str) -> None:
    store = open_store(url)
    assert isinstance(store, FileStore)
    assert store.root == expected
    assert store.options.durability == "fsync"
    assert store.capabilities.durable and store.capabilities.cross_process


def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("file://./sessions")
    assert isinstance(store, FileStore)
    assert store.root == str(tmp_path / "sessions")
    up = open_store("file://../elsewhere")
    assert isinstance(up, FileStore)
    assert up.root == str(tmp_path.parent / "elsewhere")


def test_typed_options_from_the_query_string() -> None:
    store = open_store("file:///tmp/x?durability=none&lock_timeout=2.5&namespace=tenant-1")
    assert isinstance(store, FileStore)
    assert store.options.durability == "none"
    assert store.options.lock_timeout == 2.5
    assert store.namespace == "tenant-1"
    assert not store.capabilities.durable  # honest: no fsync, no durability promise


@pytest.mark.parametrize(
    "url",
    [
        "file://host/x",
        "file://",
        "file:///",
        "file:///tmp/x?durability=sometimes",
        "file:///tmp/x?lock_timeout=0",
        "file:///tmp/x?bogus=1",
        "file:///tmp/x?namespace=../up",
    ],
)
def test_bad_urls_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_root_is_required() -> None:
    with pytest.raises(ConfigurationError, match="root"):
        FileStore()


def test_windows_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ConfigurationError, match="Windows is not supported"):
        FileStore(root="C:/sessions")


@pytest.mark.asyncio
async def test_root_that_is_a_file_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("hello")
    with pytest.raises(ConfigurationError, match="not a directory"):
        await FileStore(root=str(not_a_dir), clock=clock).initialize()
    with pytest.raises(ConfigurationError, match="not a directory"):
        await FileStore(root=str(not_a_dir / "below"), clock=clock).initialize()
    assert not_a_dir.read_text() == "hello"


@pytest.mark.asyncio
async def test_missing_root_without_create_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        await FileStore(root=str(tmp_path / "absent"), create=False).initialize()
    assert issubclass(StoreNotFoundError, ConfigurationError)
    assert not (tmp_path / "absent").exists()


@pytest.mark.asyncio
async def test_create_false_opens_only_an_existing_store(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(StoreNotFoundError, match="not a sessionstore file store"):
        await FileStore.from_url(f"file://{folder}?create=false").initialize()
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing written

    store_root = tmp_path / "store"
    async with FileStore(root=str(store_root)) as store:
        await store.create_session(id="s1")
    before = sorted(str(p.relative_to(store_root)) for p in store_root.rglob("*"))
    async with FileStore(root=str(store_root), create=False) as existing:
        assert [s.id for s in await existing.list_sessions()] == ["s1"]
    with pytest.raises(StoreNotFoundError, match="no namespace 'other'"):
        await FileStore(root=str(store_root), namespace="other", create=False).initialize()
    assert not (store_root / "other").exists()
    after = sorted(str(p.relative_to(store_root)) for p in store_root.rglob("*"))
    assert [p for p in after if not p.endswith(".writer")] == [
        p for p in before if not p.endswith(".writer")
    ]


@pytest.mark.asyncio
async def test_newer_store_layout_is_refused(root: Path, make_store: MakeStore) -> None:
    async with make_store():
        pass
    (root / "_sessionstore.json").write_text('{"v":1,"format":"sessionstore-file","layout":99}\n')
    with pytest.raises(UnsupportedFormatError, match="newer"):
        await make_store().initialize()


@pytest.mark.asyncio
async def test_layout_1_store_is_upgraded_on_open(root: Path, make_store: MakeStore) -> None:
    async with make_store() as store:
        made = await store.create_session(data={"n": 1})
    # A store written before the change tokens (layout 1): its files are unchanged.
    (root / "_sessionstore.json").write_text('{"v":1,"format":"sessionstore-file","layout":1}\n')
    async with make_store() as store:
        assert (await store.get_session(made.id)) == made
        updated = await store.append_events(made.id, [{"type": "t"}])
        assert updated.version == 2
    marker = orjson.loads((root / "_sessionstore.json").read_bytes())
    assert marker["layout"] == STORE_FORMAT


@pytest.mark.asyncio
async def test_layout_permissions_and_readable_files(
    root: Path, make_store: MakeStore, clock: ManualClock
) -> None:
    async with make_store(durability="fsync") as store:
        s = await store.create_session(id="s-1", data={"goal": "triage"}, tags={"prod"})
        await store.append_events(s.id, [{"type": "tool_call", "data": {"name": "search"}}] * 3)
        await store.save_checkpoint(s.id, label="first")
    sdir = session_dir(root, "s-1")
    doc = json.loads((sdir / "session.json").read_text())
    assert doc["v"] == 1 and doc["id"] == "s-1" and doc["data"] == {"goal": "triage"}
    assert len(doc["sha256"]) == 64
    lines = (sdir / "events.1.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert all(json.loads(line)["v"] == 1 and "sha256" in json.loads(line) for line in lines)
    (cp_file,) = sdir.glob("checkpoints.*/*.json")
    assert json.loads(cp_file.read_text())["label"] == "first"
    _assert_private(root)


def _assert_private(root: Path) -> None:
    """Directories 0700, files 0600, everywhere under ``root``."""
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


@pytest.mark.asyncio
async def test_sessions_survive_a_restart(make_store: MakeStore) -> None:
    async with make_store(durability="fsync") as store:
        s = await store.create_session(data={"n": 1}, ttl=3600)
        s = await store.append_events(s.id, [{"type": "e"}])
    async with make_store() as again:
        assert await again.get_session(s.id) == s
        assert [e.type for e in await again.get_events(s.id)] == ["e"]


@pytest.mark.asyncio
async def test_closed_store_refuses_work(make_store: MakeStore) -> None:
    store = make_store()
    async with store:
        pass
    with pytest.raises(StoreUnavailableError):
        await store.get_session("x")


@pytest.mark.integration
def test_the_demo_keeps_its_sessions_across_runs(tmp_path: Path) -> None:
    """``scripts/dev.py demo`` runs the quickstart on ``file://./sessions``: run it twice."""
    import subprocess

    script = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    command = [sys.executable, str(script), "file://./sessions"]
    runs = [
        subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert "sessions now: 2" in runs[0].stdout
    assert "sessions now: 4" in runs[1].stdout  # the first run's sessions survived
    assert list((tmp_path / "sessions" / "_default" / "sessions").rglob("session.json"))


@pytest.mark.asyncio
async def test_sub_millisecond_ttl_gives_a_millisecond_expiry(
    make_store: MakeStore, clock: ManualClock
) -> None:
    """The core now truncates a ttl to whole ms, so the index (in ms) and the files agree."""
    from datetime import timedelta

    from sessionstore import SessionFilter

    async with make_store() as store:
        s = await store.create_session(ttl=1.0005)
        assert s.expires_at == clock.now() + timedelta(seconds=1)
        clock.advance(timedelta(milliseconds=999))
        assert await store.count_sessions() == 1
        clock.advance(timedelta(milliseconds=1))
        assert await store.get_session(s.id) is None
        assert await store.count_sessions() == 0
        assert await store.count_sessions(SessionFilter(include_expired=True)) == 1


@pytest.mark.asyncio
async def test_drop_namespace_removes_only_an_empty_namespace(tmp_path: Path) -> None:
    root = tmp_path / "store"
    async with FileStore(root=str(root)) as default:
        await default.create_session(id="keep")
    used = FileStore(root=str(root), namespace="scratch")
    await used.initialize()
    s = await used.create_session(id="s1")
    await used.append_events(s.id, [{"type": "t", "data": {}}])
    await used.save_checkpoint(s.id)
    with pytest.raises(InvalidArgumentError, match=r"not empty .*s1"):
        await used.drop_namespace()
    assert (root / "scratch").is_dir()  # nothing removed
    async with FileStore(root=str(root), namespace="scratch") as again:
        assert await again.get_session("s1") is not None
        await again.delete_session("s1")
        await again.drop_namespace()
        await again.drop_namespace()  # idempotent on a shut-down store
    assert sorted(p.name for p in root.iterdir()) == ["_default", "_sessionstore.json"]
    async with FileStore(root=str(root), create=False) as default:
        assert [x.id for x in await default.list_sessions()] == ["keep"]
