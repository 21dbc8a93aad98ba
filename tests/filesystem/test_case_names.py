"""File names on a volume that ignores case: the ``"cased"`` rule, its choice, the upgrade.

The rule and the upgrade run on the ordinary (case-sensitive) test volume with
``names="cased"`` forced; ``exfat`` tests run the same on a real case-insensitive volume
(an exFAT image mounted through FUSE), skipped where that cannot be mounted (not root, no
``losetup``, ``mkfs.exfat`` or ``mount.exfat-fuse``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sessionstore_filesystem import FileStore
from sessionstore_filesystem._layout import (
    COMPACT_SUFFIX,
    cased_id,
    cased_name,
    shard_of,
)
from sessionstore_filesystem._names import NAMES_ENV

from sessionstore import ConfigurationError, IntegrityError, Session, SessionRecord

from .conftest import session_dir

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True).filter(
    lambda s: ".." not in s
)


@pytest.fixture(autouse=True)
def _no_forced_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests choose the rule themselves (``SESSIONSTORE_FILE_NAMES`` left out)."""
    monkeypatch.delenv(NAMES_ENV, raising=False)


# --------------------------------------------------------------------------- the rule


@given(ids, ids)
def test_cased_names_differ_in_more_than_case(a: str, b: str) -> None:
    if a != b:
        assert cased_name(a).lower() != cased_name(b).lower()


@given(ids)
def test_cased_names_round_trip(sid: str) -> None:
    name = cased_name(sid)
    assert cased_id(name) == sid
    if sid == sid.lower():
        assert name == sid  # no capitals: the plain name
    longest = f".tmp.{name}{COMPACT_SUFFIX}.{'0' * 12}"  # the longest name made of it
    assert len(longest.encode()) <= 255


def test_cased_name_examples() -> None:
    assert cased_name("01HZX3K5Q8W2E7R9T6Y4U1I0OP") == "01HZX3K5Q8W2E7R9T6Y4U1I0OP+"  # a ULID
    assert cased_name("k50") == "k50"
    assert cased_name("K50") == "K50+"
    assert cased_name("aB.c-D") == "aB.c-D+22"  # capitals at 1 and 5
    assert cased_id("K50") is None  # a plain name with a capital is not a cased one
    assert cased_id("k50+") is None


# --------------------------------------------------------------------------- forced


def _pair_in_one_shard(n: int = 3) -> list[str]:
    """Ids ``K<i>``/``k<i>`` that land in one shard (so they would share a file name)."""
    found: list[str] = []
    i = 0
    while len(found) < 2 * n:
        if shard_of(f"K{i}") == shard_of(f"k{i}"):
            found += [f"K{i}", f"k{i}"]
        i += 1
    return found


@pytest.mark.asyncio
async def test_forced_cased_names_on_disk(root: Path) -> None:
    async with FileStore(root=str(root), durability="none", names="cased") as store:
        await store.create_session(id="Ab", data={"n": 1})
        await store.create_session(id="ab", data={"n": 2})
        await store.create_session(id="cd", data={"n": 3})
        await store.append_events("Ab", [{"type": "e"}])  # a directory
    marker = json.loads((root / "_sessionstore.json").read_text())
    assert marker["names"] == "cased"
    assert session_dir(root, "Ab").name == "Ab+1"
    assert session_dir(root, "Ab").is_dir()
    assert (session_dir(root, "ab").parent / "ab~.json").is_file()
    assert (session_dir(root, "cd").parent / "cd~.json").is_file()
    async with FileStore(root=str(root), durability="none") as store:  # "auto": the marker
        assert set(await store.get_sessions(["Ab", "ab", "cd"])) == {"Ab", "ab", "cd"}
        assert len(await store.get_events("Ab")) == 1
        assert (await store.doctor(dry_run=True)).to_dict()["removed"] == []
    with pytest.raises(ConfigurationError, match="names=plain"):
        async with FileStore(root=str(root), names="plain"):
            pass


@pytest.mark.asyncio
async def test_a_case_sensitive_volume_gets_plain_names(root: Path) -> None:
    async with FileStore(root=str(root), durability="none") as store:
        await store.create_session(id="Ab")
    assert json.loads((root / "_sessionstore.json").read_text())["names"] == "plain"
    assert (session_dir(root, "Ab").parent / "Ab~.json").is_file()


async def _fill_plain(root: Path) -> dict[str, dict[str, int]]:
    """A plain store with capitals in compact sessions, directories, a namespace."""
    made: dict[str, dict[str, int]] = {}
    async with FileStore(root=str(root), durability="none", names="plain") as store:
        for i, sid in enumerate(["Compact1", "lower1", "WithEvents", "ULID01HZX3K5Q8W2"]):
            await store.create_session(id=sid, data={"i": i})
            made[sid] = {"i": i}
        await store.append_events("WithEvents", [{"type": "e"}])
        await store.save_checkpoint("WithEvents", label="x")
    async with FileStore(root=str(root), durability="none", namespace="Prod") as store:
        await store.create_session(id="InProd", data={"p": 1})
    return made


@pytest.mark.asyncio
async def test_upgrade_of_a_plain_store(root: Path) -> None:
    made = await _fill_plain(root)
    (root / "NotOurs").mkdir()  # something else in the root: left alone
    assert (session_dir(root, "Compact1").parent / "Compact1~.json").is_file()
    async with FileStore(root=str(root), durability="none", names="cased") as store:
        found = await store.get_sessions(list(made))
        assert {s.id: s.data for s in found.values()} == made
        assert len(await store.get_events("WithEvents")) == 1
        assert len(await store.list_checkpoints("WithEvents")) == 1
        await store.append_events("Compact1", [{"type": "e"}])  # a write after it
        assert (await store.doctor(dry_run=True)).to_dict()["removed"] == []
    assert json.loads((root / "_sessionstore.json").read_text())["names"] == "cased"
    assert session_dir(root, "WithEvents").name == "WithEvents+11"
    assert (session_dir(root, "lower1").parent / "lower1~.json").is_file()
    assert (root / "Prod+1").is_dir() and not (root / "Prod").exists()
    assert (root / "NotOurs").is_dir()
    async with FileStore(root=str(root), durability="none", namespace="Prod") as store:
        assert _data(await store.get_session("InProd")) == {"p": 1}


_KILLED_UPGRADE = textwrap.dedent(
    """
    import asyncio, os, sys
    from sessionstore_filesystem import FileStore, _names
    root, after = sys.argv[1], int(sys.argv[2])
    real, calls = os.rename, [0]
    def rename(*args, **kwargs):
        if calls[0] == after:
            os._exit(9)  # killed: nothing after this rename runs
        calls[0] += 1
        return real(*args, **kwargs)
    _names.os.rename = rename
    async def main():
        async with FileStore(root=root, durability="none", names="cased"):
            pass
    asyncio.run(main())
    print(calls[0])
    """
)


@pytest.mark.integration  # a subprocess killed at each rename
@pytest.mark.asyncio
async def test_an_upgrade_killed_at_any_rename_is_finished_by_the_next_open(
    tmp_path: Path,
) -> None:
    base = tmp_path / "base"
    made = await _fill_plain(base)
    cut = 0
    while True:
        root = tmp_path / f"cut{cut}"
        shutil.copytree(base, root)
        run = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", _KILLED_UPGRADE, str(root), str(cut)],
            capture_output=True, text=True, env=_env(), check=False,
        )  # fmt: skip
        assert run.returncode in (0, 9), run.stderr
        async with FileStore(root=str(root), durability="none") as store:  # "auto"
            found = await store.get_sessions(list(made))
            assert {s.id: s.data for s in found.values()} == made, cut
            assert len(await store.get_events("WithEvents")) == 1
            assert (await store.doctor(dry_run=True)).to_dict()["removed"] == []
        assert json.loads((root / "_sessionstore.json").read_text())["names"] == "cased"
        if run.returncode == 0:  # the upgrade ran to its end: every cut was tried
            assert cut == int(run.stdout) and cut >= 5
            break
        cut += 1


def _data(session: Session | None) -> object:
    assert session is not None
    return session.data


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != NAMES_ENV}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- exFAT


def _exfat_tools() -> str | None:
    """Why an exFAT volume cannot be mounted here (None: it can)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux"
    missing = [t for t in ("losetup", "mkfs.exfat", "mount.exfat-fuse") if not shutil.which(t)]
    if missing:
        return f"needs {', '.join(missing)}"
    return None


@pytest.fixture(scope="module")
def exfat() -> Iterator[Path]:
    """A fresh exFAT volume (case-insensitive, case-preserving) mounted through FUSE."""
    why = _exfat_tools()
    if why is not None:
        pytest.skip(f"no exFAT volume: {why}")
    work = Path(tempfile.mkdtemp(prefix="sessionstore-exfat-"))
    image, mount = work / "img", work / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(64 << 20)
    loop = ""
    try:
        subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True, timeout=60)
        loop = subprocess.run(
            ["losetup", "-f", "--show", str(image)],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        subprocess.run(
            ["mount.exfat-fuse", loop, str(mount)], check=True, capture_output=True, timeout=30
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        pytest.skip(f"no exFAT volume: {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True, timeout=60)
        subprocess.run(["losetup", "-d", loop], check=False, capture_output=True, timeout=30)
        shutil.rmtree(work, ignore_errors=True)


_READ_BACK = textwrap.dedent(
    """
    import asyncio, json, sys
    from sessionstore_filesystem import FileStore
    root, wanted = sys.argv[1], json.loads(sys.argv[2])
    async def main():
        async with FileStore(root=root, durability="none", create=False) as store:
            out = {}
            for sid in wanted:
                try:
                    s = await store.get_session(sid)
                    out[sid] = s.data if s is not None else None
                except Exception as exc:
                    out[sid] = f"{type(exc).__name__}: {exc}"
            scanned = sorted([r.session.id async for r in store.scan()])
            print(json.dumps({"got": out, "scanned": scanned}))
    asyncio.run(main())
    """
)


async def _read_back(root: Path, wanted: list[str]) -> dict[str, object]:
    """What a fresh process reads of ``wanted`` (and finds scanning every session)."""
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _READ_BACK, str(root), json.dumps(wanted)],
        capture_output=True, text=True, env=_env(), check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result: dict[str, object] = json.loads(run.stdout)
    return result


@pytest.mark.integration  # a volume mounted through FUSE
@pytest.mark.asyncio
async def test_exfat_store_gets_cased_names_and_keeps_ids_apart(exfat: Path) -> None:
    root = exfat / "auto"
    pairs = _pair_in_one_shard(4)
    async with FileStore(root=str(root), durability="none") as store:
        for sid in pairs:
            await store.create_session(id=sid, data={"id": sid})
        await store.append_events(pairs[0], [{"type": "e"}])  # a directory (no hard links)
        records = [r async for r in store.scan()]
    assert json.loads((root / "_sessionstore.json").read_text())["names"] == "cased"
    back = await _read_back(root, pairs)
    assert back["got"] == {sid: {"id": sid} for sid in pairs}
    assert back["scanned"] == sorted(pairs)
    restored = exfat / "restored"  # whole documents written in one batch, each its own
    async with FileStore(root=str(restored), durability="none") as store:
        assert (await store.put_records(records)).created == len(pairs)
    back = await _read_back(restored, pairs)
    assert back["got"] == {sid: {"id": sid} for sid in pairs}


@pytest.mark.integration  # a volume mounted through FUSE
@pytest.mark.asyncio
async def test_exfat_plain_store_collides_until_upgraded(
    exfat: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = exfat / "plain"
    upper, lower = _pair_in_one_shard(1)
    async with FileStore(root=str(root), durability="none", names="plain") as store:
        await store.create_session(id=upper, data={"id": upper})
        with pytest.raises(IntegrityError, match="names another session"):
            await store.create_session(id=lower, data={"id": lower})
    before = await _read_back(root, [lower])
    assert "IntegrityError" in str(before["got"])  # as before the upgrade: reported
    with caplog.at_level(logging.WARNING, "sessionstore.filesystem"):
        async with FileStore(root=str(root), durability="none") as store:  # "auto": plain
            assert _data(await store.get_session(upper)) == {"id": upper}
            await store.update_session(upper, merge_data={"more": 1})
    assert "case-insensitive file system with plain file names" in caplog.text
    assert json.loads((root / "_sessionstore.json").read_text())["names"] == "plain"
    async with FileStore(root=str(root), durability="none", names="cased") as store:
        await store.create_session(id=lower, data={"id": lower})
        await store.append_events(lower, [{"type": "e"}])
    back = await _read_back(root, [upper, lower])
    assert back["got"] == {upper: {"id": upper, "more": 1}, lower: {"id": lower}}
    assert back["scanned"] == sorted([upper, lower])


@pytest.mark.integration  # a volume mounted through FUSE
@pytest.mark.asyncio
async def test_exfat_upgrade_keeps_a_document_under_its_own_id(exfat: Path) -> None:
    """A plain store's file holding the other id's document (what a writer that does not
    check, or a copy by hand, can leave) goes to that id's name: the document says whose
    it is. A restore of both ids into a plain store refuses the second, as a create does."""
    root = exfat / "replaced"
    upper, lower = _pair_in_one_shard(1)
    async with FileStore(root=str(exfat / "source"), durability="none") as source:
        made = await source.create_session(id=upper, data={"id": upper})
        other = await source.create_session(id=lower, data={"id": lower})
    async with FileStore(root=str(root), durability="none", names="plain") as store:
        with pytest.raises(IntegrityError, match="names another session"):
            await store.put_records([SessionRecord(session=made), SessionRecord(session=other)])
    shard = session_dir(root, upper).parent
    copied = session_dir(exfat / "source", lower).parent / f"{cased_name(lower)}~.json"
    (shard / f"{upper}~.json").write_bytes(copied.read_bytes())
    async with FileStore(root=str(root), durability="none", names="cased") as store:
        assert _data(await store.get_session(lower)) == {"id": lower}
        assert await store.get_session(upper) is None  # it was replaced, as before
        assert (await store.doctor(dry_run=True)).healthy
