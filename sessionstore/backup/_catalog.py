"""Backups in a directory: ``list_backups`` (headers and trailers only) and retention."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from ..errors import IntegrityError, InvalidArgumentError
from ._format import Trailer, decode_header, decode_line
from ._reader import info_from
from ._results import BackupInfo
from ._streams import is_temp_name, read_head_line, read_tail_line

__all__ = ["list_backups", "prune_backups", "read_info"]

log = logging.getLogger("sessionstore.backup")


def read_info(path: Path) -> BackupInfo:
    """A backup's header and trailer, read without reading the rest (not verified).

    Raises :class:`IntegrityError` when the file does not start with a backup header
    (:class:`UnsupportedFormatError` for a newer format). A file without a readable
    trailer (truncated, or being written) gives ``complete=False``.
    """
    head, compression = read_head_line(path)
    header = decode_header(head, f"{path}, line 1")
    trailer: Trailer | None = None
    tail = read_tail_line(path, compression)
    if tail is not None:
        try:
            parsed = decode_line(tail, f"{path}, trailer")
        except IntegrityError:
            parsed = None
        if isinstance(parsed, Trailer):
            trailer = parsed
    return info_from(path, header, compression, trailer, verified=False)


def _dir(directory: str | os.PathLike[str]) -> Path:
    return Path(directory).expanduser()


def _list(directory: Path) -> list[BackupInfo]:
    if not directory.is_dir():
        raise InvalidArgumentError(f"no directory {str(directory)!r}")
    found = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.is_file(follow_symlinks=False) or is_temp_name(entry.name):
            continue
        try:
            found.append(read_info(Path(entry.path)))
        except (IntegrityError, OSError):
            continue  # not a backup (or unreadable): not ours to list
    found.sort(key=lambda info: (info.created_at, info.path))
    return found


async def list_backups(directory: str | os.PathLike[str]) -> list[BackupInfo]:
    """The backups in ``directory`` (not recursive), oldest first.

    Only headers and trailers are read (the trailer of a compressed file is its own small
    member at the end), so listing is cheap whatever the sizes; use
    :func:`verify_backup` to check one completely. Files that are not sessionstore
    backups are ignored; incomplete backups are listed with ``complete=False``.
    """
    return await asyncio.to_thread(_list, _dir(directory))


def _prune(directory: Path, max_backups: int) -> list[BackupInfo]:
    complete = [info for info in _list(directory) if info.complete]
    doomed = complete[: max(0, len(complete) - max_backups)]
    for info in doomed:
        try:
            os.unlink(info.path)
        except FileNotFoundError:
            continue
        log.info("removed old backup %s", info.path)
    return doomed


async def prune_backups(directory: str | os.PathLike[str], max_backups: int) -> list[BackupInfo]:
    """Retention: keep the newest ``max_backups`` complete backups, delete older ones.

    Only complete sessionstore backups count and are removed (incomplete ones and other
    files are left alone). Returns the backups that were deleted.
    """
    if isinstance(max_backups, bool) or not isinstance(max_backups, int) or max_backups < 1:
        raise InvalidArgumentError(f"max_backups must be a positive int, got {max_backups!r}")
    return await asyncio.to_thread(_prune, _dir(directory), max_backups)
