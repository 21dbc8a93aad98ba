"""``create_backup``: stream a store into one backup file."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Final

from .. import __version__, observers
from ..clock import truncate_ms
from ..driver import primitives_of
from ..errors import ConfigurationError, InvalidArgumentError
from ..protocol import SessionStore
from ..query import SessionFilter
from ._format import (
    BACKUP_FORMAT_VERSION,
    CheckpointItem,
    EventsItem,
    Header,
    PageEnd,
    SessionItem,
    Trailer,
    encode_checkpoint_line,
    encode_events_line,
    encode_header,
    encode_session_line,
    encode_trailer,
)
from ._reader import info_from
from ._results import BackupInfo, ProgressCallback
from ._source import ChunkSizer, store_items, with_include_expired
from ._streams import Compression, Sink, compression_for

__all__ = ["backup_file_name", "check_store", "create_backup"]

_FLUSH_BYTES: Final = 256 * 1024
_EXTENSIONS: Final = {"none": ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}


def check_store(store: object, what: str = "store") -> SessionStore:
    """Backup, restore and migrate work on any store that offers
    :class:`~sessionstore.driver.StorePrimitives` (every ``BaseSessionStore`` does)."""
    if not isinstance(store, SessionStore):
        raise InvalidArgumentError(f"{what} must be a sessionstore store, got {store!r}")
    try:
        primitives_of(store, what)
    except ConfigurationError as exc:
        raise InvalidArgumentError(str(exc)) from None
    return store


def store_url(store: SessionStore) -> str | None:
    """The store's URL (password redacted) when it has one."""
    url = getattr(store, "url", None)
    return url if isinstance(url, str) else None


def backup_file_name(store: SessionStore, compression: str) -> str:
    """``sessionstore-backup-<driver>-<UTC time>.jsonl[.gz|.zst]`` for a directory target."""
    stamp = truncate_ms(store.clock.now()).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    return f"sessionstore-backup-{_driver(store)}-{stamp}{_EXTENSIONS[compression]}"


def _driver(store: SessionStore) -> str:
    url = store_url(store)
    if url and "://" in url:
        return url.split("://", 1)[0]
    return type(store).__name__


def _target(
    store: SessionStore, destination: str | os.PathLike[str], compression: str | None
) -> tuple[Path, Compression]:
    """The file to write and its compression."""
    path = Path(destination).expanduser()
    if path.is_dir():
        comp = compression_for(path / "x", compression or "none")
        return path / backup_file_name(store, comp), comp
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"no directory {str(path.parent)!r} for the backup")
    return path, compression_for(path, compression)


async def create_backup(
    store: SessionStore,
    destination: str | os.PathLike[str],
    *,
    filter: SessionFilter | None = None,
    include_expired: bool = False,
    compression: str | None = None,
    progress: ProgressCallback | None = None,
    overwrite: bool = True,
) -> BackupInfo:
    """Write the store's sessions (with events and checkpoints) into one backup file.

    ``destination`` is a file path, or an existing directory (a time-stamped name is
    made up in it). Compression follows the file name (``.gz`` gzip, ``.zst`` zstd, which
    needs the ``backup`` extra) or ``compression=`` (``"none"``, ``"gzip"``, ``"zstd"``).
    ``filter`` selects sessions (expired ones only with ``include_expired=True``).

    Memory stays flat: sessions are read a page at a time in id order and long event
    histories in chunks. The file appears under its name only once complete (written to
    a temporary file, fsynced, renamed). Each session is copied consistently with its own
    head; the backup as a whole is not one point in time (sessions written while it runs
    may or may not be in it). Fires the ``sessionstore_backup_created`` hook.

    ``overwrite=False`` refuses an existing file of that name with ``FileExistsError``
    (before anything is read, and again atomically when the file is put into place).
    """
    store = check_store(store)
    primitives_of(store).check_open()
    flt = with_include_expired(filter, include_expired)
    path, comp = _target(store, destination, compression)
    if not overwrite and await asyncio.to_thread(os.path.lexists, path):
        raise _exists(path)
    header = Header(
        format_version=BACKUP_FORMAT_VERSION,
        created_at=truncate_ms(store.clock.now()),
        source=store_url(store),
        driver=_driver(store),
        namespace=store.namespace,
        filter=flt.to_dict() or None,
        include_expired=flt.include_expired,
        sessionstore_version=__version__,
    )
    total = await store.count_sessions(flt) if progress is not None else None
    sink = await asyncio.to_thread(Sink, path, comp)
    try:
        trailer = await _write_body(store, flt, sink, header, total, progress)
        try:
            size = await asyncio.to_thread(
                sink.commit, encode_trailer(trailer), overwrite=overwrite
            )
        except FileExistsError:
            raise _exists(path) from None
    except BaseException:
        await asyncio.to_thread(sink.abort)
        raise
    info = replace(info_from(path, header, comp, trailer, verified=False), size=size)
    if observers.has_observers("sessionstore_backup_created"):
        observers.notify("sessionstore_backup_created", info=info)
    return info


def _exists(path: Path) -> FileExistsError:
    return FileExistsError(
        errno.EEXIST, "backup file already exists (overwrite=True replaces it)", str(path)
    )


async def _write_body(
    store: SessionStore,
    flt: SessionFilter,
    sink: Sink,
    header: Header,
    total: int | None,
    progress: ProgressCallback | None,
) -> Trailer:
    digest = hashlib.sha256()
    sizer = ChunkSizer()
    buf: list[bytes] = [encode_header(header)]
    pending = len(buf[0])
    lines = 1
    sessions = events = checkpoints = 0
    async for item in store_items(store, flt, sizer):
        if isinstance(item, SessionItem):
            line = encode_session_line(item.session)
            sessions += 1
        elif isinstance(item, EventsItem):
            line = encode_events_line(item.session_id, item.events)
            sizer.observe(len(item.events), len(line))
            events += len(item.events)
        elif isinstance(item, CheckpointItem):
            line = encode_checkpoint_line(item.checkpoint)
            checkpoints += 1
        else:
            assert isinstance(item, PageEnd)
            if progress is not None:
                progress("backup", sessions, total)
            continue
        buf.append(line)
        lines += 1
        pending += len(line)
        if pending >= _FLUSH_BYTES:
            await _flush(sink, digest.update, buf)
            buf, pending = [], 0
    await _flush(sink, digest.update, buf)
    return Trailer(sessions, events, checkpoints, lines, digest.hexdigest())


async def _flush(sink: Sink, update: Callable[[bytes], object], buf: list[bytes]) -> None:
    if not buf:
        return
    data = b"".join(buf)

    def write() -> None:
        update(data)
        sink.write(data)

    await asyncio.to_thread(write)
