"""One corrupt checkpoint must not block its session or a backup (issue #13, item 9).

Shared by the memory, file and Redis tests: each passes a function that damages the
stored bytes of one checkpoint the way only that driver can (an edited file, an edited
hash field, an edited in-memory record).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sessionstore import (
    BaseSessionStore,
    Checkpoint,
    IntegrityError,
    ManagerConfig,
    SessionNotFoundError,
    SessionPersistenceManager,
    open_store,
)
from sessionstore.backup import create_backup, restore_from_backup

#: ``await corrupt(store, session_id, checkpoint_id)`` damages that checkpoint's bytes.
Corrupt = Callable[[BaseSessionStore, str, str], Awaitable[None]]


async def check_corrupt_checkpoint_is_skipped_and_reported(
    store: BaseSessionStore, corrupt: Corrupt, tmp_path: Path, *, advance: Callable[[], object]
) -> None:
    """The whole contract, on one store: ``advance()`` moves the store's clock on."""
    s = await store.create_session(id="cp-s", data={"step": 0})
    other = await store.create_session(id="cp-t", data={"other": True})
    made: list[Checkpoint] = []
    for step in range(1, 4):
        advance()
        s = await store.update_session(s.id, merge_data={"step": step})
        made.append(await store.save_checkpoint(s.id, label=f"c{step}"))
    other_cp = await store.save_checkpoint(other.id, label="t")
    c1, bad, c3 = made
    await corrupt(store, s.id, bad.id)
    record = f"{s.id}/checkpoints/{bad.id}"

    # the listing returns the healthy ones and reports the bad one
    assert await store.list_checkpoints(s.id) == [c1, c3]
    assert record in store.corrupt_records
    # the bad one itself still raises, naming it; the healthy ones read as before
    with pytest.raises(IntegrityError) as info:
        await store.get_checkpoint(s.id, bad.id)
    assert info.value.record == record
    with pytest.raises(IntegrityError):
        await store.restore_checkpoint(s.id, bad.id)
    assert await store.get_checkpoint(s.id, c1.id) == c1

    # a new checkpoint can be saved; pruning counts and drops healthy ones only
    advance()
    c4 = await store.save_checkpoint(s.id, label="c4", keep_last=2)
    assert await store.list_checkpoints(s.id) == [c3, c4]
    with pytest.raises(IntegrityError):  # never pruned: left for doctor / delete
        await store.get_checkpoint(s.id, bad.id)
    # ...and so can the manager's checkpoint
    async with SessionPersistenceManager(store, config=ManagerConfig(cleanup_enabled=False)) as m:
        ms = await m.load_managed_session(s.id)
        advance()
        c5 = await ms.checkpoint(label="c5")
        assert [cp.id for cp in await ms.list_checkpoints()] == [c3.id, c4.id, c5.id]

    # a whole-store backup skips the bad checkpoint (reported), keeps everything else
    path = tmp_path / "all.jsonl"
    info_b = await create_backup(store, path)
    assert info_b.sessions == 2 and info_b.checkpoints == 4  # c3, c4, c5 and t's
    async with open_store("memory://") as copy:
        assert isinstance(copy, BaseSessionStore)
        await restore_from_backup(copy, path)
        assert [cp.id for cp in await copy.list_checkpoints(s.id)] == [c3.id, c4.id, c5.id]
        assert await copy.list_checkpoints(other.id) == [other_cp]

    # deleting it by id is the caller's way out (doctor's on the file driver)
    assert await store.delete_checkpoint(s.id, bad.id) is True
    with pytest.raises(SessionNotFoundError):
        await store.get_checkpoint(s.id, bad.id)
    assert await store.delete_checkpoint(s.id, bad.id) is False
