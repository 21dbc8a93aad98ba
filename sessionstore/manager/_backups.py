"""Backups from the manager (:class:`BackupScheduler`): on demand, on a schedule (store
clock), with retention."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..driver import primitives_of
from ..errors import ConfigurationError
from ..query import SessionFilter

if TYPE_CHECKING:
    from ..backup import BackupInfo, RestoreResult
    from ..protocol import SessionStore
    from ._config import ManagerConfig

__all__ = ["BackupScheduler"]


class BackupScheduler:
    """``create_backup``, ``restore_from_backup``, ``list_backups`` and the scheduled loop."""

    __slots__ = ("_check_open", "config", "store")

    def __init__(
        self, store: SessionStore, config: ManagerConfig, check_open: Callable[[], None]
    ) -> None:
        self.store = store
        self.config = config
        self._check_open = check_open

    def _backup_store(self) -> SessionStore:
        """The store, if it offers :class:`~sessionstore.driver.StorePrimitives` (what
        backup and restore use): any store that does can be backed up, not only a
        ``BaseSessionStore``."""
        primitives_of(self.store, "the manager's store")  # ConfigurationError if not
        return self.store

    def _backup_dir(self, directory: str | os.PathLike[str] | None) -> Path:
        where = directory if directory is not None else self.config.backup_dir
        if where is None:
            raise ConfigurationError(
                "no backup destination: pass one or set ManagerConfig.backup_dir"
            )
        return Path(where)

    async def create_backup(
        self,
        destination: str | os.PathLike[str] | None = None,
        *,
        filter: SessionFilter | None = None,
        include_expired: bool = False,
        compression: str | None = None,
    ) -> BackupInfo:
        """Back the store up (see :func:`sessionstore.backup.create_backup`).

        ``destination`` defaults to ``config.backup_dir`` (a directory: the file gets a
        time-stamped name). With ``config.max_backups`` the oldest complete backups in
        that directory are pruned afterwards. The ``sessionstore_backup_created`` hook fires.
        """
        from ..backup import create_backup, prune_backups

        self._check_open()
        target = self._backup_dir(destination)
        if destination is None:
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = await create_backup(
            self._backup_store(),
            target,
            filter=filter,
            include_expired=include_expired,
            compression=compression,
        )
        if self.config.max_backups is not None:
            directory = target if target.is_dir() else target.parent
            await prune_backups(directory, self.config.max_backups)
        return info

    async def restore_from_backup(
        self,
        source: str | os.PathLike[str],
        *,
        merge_strategy: str = "skip_existing",
        dry_run: bool = False,
        filter: SessionFilter | None = None,
    ) -> RestoreResult:
        """Restore a backup into the store (verified before anything is written)."""
        from ..backup import restore_from_backup

        self._check_open()
        return await restore_from_backup(
            self._backup_store(),
            source,
            merge_strategy=merge_strategy,
            dry_run=dry_run,
            filter=filter,
        )

    async def list_backups(
        self, directory: str | os.PathLike[str] | None = None
    ) -> list[BackupInfo]:
        """The backups in ``directory`` (default ``config.backup_dir``), oldest first."""
        from ..backup import list_backups

        return await list_backups(self._backup_dir(directory))

    async def tick(self) -> None:
        """One run of the scheduled loop (``config.backup_interval``)."""
        await self.create_backup()
