"""``migrate``: copy sessions from one store to another, resumably.

The source is read exactly as a backup reads it (pages of a keyset query by id, events in
chunks) and the items go straight into the restore write engine: no temporary file, so
memory stays flat and nothing is written twice to disk. Progress is recorded after every
page in a small JSON state file (the last completed id and the source's cursor after
it); a rerun with the same state file continues after that page. Sessions written after
the last recorded page are simply written again, which the merge strategies make
harmless (``skip_existing`` skips them, ``overwrite`` writes the same content).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from ..driver import check_strategy, primitives_of
from ..errors import ConfigurationError, IntegrityError
from ..protocol import SessionStore
from ..query import SessionFilter
from ..registry import open_store
from ._engine import BATCH_SIZE, WriteEngine
from ._format import PageEnd
from ._results import MigrateResult, ProgressCallback
from ._source import ChunkSizer, store_items, with_include_expired
from ._writer import check_store, store_url

__all__ = ["migrate"]

_STATE_FORMAT: Final = "sessionstore-migrate-state"


@dataclass
class _State:
    cursor: str | None = None
    last_id: str | None = None
    done: int = 0


async def _open(target: str | SessionStore, stack: AsyncExitStack, what: str) -> SessionStore:
    if isinstance(target, str):
        opened: SessionStore = await stack.enter_async_context(open_store(target))
        return opened
    store = check_store(target, what)
    primitives_of(store).check_open()
    return store


def _state_path(value: str | os.PathLike[str]) -> Path:
    return Path(value).expanduser()


def _describe(store: SessionStore) -> str:
    return store_url(store) or repr(store)


def _identity(src: SessionStore, dst: SessionStore, flt: SessionFilter) -> dict[str, Any]:
    return {"source": _describe(src), "destination": _describe(dst), "filter": flt.to_dict()}


def _read_state(path: Path, identity: dict[str, Any]) -> _State:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _State()
    try:
        rec = orjson.loads(raw)
        if not isinstance(rec, dict) or rec.get("format") != _STATE_FORMAT:
            raise ValueError("not a migrate state file")
    except ValueError:
        raise IntegrityError("not a sessionstore migrate state file", str(path)) from None
    theirs = {key: rec.get(key) for key in identity}
    if theirs != identity:
        raise ConfigurationError(
            f"state file {str(path)!r} belongs to another migration "
            f"({theirs['source']} -> {theirs['destination']}, filter {theirs['filter']}); "
            "remove it or give another one"
        )
    cursor, last_id, done = rec.get("cursor"), rec.get("last_id"), rec.get("done")
    return _State(
        cursor if isinstance(cursor, str) else None,
        last_id if isinstance(last_id, str) else None,
        done if isinstance(done, int) else 0,
    )


def _write_state(path: Path, identity: dict[str, Any], state: _State) -> None:
    body = orjson.dumps(
        {
            "format": _STATE_FORMAT,
            **identity,
            "cursor": state.cursor,
            "last_id": state.last_id,
            "done": state.done,
        },
        option=orjson.OPT_INDENT_2,
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def migrate(
    source: str | SessionStore,
    destination: str | SessionStore,
    *,
    filter: SessionFilter | None = None,
    include_expired: bool = False,
    strategy: str = "skip_existing",
    checkpoint_file: str | os.PathLike[str] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> MigrateResult:
    """Copy sessions (with events and checkpoints, exactly) from ``source`` to ``destination``.

    Each side is a store URL (opened and closed here) or an open store. ``filter`` and
    ``include_expired`` select the sessions as for a backup; ``strategy`` is a merge
    strategy as for :func:`restore_from_backup` (with ``fail_on_conflict`` the run stops at
    the first existing session; what was copied before it stays).

    With ``checkpoint_file`` the run is resumable: progress (the last completed id in id
    order) is saved there after every page, a rerun after an interruption continues after
    it, and the file is removed once the run completes. A state file of another migration
    (other source, destination or filter) is refused with :class:`ConfigurationError`.
    """
    strategy = check_strategy(strategy)
    state_path = None if checkpoint_file is None else _state_path(checkpoint_file)
    async with AsyncExitStack() as stack:
        src = await _open(source, stack, "source")
        dst = await _open(destination, stack, "destination")
        flt = with_include_expired(filter, include_expired)
        identity = _identity(src, dst, flt)
        state = _State() if state_path is None else _read_state(state_path, identity)
        resumed_after = state.last_id
        sizer = ChunkSizer()
        total = await src.count_sessions(flt) if progress is not None else None
        engine = WriteEngine(
            primitives_of(dst), strategy, check_sizes=True, batch_size=batch_size, phase="migrate",
            total=total, progress=progress, sizer=sizer,
        )  # fmt: skip
        engine.done = state.done
        items = store_items(src, flt, sizer, cursor=state.cursor, page_size=batch_size)
        async for item in items:
            if isinstance(item, PageEnd):
                await engine.commit_point()
                state = _State(item.cursor, item.last_id, engine.done)
                if state_path is not None:
                    await asyncio.to_thread(_write_state, state_path, identity, state)
                continue
            await engine.feed(item)
        counts = await engine.finish()
        if state_path is not None:
            with contextlib.suppress(FileNotFoundError):
                state_path.unlink()
        return MigrateResult(
            source=store_url(src),
            destination=store_url(dst),
            strategy=strategy,
            resumed_after=resumed_after,
            last_id=state.last_id,
            state_file=None,  # the completed run removed it: nothing left to name
            counts=counts,
        )
