"""Recovery: finish interrupted transactions, repair after dead writers, (re)build the index.

* **Journal.** A multi-session write makes ``journal/<tx>.json`` durable (and holds an
  ``flock`` on it) before touching any session. A journal nobody holds belongs to a
  writer that died: it is *completed* (every session still at its expected version gets
  its part; a session already at the new version is skipped), then removed. A journal
  whose temp file was never renamed into place never committed: nothing was applied.
  Readers and writers step past journals involving their sessions first, so nobody sees
  an interrupted batch half-applied.
* **In-flight markers.** Before writing, a thread records the session ids in its marker
  file (``writers/<store>.<n>.writer``, flocked while the store lives). A marker nobody
  holds lists the sessions a dead writer was touching: their leftovers are removed
  (temp files, the torn tail of the log) and their index rows made to match the files.
* **Index.** Rebuilt from the files when missing, of another format, incomplete, or
  written before the machine last booted (a power loss can drop the last index commits:
  the files were fsynced, the index was not).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Container
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from sessionstore import IntegrityError, Session, StoreUnavailableError
from sessionstore.validation import validate_session_id

from ._file_formats import decode_journal, journal_sessions
from ._fs import ensure_dir, flock_file, is_temp_name, pread_all, try_flock, unlink_quiet
from ._index import INDEX_FORMAT
from ._locks import Held, Locks
from ._session import State, read_state, tidy
from ._write import apply_one

if TYPE_CHECKING:
    from ._index import Index
    from ._layout import Layout

__all__ = ["Recovery", "boot_id"]

log = logging.getLogger("sessionstore.filesystem")

# Trust an empty journal directory's mtime once it is this old: directory timestamps are
# coarse (a few ms), so any later change is sure to give it a different one.
_CLEAN_AFTER_NS: Final = 100_000_000
_BATCH: Final = 256


def boot_id() -> str:
    """This boot of the machine (Linux), or "" where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


class Recovery:
    """Journal completion, dead-writer repair and index rebuilds for one namespace.

    Held by the ``Engine``; it depends on the namespace's directories (``layout``), its
    index, the session locks (``locks``), the engine's list of corrupt records, the names
    of the engine's own writer markers (never reaped), and three engine callables: ``locked``
    (hold locks on sessions), ``index_write`` (update index rows) and ``mark`` (list the
    sessions this thread is about to write in its marker)."""

    def __init__(
        self,
        layout: Layout,
        index: Index,
        locks: Locks,
        *,
        durable: bool,
        corrupt: list[IntegrityError],
        own_markers: Container[str],
        locked: Callable[[set[str]], AbstractContextManager[Held]],
        index_write: Callable[[list[tuple[str, Session | None, Session | None]]], None],
        mark: Callable[[list[str]], None],
    ) -> None:
        self.layout = layout
        self.index = index
        self.durable = durable
        self.corrupt = corrupt
        self._locks = locks
        self._markers = own_markers
        self._journal_clean: int | None = None
        self._locked = locked
        self._index_write = index_write
        self._mark = mark

    # ------------------------------------------------------------------ startup

    def recover(self) -> dict[str, int]:
        """Everything recovery does; returns counts (for ``doctor`` and tests)."""
        counts = {"journals": 0, "journal_temps": 0, "writers": 0, "rebuilt": 0}
        needs_build = self.index.create()
        counts["journal_temps"] = len(self.remove_dead_journal_temps())
        counts["journals"] = self.settle_journals(None)
        counts["writers"] = self.reap_writers()
        boot = boot_id()
        if needs_build or (boot and self.index.get_meta("boot") != boot):
            counts["rebuilt"] = 1
            self.reindex(tidy_files=True, only_if_stale=True)
        return counts

    # ------------------------------------------------------------------ journal

    def _journal_names(self) -> list[str]:
        jfd = self.layout.journal_fd
        st = os.fstat(jfd)
        if st.st_mtime_ns == self._journal_clean:
            return []
        names = [n for n in os.listdir(jfd) if not n.startswith(".")]
        if not names and time.time_ns() - st.st_mtime_ns > _CLEAN_AFTER_NS:
            self._journal_clean = st.st_mtime_ns
        return sorted(names)

    def journal_blocking(self, sids: set[str] | None) -> tuple[str, bool] | None:
        """A journal touching ``sids`` (None: any) as ``(name, dead)``, or None."""
        for name in self._journal_names():
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.layout.journal_fd)
            except FileNotFoundError:
                continue
            try:
                dead = try_flock(fd)
                if dead and os.fstat(fd).st_nlink == 0:
                    continue  # finished and removed while we looked
                raw = pread_all(fd, 0, os.fstat(fd).st_size, name)
                try:
                    involved = journal_sessions(raw, f"journal/{name}")
                except IntegrityError:
                    if not dead:
                        continue  # being written? it is renamed into place only when whole
                    return name, True  # recovery quarantines it
                if sids is None or sids.intersection(involved):
                    return name, dead
            finally:
                os.close(fd)
        return None

    def settle_journals(self, sids: set[str] | None) -> int:
        """Complete dead journals touching ``sids`` (None: all); returns how many."""
        done = 0
        for _ in range(100):
            blocker = self.journal_blocking(sids)
            if blocker is None or not blocker[1]:
                return done  # none, or one a live writer is applying right now
            if self.recover_journal(blocker[0]):
                done += 1
        return done

    def recover_journal(self, name: str) -> bool:
        """Complete the transaction of a dead writer's journal ``name``, then remove it."""
        jfd = self.layout.journal_fd
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=jfd)
        except FileNotFoundError:
            return False
        try:
            if not try_flock(fd) or os.fstat(fd).st_nlink == 0:
                return False
            record = f"journal/{name}"
            raw = pread_all(fd, 0, os.fstat(fd).st_size, record)
            try:
                mutations = decode_journal(raw, record)
            except IntegrityError as exc:
                log.error("corrupt transaction journal %s moved to quarantine: %s", name, exc)
                self.corrupt.append(exc)
                self.quarantine_file(jfd, name, "journal")
                return True
            sids = {m.session_id for m in mutations}
            self._mark(sorted(sids))
            with self._locked(sids):
                states = {sid: read_state(self.layout, sid) for sid in sorted(sids)}
                try:
                    changes: list[tuple[str, Session | None, Session | None]] = []
                    for mut in mutations:
                        state = states[mut.session_id]
                        current = state.session
                        actual = 0 if current is None else current.version
                        if actual == mut.expect:
                            new = apply_one(self.layout, state, mut)
                            changes.append((mut.session_id, current, new))
                            state.session = new
                        elif not _done(mut, current):
                            log.error(
                                "journal %s: session %r is at version %d, neither before (%d) "
                                "nor after its part; left as it is",
                                name, mut.session_id, actual, mut.expect,
                            )  # fmt: skip
                    self._index_write(changes)
                finally:
                    for state in states.values():
                        state.close()
            os.unlink(name, dir_fd=jfd)
            if self.durable:
                os.fsync(jfd)
            log.info("completed interrupted transaction %s (%d sessions)", name, len(sids))
            return True
        finally:
            os.close(fd)

    def remove_dead_journal_temps(self, *, dry_run: bool = False) -> list[str]:
        """Remove journal temp files whose writer died before renaming them; returns their
        names (with ``dry_run``: the names, nothing removed)."""
        jfd = self.layout.journal_fd
        dead = []
        for name in os.listdir(jfd):
            if not is_temp_name(name):
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=jfd)
            except FileNotFoundError:
                continue
            try:
                if try_flock(fd):
                    dead.append(name)
                    if not dry_run:
                        unlink_quiet(name, jfd)
            finally:
                os.close(fd)
        return dead

    def quarantine_file(self, dir_fd: int, name: str, kind: str) -> str:
        """Move a file or directory to ``quarantine/`` (same filesystem: a rename)."""
        qfd = ensure_dir("quarantine", self.layout.ns_fd, durable=self.durable)
        try:
            target = f"{time.strftime('%Y%m%dT%H%M%S')}.{kind}.{name}"
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=qfd)
            if self.durable:
                os.fsync(qfd)
                os.fsync(dir_fd)
            return f"quarantine/{target}"
        finally:
            os.close(qfd)

    # ------------------------------------------------------------------ dead writers

    def reap_writers(self) -> int:
        """Repair after writers that died mid-write (their markers are unlocked)."""
        wfd = self.layout.writers_fd
        reaped = 0
        for name in os.listdir(wfd):
            if name in self._markers or not name.endswith(".writer"):
                continue
            try:
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW, dir_fd=wfd)
            except FileNotFoundError:
                continue
            try:
                if not try_flock(fd) or os.fstat(fd).st_nlink == 0:
                    continue
                raw = pread_all(fd, 0, os.fstat(fd).st_size, name)
                # "id\n...\n\n", rewritten in place: what follows the first empty line
                # is stale, and an empty first line means nothing was in flight
                listed = "" if raw.startswith(b"\n") else raw.decode("utf-8", "replace")
                listed = listed.split("\n\n", 1)[0]
                for sid in listed.split("\n"):
                    if sid:
                        try:
                            self.repair(validate_session_id(sid))
                        except ValueError:
                            log.warning("ignoring a bad id in writer marker %s", name)
                os.unlink(name, dir_fd=wfd)
                reaped += 1
            finally:
                os.close(fd)
        return reaped

    def repair(self, sid: str) -> list[str]:
        """Under the lock: remove leftovers, make the index row match the files."""
        with self._locked({sid}):
            try:
                state = read_state(self.layout, sid)
            except IntegrityError as exc:
                self.corrupt.append(exc)
                self.index.replace_rows([(sid, None)])
                return []
            try:
                removed = tidy(self.layout, state)
                self.index.replace_rows([(sid, state.session)])
                return removed
            finally:
                state.close()

    # ------------------------------------------------------------------ index rebuild

    def reindex(self, *, tidy_files: bool = False, only_if_stale: bool = False) -> int:
        """Rebuild the index from the files (other processes may keep working).

        Each session is read under its lock (busy ones are skipped: their writer updates
        the row itself); rows of sessions that are gone are removed. Returns the number
        of sessions indexed.
        """
        ns_fd = self.layout.ns_fd
        lock = flock_file(
            "index.lock", ns_fd, timeout=max(self._locks.timeout, 600.0), what="the index rebuild"
        )
        try:
            boot = boot_id()
            if (
                only_if_stale
                and self.index.get_meta("complete") == "1"
                and self.index.get_meta("format") == INDEX_FORMAT
                and (not boot or self.index.get_meta("boot") == boot)
            ):
                return 0  # another process rebuilt it while we waited
            self.index.set_meta(complete="0")
            seen: set[str] = set()
            count = 0
            for shard in self.layout.shard_names():
                sfd = self.layout.open_shard(shard)
                try:
                    names = self.layout.session_ids(os.listdir(sfd))
                finally:
                    os.close(sfd)
                for start in range(0, len(names), _BATCH):
                    chunk = names[start : start + _BATCH]
                    seen.update(chunk)
                    count += self._index_batch(chunk, tidy_files=tidy_files)
            for sid in sorted(self.index.all_ids() - seen):
                self._index_batch([sid], tidy_files=False)
            self.index.set_meta(format=INDEX_FORMAT, complete="1", boot=boot)
            self.index.conn().execute("ANALYZE")
            return count
        finally:
            os.close(lock)

    def _index_batch(self, sids: list[str], *, tidy_files: bool, wait: bool = False) -> int:
        """Index ``sids`` from their files, each read under its lock. A session whose
        lock stripe is busy is done alone afterwards, waiting for the stripe (its holder
        may be writing another session of the stripe); one whose lock is still taken
        after the lock timeout is left to its writer, which updates the row itself."""
        held = self._locks.hold(bump=tidy_files)
        rows: list[tuple[str, Session | None]] = []
        busy: list[str] = []
        try:
            for sid in sids:
                try:
                    validate_session_id(sid)
                except ValueError:
                    continue  # not ours (a stray directory): doctor reports it
                try:
                    if not held.add(sid, wait=wait):
                        busy.append(sid)
                        continue
                except StoreUnavailableError:
                    continue  # still locked after the timeout: its writer updates the row
                try:
                    state: State = read_state(self.layout, sid)
                except IntegrityError as exc:
                    self.corrupt.append(exc)
                    rows.append((sid, None))
                    continue
                try:
                    if tidy_files:
                        tidy(self.layout, state)
                    rows.append((sid, state.session))
                finally:
                    state.close()
            self.index.replace_rows(rows)
        finally:
            held.release()
        done = sum(1 for _, s in rows if s is not None)
        for sid in busy:
            done += self._index_batch([sid], tidy_files=tidy_files, wait=True)
        return done


def _done(mut: Any, current: Session | None) -> bool:
    if mut.delete:
        return current is None
    return (
        current is not None and mut.session is not None and current.version == mut.session.version
    )
