"""The synchronous core of the file store: every call runs in one worker-thread hop.

Writes: lock the sessions (sorted ``flock``), step past any unfinished transaction, read
their state, plan (the base store's pure planner), check versions, mark the write
in-flight, write the files durably, update the index, clear the mark. A multi-session
write first makes its intent journal durable; each session's part then commits with one
atomic step (see ``_session``), and recovery completes a journal a crash interrupted.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Final

from sessionstore import (
    Checkpoint,
    ConfigurationError,
    Event,
    IntegrityError,
    Mutation,
    OutcomeUnknownError,
    Page,
    QueryOptions,
    Session,
    SessionConflictError,
    SessionFilter,
    StoreUnavailableError,
    UnsupportedFormatError,
)
from sessionstore.codec import FORMAT_VERSION, decode_json, dumps_record
from sessionstore.query import (
    decode_cursor,
    encode_cursor,
    evaluate,
    matches,
    order_key,
    query_fingerprint,
)
from sessionstore.validation import validate_session_id

from ._fs import (
    FILE_MODE,
    atomic_write,
    ensure_dir,
    flock_file,
    read_file,
    temp_name,
    write_all,
)
from ._index import Index
from ._layout import MARKER, Layout, namespace_dir
from ._records import encode_journal
from ._recovery import RecoveryMixin
from ._session import State, apply_one, read_checkpoints, read_events, read_state

__all__ = ["Engine"]

log = logging.getLogger("sessionstore.filesystem")

STORE_FORMAT: Final = 1
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_REAP_EVERY: Final = 1.0  # seconds between checks for writers that died mid-write
_ATTEMPTS: Final = 1000

Build = Callable[[Mapping[str, Session]], list[Mutation]]


class _Held:
    """Session locks held by one operation (fds by session id)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fds: dict[str, int] = {}

    def add(self, sid: str, *, wait: bool = True) -> bool:
        validate_session_id(sid)  # again: the lock file's name is built from it
        lock_dir = self.engine.layout.shard_fd("locks", sid, create=True)
        assert lock_dir is not None
        try:
            fd = flock_file(
                f"{sid}.lock",
                lock_dir,
                timeout=self.engine.lock_timeout if wait else 0.0,
                what=f"session {sid!r}",
            )
        except StoreUnavailableError:
            if wait:
                raise
            return False
        self.fds[sid] = fd
        return True

    def try_add(self, sids: Sequence[str]) -> bool:
        added: list[str] = []
        for sid in sorted(sids):
            if not self.add(sid, wait=False):
                for done in added:
                    os.close(self.fds.pop(done))
                return False
            added.append(sid)
        return True

    def release(self) -> None:
        for fd in self.fds.values():
            os.close(fd)  # closing the only descriptor releases the flock
        self.fds.clear()


class Engine(RecoveryMixin):
    """One namespace of a file store, synchronous and thread-safe."""

    def __init__(
        self, root: str, namespace: str, *, durable: bool, lock_timeout: float, create: bool
    ) -> None:
        self.root = root
        self.namespace = namespace
        self.durable = durable
        self.lock_timeout = lock_timeout
        self.create_root = create
        self.layout: Layout = None  # type: ignore[assignment]  # set by open()
        self.index: Index = None  # type: ignore[assignment]
        self.writer_id = secrets.token_hex(6)
        self._local = threading.local()
        self._markers: dict[str, int] = {}
        self._counter = itertools.count()
        self._mutex = threading.Lock()
        self._journal_clean: int | None = None
        self._last_reap = 0.0
        self._dirty: set[str] = set()
        self._root_fd = -1
        self.corrupt: list[IntegrityError] = []

    # ------------------------------------------------------------------ open / close

    def open(self) -> None:
        """Create or open the store directory and namespace; recover; ready the index."""
        if self.create_root:
            try:
                os.makedirs(self.root, mode=0o700, exist_ok=True)
            except FileExistsError:
                pass  # a file is in the way: reported just below
            except NotADirectoryError:
                raise ConfigurationError(
                    f"file store root {self.root!r} is not a directory"
                ) from None
        try:
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        except NotADirectoryError:
            raise ConfigurationError(f"file store root {self.root!r} is not a directory") from None
        except FileNotFoundError:
            raise ConfigurationError(f"file store root {self.root!r} does not exist") from None
        try:
            self._check_marker()
            ns_fd = ensure_dir(
                namespace_dir(self.namespace), self._root_fd, durable=self.durable,
                record=f"namespace {self.namespace!r}",
            )  # fmt: skip
            self.layout = Layout(ns_fd, durable=self.durable)
            index_path = os.path.join(self.root, namespace_dir(self.namespace), "index.sqlite3")
            fd = os.open(
                "index.sqlite3", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
                dir_fd=ns_fd,
            )  # fmt: skip
            os.close(fd)
            self.index = Index(index_path, timeout=max(self.lock_timeout, 5.0))
            self.recover()
        except BaseException:
            self.close()
            raise

    def _check_marker(self) -> None:
        raw = read_file(MARKER, self._root_fd, MARKER)
        if raw is None:
            rec = {"v": FORMAT_VERSION, "format": "sessionstore-file", "layout": STORE_FORMAT}
            atomic_write(self._root_fd, MARKER, dumps_record(rec) + b"\n", durable=self.durable)
            return
        rec = decode_json(raw, f"{self.root}/{MARKER}")
        layout = rec.get("layout") if isinstance(rec, dict) else None
        if not isinstance(layout, int):
            raise IntegrityError("store marker is malformed", f"{self.root}/{MARKER}")
        if layout > STORE_FORMAT:
            raise UnsupportedFormatError(
                f"file store layout {layout} is newer than this sessionstore understands "
                f"({STORE_FORMAT}); upgrade sessionstore to open it",
                self.root,
            )

    def close(self) -> None:
        """Release every handle (the store is shut down)."""
        if self.index is not None:
            self.index.close()
        with self._mutex:
            for name, fd in self._markers.items():
                if self.layout is not None:
                    with suppress(OSError):
                        os.unlink(name, dir_fd=self.layout.writers_fd)
                os.close(fd)
            self._markers.clear()
        if self.layout is not None:
            self.layout.close()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    # ------------------------------------------------------------------ in-flight markers

    def _marker_fd(self) -> int:
        fd: int | None = getattr(self._local, "marker", None)
        if fd is None:
            name = f"{self.writer_id}.{next(self._counter)}.writer"
            fd = os.open(
                name,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC,
                FILE_MODE,
                dir_fd=self.layout.writers_fd,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._local.marker = fd
            with self._mutex:
                self._markers[name] = fd
        return fd

    def _mark(self, sids: Sequence[str]) -> None:
        """Record the sessions this thread is about to write ("id\n...\n\n")."""
        os.pwrite(self._marker_fd(), "".join(f"{sid}\n" for sid in sids).encode() + b"\n", 0)

    def _unmark(self) -> None:
        """Nothing in flight: an empty first line ends the list (one pwrite, no truncate)."""
        os.pwrite(self._marker_fd(), b"\n", 0)

    # ------------------------------------------------------------------ locking

    @contextmanager
    def _locked(self, sids: set[str]) -> Iterator[_Held]:
        held = _Held(self)
        try:
            for sid in sorted(sids):
                held.add(sid)
            yield held
        finally:
            held.release()

    # ------------------------------------------------------------------ reads

    def load(self, sids: Sequence[str]) -> dict[str, Session]:
        """Stored sessions (expired included) for ``sids``; absent ones left out."""
        self.settle_journals(set(sids))
        out = {}
        for sid in sids:
            state = read_state(self.layout, sid)
            state.close()
            if state.session is not None:
                out[sid] = state.session
        return out

    def events(self, sid: str, after_seq: int, limit: int | None, last: int | None) -> list[Event]:
        self.settle_journals({sid})
        return read_events(self.layout, sid, after_seq, limit, last)

    def checkpoints(self, sid: str) -> list[Checkpoint]:
        self.settle_journals({sid})
        return read_checkpoints(self.layout, sid)

    def shard_sessions(self, shard: str) -> tuple[list[Session], list[IntegrityError]]:
        """Every session of one shard directory (corrupt ones returned apart)."""
        found: list[Session] = []
        bad: list[IntegrityError] = []
        fd = self.layout.open_shard(shard)
        try:
            names = sorted(n for n in os.listdir(fd) if not n.startswith("."))
        finally:
            os.close(fd)
        for sid in names:
            try:
                state = read_state(self.layout, sid)
            except IntegrityError as exc:
                bad.append(exc)
                continue
            except ValueError:  # not a session id: something else put it there
                bad.append(
                    IntegrityError("unexpected entry in the store", f"sessions/{shard}/{sid}")
                )
                continue
            state.close()
            if state.session is not None:
                found.append(state.session)
        return found, bad

    # ------------------------------------------------------------------ writes

    def transact(self, load_ids: Sequence[str], build: Build) -> list[Mutation]:
        """Lock, read, plan with ``build``, check, write: one atomic step."""
        ids = set(load_ids)
        for _ in range(_ATTEMPTS):
            with self._locked(ids) as held:
                blocker = self.journal_blocking(ids)
                if blocker is None:
                    states: dict[str, State] = {}
                    try:
                        for sid in sorted(ids):
                            states[sid] = read_state(self.layout, sid)
                        loaded = {s: st.session for s, st in states.items() if st.session}
                        mutations = build(loaded)
                        if not mutations:
                            return mutations
                        extra = sorted({m.session_id for m in mutations} - ids)
                        if extra:
                            if not held.try_add(extra):
                                ids.update(extra)
                                continue  # lock them in order with the rest, and re-plan
                            for sid in extra:
                                states[sid] = read_state(self.layout, sid)
                        for mut in mutations:
                            current = states[mut.session_id].session
                            actual = 0 if current is None else current.version
                            if actual != mut.expect:
                                raise SessionConflictError(mut.session_id, mut.expect, actual)
                        self._write(mutations, states)
                        return mutations
                    finally:
                        for state in states.values():
                            state.close()
            name, dead = blocker
            if dead:
                self.recover_journal(name)
            else:
                time.sleep(0.001)
        raise StoreUnavailableError("a pending transaction journal kept blocking this write")

    def apply(self, mutations: Sequence[Mutation]) -> None:
        """``_apply``: write ``mutations`` if every ``expect`` holds (else a conflict)."""
        muts = list(mutations)
        self.transact([m.session_id for m in muts], lambda _loaded: muts)

    def _write(self, mutations: Sequence[Mutation], states: dict[str, State]) -> None:
        sids = [m.session_id for m in mutations]
        self._mark(sids)
        journal: tuple[str, int] | None = None
        try:
            if len(mutations) > 1:
                journal = self._write_journal(mutations)
            changes: list[tuple[str, Session | None, Session | None]] = []
            try:
                for mut in mutations:
                    state = states[mut.session_id]
                    old = state.session
                    changes.append((mut.session_id, old, apply_one(self.layout, state, mut)))
            except BaseException as exc:
                if journal is not None:
                    os.close(journal[1])  # unlocked: recovery completes it
                    journal = None
                    self._resync(sids)
                    raise OutcomeUnknownError(
                        "a transaction was committed to the journal but applying it failed "
                        f"({exc}); it is completed by recovery: re-read the sessions"
                    ) from exc
                self._resync(sids)
                raise
            self._index_write(changes)
            if journal is not None:
                os.unlink(journal[0], dir_fd=self.layout.journal_fd)
        finally:
            if journal is not None:
                os.close(journal[1])
            self._unmark()

    def _write_journal(self, mutations: Sequence[Mutation]) -> tuple[str, int]:
        """Write the intent journal durably; returns its name and its (locked) fd."""
        jfd = self.layout.journal_fd
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
        tmp = temp_name(name)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
            dir_fd=jfd,
        )  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until the transaction is applied
            write_all(fd, encode_journal(name[:-5], mutations))
            if self.durable:
                os.fsync(fd)
            os.replace(tmp, name, src_dir_fd=jfd, dst_dir_fd=jfd)
        except BaseException:
            os.close(fd)
            with suppress(OSError):
                os.unlink(tmp, dir_fd=jfd)
            raise
        if self.durable:
            try:
                os.fsync(jfd)
            except BaseException:
                # not known durable: withdraw it (nothing was applied yet), then fail
                with suppress(OSError):
                    os.unlink(name, dir_fd=jfd)
                os.close(fd)
                raise
        return name, fd

    def _index_write(self, changes: list[tuple[str, Session | None, Session | None]]) -> None:
        try:
            self.index.write(changes)
        except sqlite3.Error as exc:
            log.warning("index update failed (%s); the rows are repaired from the files", exc)
            with self._mutex:
                self._dirty.update(sid for sid, _, _ in changes)

    def _resync(self, sids: Sequence[str]) -> None:
        """After a failed write: make the index rows match the files again (best effort)."""
        rows = []
        for sid in sids:
            try:
                state = read_state(self.layout, sid)
                state.close()
                rows.append((sid, state.session))
            except (OSError, IntegrityError):
                with self._mutex:
                    self._dirty.add(sid)
        try:
            self.index.replace_rows(rows)
        except sqlite3.Error:
            with self._mutex:
                self._dirty.update(sid for sid, _ in rows)

    # ------------------------------------------------------------------ queries

    def maintain(self) -> None:
        """Before a query: finish dead transactions, repair dead writers' index rows."""
        self.settle_journals(None)
        now = time.monotonic()
        if now - self._last_reap >= _REAP_EVERY:
            self._last_reap = now
            self.reap_writers()
        if self._dirty:
            with self._mutex:
                dirty, self._dirty = sorted(self._dirty), set()
            for sid in dirty:
                self.repair(sid)

    def _query_load(self, sid: str) -> Session | None:
        try:
            state = read_state(self.layout, sid)
        except IntegrityError as exc:
            self.corrupt.append(exc)
            return None
        state.close()
        return state.session

    def list_page(self, flt: SessionFilter, opts: QueryOptions, now: datetime) -> Page:
        """One page, ordered by the index, sessions read from their files."""
        self.maintain()
        fingerprint = query_fingerprint(flt, opts)
        after = decode_cursor(opts.cursor, fingerprint) if opts.cursor is not None else None
        bound: int | None = opts.offset + opts.limit + 8
        for _ in range(4):
            items: list[Session] = []
            stale: list[str] = []
            more = False
            seen = 0
            skip = opts.offset
            for sid, _metadata in self.index.select(flt, now, opts, after, limit=bound):
                seen += 1
                if skip:
                    skip -= 1
                    continue
                if len(items) == opts.limit:
                    more = True
                    break
                session = self._query_load(sid)
                if session is None or not matches(session, flt, now):
                    if session is None and self.corrupt and self.corrupt[-1].record == sid:
                        continue  # reported; the rest of the page goes on
                    stale.append(sid)
                    continue
                items.append(session)
            if stale:
                for sid in stale:
                    self.repair(sid)
                continue  # the index was behind the files: ask it again
            if not more and bound is not None and seen >= bound:
                bound = None  # rows were skipped: the page needs more of them
                continue
            break
        next_cursor = None
        if more and items:
            next_cursor = encode_cursor(fingerprint, order_key(items[-1], opts.sort_by))
        return Page(items, next_cursor)

    def count(self, flt: SessionFilter, now: datetime) -> int:
        self.maintain()
        return self.index.count(flt, now)

    def search(
        self, text: str, flt: SessionFilter, opts: QueryOptions | None, now: datetime
    ) -> Page:
        self.maintain()
        sessions = [
            s for sid, _ in self.index.select(flt, now) if (s := self._query_load(sid)) is not None
        ]
        return evaluate(sessions, flt, opts, now, search=text)

    def expired(self, now: datetime) -> list[Session]:
        self.maintain()
        out = []
        for sid in self.index.expired_ids(now):
            session = self._query_load(sid)
            if session is not None and session.is_expired(now):
                out.append(session)
        return out
