"""Backup, restore and migration between drivers (see ``docs/backup.md``).

* :func:`create_backup` streams a store into one JSON Lines file (optionally gzip or zstd
  compressed) with a header, one line per session, its checkpoints and its events in
  chunks, and a trailer with counts and a SHA-256 over the content;
* :func:`verify_backup` checks a file completely; :func:`list_backups` and
  :func:`prune_backups` look after a directory of backups;
* :func:`restore_from_backup` verifies, then writes the sessions back exactly, with a
  merge strategy, in batches;
* :func:`migrate` copies from one store to another through the same path, resumably.

Memory stays flat in all of them: sessions are streamed a page at a time and long event
histories in chunks.
"""

from __future__ import annotations

from ._catalog import list_backups, prune_backups
from ._format import BACKUP_FORMAT, BACKUP_FORMAT_VERSION
from ._migrate import migrate
from ._restore import restore_from_backup, verify_backup
from ._results import BackupInfo, MigrateResult, ProgressCallback, RestoreResult, WriteCounts
from ._writer import create_backup

__all__ = [
    "BACKUP_FORMAT",
    "BACKUP_FORMAT_VERSION",
    "BackupInfo",
    "MigrateResult",
    "ProgressCallback",
    "RestoreResult",
    "WriteCounts",
    "create_backup",
    "list_backups",
    "migrate",
    "prune_backups",
    "restore_from_backup",
    "verify_backup",
]
