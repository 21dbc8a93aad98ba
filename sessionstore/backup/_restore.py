"""``verify_backup`` and ``restore_from_backup``."""

from __future__ import annotations

import os
from pathlib import Path

from ..driver import StorePrimitives, check_strategy, primitives_of
from ..errors import SessionExistsError
from ..protocol import SessionStore
from ..query import SessionFilter
from ._catalog import read_info
from ._engine import BATCH_SIZE, WriteEngine
from ._reader import Verified, resolve_source, scan_backup
from ._results import BackupInfo, ProgressCallback, RestoreResult
from ._writer import check_store

__all__ = ["restore_from_backup", "verify_backup"]


async def verify_backup(
    source: str | os.PathLike[str], *, progress: ProgressCallback | None = None
) -> BackupInfo:
    """Read the whole backup and check it; returns its :class:`BackupInfo` (``verified``).

    Checks the header (a newer format raises :class:`UnsupportedFormatError`), every line's
    structure, the order and consistency of sessions, events and checkpoints, checkpoint
    digests, and the trailer's counts and SHA-256. A corrupt or truncated file raises
    :class:`IntegrityError` naming the line. Memory stays flat (the file is streamed).
    """
    return (await _run(resolve_source(source), None, None, progress=progress)).info


async def _run(
    path: Path,
    store: StorePrimitives | None,
    engine: WriteEngine | None,
    *,
    verified: Verified | None = None,
    progress: ProgressCallback | None = None,
) -> Verified:
    """One pass over the file, feeding ``engine``; returns what was verified.

    With a store, payloads are checked against its size limits; with the ``verified``
    result of an earlier pass the file is only compared with it (nothing is checked again);
    ``progress`` gets ``("verify", sessions read, total from the trailer)``.
    """
    limits = store.limits if store is not None else None
    on_progress = None
    if progress is not None:
        total = read_info(path).sessions

        def on_progress(seen: int) -> None:
            progress("verify", seen, total)

    result = await scan_backup(
        path,
        limits=limits,
        feed=None if engine is None else engine.feed,
        verified=verified,
        on_progress=on_progress,
    )
    if engine is not None:
        await engine.finish()
    return result


async def restore_from_backup(
    store: SessionStore,
    source: str | os.PathLike[str],
    *,
    merge_strategy: str = "skip_existing",
    dry_run: bool = False,
    filter: SessionFilter | None = None,
    batch_size: int = BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    """Restore the sessions of a backup file into ``store``, exactly as they were saved.

    Ids, versions, timestamps, events and checkpoints are kept. ``merge_strategy`` decides
    for sessions that exist in the store: ``skip_existing`` (default), ``overwrite``,
    ``update_newer`` (the newer ``updated_at``, then the higher ``version``, wins) or
    ``fail_on_conflict`` (:class:`SessionExistsError` if any of them exists, before
    anything is written). An expired stored session counts as absent. ``filter`` restores
    only the matching sessions.

    The whole file is verified first (header version, structure, trailer counts and
    SHA-256): a corrupt or truncated backup raises :class:`IntegrityError`, a newer format
    :class:`UnsupportedFormatError`, a payload over this store's size limits
    :class:`QuotaExceededError` -- and nothing is written. Then a second pass writes, in batches
    of ``batch_size`` sessions per driver call. Restoring the same backup twice leaves the
    same state as once. ``dry_run`` verifies and reports what would happen, writing nothing.
    """
    prims = primitives_of(check_store(store))
    strategy = check_strategy(merge_strategy)
    prims.check_open()
    path = resolve_source(source)
    checker: WriteEngine | None = None
    if dry_run or strategy == "fail_on_conflict":
        checker = WriteEngine(prims, strategy, dry_run=True, filter=filter, batch_size=batch_size)
    verified = await _run(path, prims, checker, progress=progress)
    info = verified.info
    if checker is not None and dry_run:
        return RestoreResult(str(path), strategy, True, info, checker.counts())
    if checker is not None and checker.first_conflict is not None:
        conflicts = checker.counts().conflicts
        error = SessionExistsError(checker.first_conflict)
        error.args = (
            f"{conflicts} session(s) of the backup exist already (first: "
            f"{checker.first_conflict!r}); nothing was restored (fail_on_conflict)",
        )
        raise error
    engine = WriteEngine(
        prims, strategy, filter=filter, batch_size=batch_size, total=info.sessions,
        progress=progress,
    )  # fmt: skip
    await _run(path, prims, engine, verified=verified)
    return RestoreResult(str(path), strategy, False, info, engine.counts())
