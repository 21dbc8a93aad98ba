"""What backup, restore and migrate return: frozen, JSON-friendly result values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from ..clock import to_ms

__all__ = ["BackupInfo", "MigrateResult", "ProgressCallback", "RestoreResult"]

#: ``progress(phase, done, total)``: called after each batch with the number of sessions
#: handled so far in ``phase`` (``"backup"``, ``"verify"``, ``"restore"``, ``"migrate"``)
#: and the expected total (``None`` when unknown). It runs on the event loop: keep it quick.
#: An exception raised by it stops the operation (that is how a caller cancels).
ProgressCallback: TypeAlias = Callable[[str, int, "int | None"], None]


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class BackupInfo:
    """One backup file, as described by its header and trailer.

    ``sessions``/``events``/``checkpoints``/``sha256`` come from the trailer and are
    ``None`` when the file has none (``complete=False``: truncated, or still being written).
    ``verified`` is true only when the whole file was read and its digest checked
    (:func:`verify_backup`, or a restore).
    """

    path: str
    format_version: int
    created_at: datetime
    source: str | None
    driver: str | None
    namespace: str
    filter: dict[str, Any] | None
    include_expired: bool
    sessionstore_version: str
    compression: str
    size: int
    sessions: int | None = None
    events: int | None = None
    checkpoints: int | None = None
    sha256: str | None = None
    complete: bool = False
    verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps as ISO-8601 UTC strings)."""
        return {
            "path": self.path,
            "format_version": self.format_version,
            "created_at": _iso(self.created_at),
            "created_at_ms": to_ms(self.created_at),
            "source": self.source,
            "driver": self.driver,
            "namespace": self.namespace,
            "filter": self.filter,
            "include_expired": self.include_expired,
            "sessionstore_version": self.sessionstore_version,
            "compression": self.compression,
            "size": self.size,
            "sessions": self.sessions,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "sha256": self.sha256,
            "complete": self.complete,
            "verified": self.verified,
        }


@dataclass(frozen=True)
class WriteCounts:
    """What the write engine did (or, in a dry run, would do)."""

    restored: int = 0
    overwritten: int = 0
    skipped: int = 0
    conflicts: int = 0
    filtered_out: int = 0
    events: int = 0
    checkpoints: int = 0
    incomplete: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "overwritten": self.overwritten,
            "skipped": self.skipped,
            "conflicts": self.conflicts,
            "filtered_out": self.filtered_out,
            "events": self.events,
            "checkpoints": self.checkpoints,
            "incomplete": list(self.incomplete),
        }


class _CountsView:
    """Read-only shortcuts to ``counts`` (``result.restored`` ...)."""

    counts: WriteCounts

    @property
    def restored(self) -> int:
        """Sessions written that did not exist (or had expired)."""
        return self.counts.restored

    @property
    def overwritten(self) -> int:
        """Existing sessions replaced."""
        return self.counts.overwritten

    @property
    def skipped(self) -> int:
        """Existing sessions kept."""
        return self.counts.skipped

    @property
    def conflicts(self) -> int:
        """Existing sessions found under ``fail_on_conflict``."""
        return self.counts.conflicts

    @property
    def filtered_out(self) -> int:
        """Records that did not match the filter."""
        return self.counts.filtered_out

    @property
    def events(self) -> int:
        """Events written with the sessions."""
        return self.counts.events

    @property
    def checkpoints(self) -> int:
        """Checkpoints written with the sessions."""
        return self.counts.checkpoints

    @property
    def incomplete(self) -> tuple[str, ...]:
        """Sessions whose chunked event log was cut short by a concurrent writer."""
        return self.counts.incomplete


@dataclass(frozen=True)
class RestoreResult(_CountsView):
    """What :func:`restore_from_backup` did (``dry_run``: what it would do).

    * ``restored`` - sessions written that did not exist (or had expired);
    * ``overwritten`` - existing sessions replaced (``overwrite``, or ``update_newer`` when
      the backup's copy was newer);
    * ``skipped`` - existing sessions kept (``skip_existing``; ``update_newer`` when the
      stored copy was as new or newer);
    * ``conflicts`` - existing sessions found under ``fail_on_conflict`` (only non-zero in
      a dry run: a real restore raises :class:`~sessionstore.SessionExistsError` instead);
    * ``filtered_out`` - records of the backup that did not match ``filter``;
    * ``events`` / ``checkpoints`` - written (or to be written) with those sessions;
    * ``incomplete`` - sessions whose long event history was being written in chunks when
      another writer changed them: their event log is incomplete (see ``docs/backup.md``).
    """

    source: str
    strategy: str
    dry_run: bool
    backup: BackupInfo
    counts: WriteCounts = field(default_factory=WriteCounts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "strategy": self.strategy,
            "dry_run": self.dry_run,
            **self.counts.to_dict(),
            "backup": self.backup.to_dict(),
        }


@dataclass(frozen=True)
class MigrateResult(_CountsView):
    """What :func:`migrate` did in this run (counts as in :class:`RestoreResult`).

    ``resumed_after`` is the last session id a previous, interrupted run had completed
    (``None``: this run started from the beginning); ``last_id`` the last id completed
    now; ``state_file`` a progress file left on disk (``None``: a run that completes
    removes its file, so none is left to name).
    """

    source: str | None
    destination: str | None
    strategy: str
    resumed_after: str | None
    last_id: str | None
    state_file: str | None
    counts: WriteCounts = field(default_factory=WriteCounts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "destination": self.destination,
            "strategy": self.strategy,
            "resumed_after": self.resumed_after,
            "last_id": self.last_id,
            "state_file": self.state_file,
            **self.counts.to_dict(),
        }
