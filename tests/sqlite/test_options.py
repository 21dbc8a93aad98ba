"""URLs and options of ``sqlite://``: what is accepted, what is refused (typed), and what
the store promises for each."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from sessionstore_sqlite import SqliteStore

from sessionstore import ConfigurationError, open_store


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = SqliteStore.from_url(f"sqlite://{tmp_path}/a.db?durability=none&lock_timeout=2")
    assert absolute.path == str(tmp_path / "a.db")
    assert absolute.options.durability == "none" and absolute.options.lock_timeout == 2.0
    assert not absolute.capabilities.durable and absolute.capabilities.cross_process
    assert SqliteStore.from_url(f"sqlite://localhost{tmp_path}/b.db").path == str(tmp_path / "b.db")
    monkeypatch.chdir(tmp_path)
    assert SqliteStore.from_url("sqlite://./rel.db").path == str(tmp_path / "rel.db")
    store = SqliteStore.from_url(f"sqlite://{tmp_path}/c.db?namespace=tenant-1")
    assert store.namespace == "tenant-1" and store.capabilities.durable


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://db.example.com/x.db",
        "sqlite:///:memory:",
        "sqlite:///tmp/x.db?durability=sometimes",
        "sqlite:///tmp/x.db?lock_timeout=0",
        "sqlite:///tmp/x.db?lock_timeout=soon",
        "sqlite:///tmp/x.db?journal=delete",
        "sqlite:///tmp/dir/",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SqliteStore.from_url(url)


def test_open_store_finds_the_driver_and_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"

    async def main() -> None:
        async with open_store(f"sqlite://{path}") as store:
            assert isinstance(store, SqliteStore)
            await store.create_session(id="x")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    asyncio.run(main())


def test_missing_file_or_directory(tmp_path: Path) -> None:
    async def main() -> None:
        for store in (
            SqliteStore(path=str(tmp_path / "absent.db"), create=False),
            SqliteStore(path=str(tmp_path / "no-such-dir" / "x.db")),
            SqliteStore(path=str(tmp_path)),
        ):
            with pytest.raises(ConfigurationError):
                await store.initialize()
            await store.shutdown()

    asyncio.run(main())
    assert sorted(p.name for p in tmp_path.iterdir()) == []
