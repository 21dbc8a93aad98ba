"""``doctor``: verify every record, quarantine corrupt ones, remove leftovers, reindex.

Safe while other processes use the store: each session is examined under its lock (a
session busy with a writer is skipped and counted), nothing is deleted that a live
writer could still need, and corrupt data is moved aside to ``quarantine/``, never
deleted. Lock files of sessions that do not exist are removed under the lock itself
(see ``_locks``), which is safe against a process waiting for it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sessionstore import IntegrityError
from sessionstore.codec import checkpoint_digest
from sessionstore.validation import validate_session_id

from ._fs import is_temp_name, open_dir, open_dir_or_none
from ._layout import COMPACT_SUFFIX, Layout
from ._log import (
    iter_lines,
)
from ._session import (
    State,
    cp_dir_name,
    read_checkpoint_file,
    read_state,
    tidy,
)

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["DoctorReport", "run_doctor"]


@dataclass
class DoctorReport:
    """What ``doctor`` found and did (``dry_run``: what it would do). JSON: ``to_dict()``."""

    root: str
    namespace: str
    dry_run: bool
    sessions_checked: int = 0
    records_checked: int = 0
    sessions_busy: int = 0
    corrupt: list[dict[str, str]] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    journals_completed: int = 0
    writers_repaired: int = 0
    index_rebuilt: bool = False
    indexed_sessions: int = 0

    @property
    def healthy(self) -> bool:
        """True when no corrupt record was found."""
        return not self.corrupt

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the ``--json`` output of ``sessionstore doctor``)."""
        return {**asdict(self), "healthy": self.healthy}


def run_doctor(engine: Engine, dry_run: bool) -> DoctorReport:
    """Examine (and unless ``dry_run``, repair) one namespace of a file store."""
    report = DoctorReport(engine.root, engine.namespace, dry_run)
    layout = engine.layout
    # 1. interrupted transactions and writers first: they explain most leftovers
    dead = engine.recovery.remove_dead_journal_temps(dry_run=dry_run)
    report.removed += [f"journal/{n}" for n in dead]
    if not dry_run:
        report.journals_completed = engine.recovery.settle_journals(None)
        report.writers_repaired = engine.recovery.reap_writers()
    else:
        blocker = engine.recovery.journal_blocking(None)
        report.journals_completed = int(blocker is not None and blocker[1])
    # 2. every session, under its lock
    for shard in layout.shard_names():
        sfd = layout.open_shard(shard)
        try:
            names = sorted(os.listdir(sfd))
        finally:
            os.close(sfd)
        for sid in sorted(_orphans(layout, names)):
            # leftovers of a session that is gone (a delete interrupted after its commit):
            # uniquely named, so they can go without the lock
            report.removed += tidy(layout, State(sid, name=layout.name(sid)), dry_run=dry_run)
        for name in layout.session_ids(names):  # temp / renamed-aside entries: tidy() removes them
            try:
                validate_session_id(name)
            except ValueError:
                report.corrupt.append(
                    {"record": f"sessions/{shard}/{name}", "problem": "not a session directory"}
                )
                continue
            _check_session(engine, name, report)
    # 3. per-session lock files of older layouts
    _stale_locks(engine, report)
    # 4. the index, from the files
    if not dry_run:
        report.indexed_sessions = engine.recovery.reindex(tidy_files=False)
        report.index_rebuilt = True
    return report


def _orphans(layout: Layout, names: list[str]) -> set[str]:
    """Ids of sessions with leftovers (``.trash.<name>.*``, ``.tmp.<name>.*``,
    ``.tmp.<name>~.json.*``) but neither a directory nor a compact document."""
    found = set()
    for name in names:
        for prefix in (".trash.", ".tmp."):
            if name.startswith(prefix):
                stem = name[len(prefix) :].rpartition(".")[0].removesuffix(COMPACT_SUFFIX)
                sid = layout.id_of(stem)
                try:
                    validate_session_id(sid)
                except ValueError:
                    continue
                found.add(sid)
    return found - set(layout.session_ids(names))


def _stale_locks(engine: Engine, report: DoctorReport) -> None:
    """Remove (or with ``dry_run`` report) the per-session lock files of layouts before 6
    (``locks/<xx>/<id>.lock``): locks are stripes now (``~<n>.lock``, see ``_locks``), so
    nothing takes these any more (older processes refuse a layout-6 store)."""
    locks_fd = engine.layout.fds["locks"]
    for shard in sorted(n for n in os.listdir(locks_fd) if len(n) == 2 and n[0] != "."):
        lfd = open_dir(shard, locks_fd, f"locks/{shard}")
        try:
            names = sorted(n for n in os.listdir(lfd) if n.endswith(".lock") and n[0] != "~")
            for name in names:
                try:
                    validate_session_id(name[:-5])
                except ValueError:
                    continue  # not a lock file we made
                report.removed.append(f"locks/{shard}/{name}")
                if not report.dry_run:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=lfd)
        finally:
            os.close(lfd)


def _check_session(engine: Engine, sid: str, report: DoctorReport) -> None:
    held = engine.locks.hold(bump=not report.dry_run)
    if not held.add(sid, wait=False):
        report.sessions_busy += 1
        return
    try:
        report.sessions_checked += 1
        try:
            state = read_state(engine.layout, sid)
        except IntegrityError as exc:
            _corrupt_session(engine, sid, exc, report)
            return
        try:
            if state.doc is None:  # nothing, or a create that never committed
                report.removed += tidy(engine.layout, state, dry_run=report.dry_run)
                return
            report.records_checked += 1
            try:
                for _ in iter_lines(state, state.doc.gen, 0, state.valid_end):
                    report.records_checked += 1
            except IntegrityError as exc:
                _corrupt_session(engine, sid, exc, report, state)
                return
            _check_symlinks(engine, state, report)
            _check_checkpoints(engine, state, report)
            report.removed += tidy(engine.layout, state, dry_run=report.dry_run)
        finally:
            state.close()
    finally:
        held.release()


def _check_checkpoints(engine: Engine, state: State, report: DoctorReport) -> None:
    """Verify each checkpoint file of the current incarnation (seal and digest); move a
    corrupt one, or a checkpoint directory that is a symlink, to quarantine."""
    assert state.doc is not None
    if state.compact:
        return  # no checkpoints
    sid = state.sid
    cp_dir = cp_dir_name(state.doc.inc)
    try:
        cp_fd = open_dir_or_none(cp_dir, state.dir_fd, f"{sid}/{cp_dir}")
    except IntegrityError as exc:  # a symlink (or a file) where the directory belongs
        _quarantine(engine, state.dir_fd, cp_dir, exc, report, sid)
        return
    if cp_fd is None:
        return
    try:
        for name in sorted(os.listdir(cp_fd)):
            if is_temp_name(name):
                continue  # tidy() removes it
            try:
                cp = read_checkpoint_file(cp_fd, sid, name)
                if cp is not None and checkpoint_digest(cp) != cp.digest:
                    raise IntegrityError("checkpoint digest mismatch", f"{sid}/checkpoints/{cp.id}")
                report.records_checked += 1
            except IntegrityError as bad:
                _quarantine(engine, cp_fd, name, bad, report, sid)
    finally:
        os.close(cp_fd)


def _check_symlinks(engine: Engine, state: State, report: DoctorReport) -> None:
    """Symlinks in the session's directory (they are never followed): each is a corrupt
    record, moved to quarantine like any other (never silently removed as a leftover)."""
    assert state.doc is not None
    if state.compact:
        return  # no session directory
    current = cp_dir_name(state.doc.inc)  # _check_checkpoints reports that one
    for name in sorted(os.listdir(state.dir_fd)):
        if name == current:
            continue
        try:
            st = os.stat(name, dir_fd=state.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            error = IntegrityError("a symlink in the session directory (not followed)")
            _quarantine(engine, state.dir_fd, name, error, report, state.sid, f"{state.sid}/{name}")


def _quarantine(
    engine: Engine,
    dir_fd: int,
    name: str,
    exc: IntegrityError,
    report: DoctorReport,
    sid: str,
    record: str = "",
) -> None:
    report.corrupt.append({"record": record or exc.record or name, "problem": str(exc)})
    if not report.dry_run:
        report.quarantined.append(engine.recovery.quarantine_file(dir_fd, name, sid))


def _corrupt_session(
    engine: Engine, sid: str, exc: IntegrityError, report: DoctorReport, state: State | None = None
) -> None:
    report.corrupt.append({"record": exc.record or sid, "problem": str(exc)})
    if report.dry_run:
        return
    if state is not None:
        state.close()
    shard = engine.layout.shard_fd("sessions", sid, create=False)
    if shard is None:
        return
    for name in (engine.layout.name(sid), engine.layout.compact(sid)):
        with contextlib.suppress(FileNotFoundError):
            os.stat(name, dir_fd=shard, follow_symlinks=False)
            report.quarantined.append(engine.recovery.quarantine_file(shard, name, "session"))
    engine.index.replace_rows([(sid, None)])
