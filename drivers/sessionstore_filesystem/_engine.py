"""The synchronous core of the file store: every call runs in one worker-thread hop.

Writes: lock the sessions (sorted ``flock``; each lock replaces the session's change
token, see ``_heads``), step past any unfinished transaction, read their state (from the
head cache when the token says nobody wrote since), plan (the base store's pure
planner), check versions, mark the write in-flight, write the files durably, update the
index. One session's write syncs each step as it goes; a write of several sessions
stages all of them, then shares two durability barriers (see ``_write`` and
``_durable``). An atomic multi-session write first writes its intent journal; recovery
completes a journal a crash interrupted. A lock whose session does not exist when the
operation ends is removed before it is released (see ``_locks``).
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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Final

from sessionstore import (
    Checkpoint,
    ConfigurationError,
    Event,
    IntegrityError,
    InvalidArgumentError,
    Mutation,
    OutcomeUnknownError,
    Page,
    QueryOptions,
    Session,
    SessionConflictError,
    SessionFilter,
    StoreNotFoundError,
    StoreUnavailableError,
)
from sessionstore.query import (
    decode_cursor,
    encode_cursor,
    evaluate,
    matches,
    order_key,
    query_fingerprint,
)

from ._durable import BatchSync, Sync, syncfs_supported
from ._event_index import STALE, Cover, EventChange, EventQuery, classify, read_cover, to_us
from ._event_reads import EventReads
from ._file_formats import encode_journal
from ._fs import (
    FILE_MODE,
    ensure_dir,
    open_dir_or_none,
    temp_name,
    write_all,
)
from ._heads import HeadCache, Tokens
from ._index import Index, session_of
from ._layout import Layout, namespace_dir
from ._locks import Held, Locks, in_lock_order
from ._log import LogReader, Window
from ._names import Names, check_marker
from ._recovery import Recovery
from ._session import State, read_checkpoint, read_checkpoints, read_state
from ._write import Steps, apply_one, finish, is_pure_append, steps

__all__ = ["Engine"]

log = logging.getLogger("sessionstore.filesystem")

# 2: lock-time change tokens in locks/tokens (a head cache trusts them). A layout-1 store
# is upgraded on open, so a process of a version before the tokens refuses it afterwards.
# 3: the event log may be cut in place (pop, truncate: lines past the document's end
# whose seq is not above its last_seq are dropped ones) and event lines carry keys; an
# older process would read dropped lines as corruption, so it must refuse the store.
# 4: a session without events or checkpoints may be one file, <shard>/<id>~.json, with no
# directory (a create is one new durable file); an older process would not see it.
# 5: the index (format 3) holds what a listing returns and a listing reads only the
# index; an older process would update rows without those columns, so it must refuse.
# 6: session locks are 1,024 lock stripes (locks/<xx>/~<n>.lock), not a lock file per
# session (a create makes no lock file); an older process would lock other files.
# 7: the marker says how files are named ("names": "plain", or "cased" on a volume that
# ignores case, see _names); an older process would name them after the plain ids.
STORE_FORMAT: Final = 7
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_REAP_EVERY: Final = 1.0  # seconds between checks for writers that died mid-write
_ATTEMPTS: Final = 1000
#: Write a pure append's index row before its fdatasync (see ``Engine._write``).
EARLY_INDEX = True
#: Batches of at least this many sessions share ``syncfs`` barriers where available;
#: smaller ones fsync their files and then each directory once per barrier, concurrently.
SYNCFS_FROM: Final = 4

Build = Callable[[Mapping[str, Session]], list[Mutation]]


def _evs(state: State, proven: Cover | None = None) -> list[EventChange]:
    """What ``state``'s write did to its event rows (see ``_event_index``): a rewrite's
    or a delete's change as it is; a cut's only when the cover was ``proven`` before the
    write and reaches past the cut (one that does not stays a valid prefix)."""
    ev = state.ev
    if ev is None:
        return []
    if ev.cut:
        if proven is None or ev.new is None or proven[2] <= ev.new[2]:
            return []
        ev.old = proven
    return [ev]


def _encoded(mutations: Sequence[Mutation]) -> dict[str, bytes]:
    """The new sessions' data as the mutations encoded it, by id (for their index rows)."""
    return {m.session_id: m.data_json for m in mutations if m.data_json is not None}


class Engine:
    """One namespace of a file store, synchronous and thread-safe; its recovery (journals,
    dead writers, index rebuilds) is the ``recovery`` collaborator, its lock holding
    ``locks`` (both set by :meth:`open`)."""

    def __init__(
        self,
        root: str,
        namespace: str,
        *,
        durable: bool,
        lock_timeout: float,
        create: bool,
        names: Names = "auto",
    ) -> None:
        self.root = root
        self.names: Names = names
        #: the store names files in cased form (read from its marker by :meth:`open`)
        self.cased = False
        self.namespace = namespace
        self.durable = durable
        self.lock_timeout = lock_timeout
        self.create_root = create
        self.layout: Layout = None  # type: ignore[assignment]  # set by open()
        self.index: Index = None  # type: ignore[assignment]
        self.tokens: Tokens = None  # type: ignore[assignment]
        self.locks: Locks = None  # type: ignore[assignment]  # set by open()
        self.recovery: Recovery = None  # type: ignore[assignment]  # set by open()
        self.reads: EventReads = None  # type: ignore[assignment]  # set by open()
        self.heads = HeadCache()
        self.writer_id = secrets.token_hex(6)
        self._local = threading.local()
        self._markers: dict[str, int] = {}
        self._counter = itertools.count()
        self._mutex = threading.Lock()
        self._last_reap = 0.0
        self._dirty: set[str] = set()
        self._root_fd = -1
        self.corrupt: list[IntegrityError] = []

    # ------------------------------------------------------------------ open / close

    def open(self) -> None:
        """Create or open the store directory and namespace; recover; ready the index.

        With ``create=False`` only an existing store opens: a missing root, a directory
        without the store marker (an ordinary folder) or a missing namespace directory is
        a :class:`StoreNotFoundError`, and nothing is created.
        """
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
            raise StoreNotFoundError(f"file store root {self.root!r} does not exist") from None
        try:
            self.cased = check_marker(
                self.root, self._root_fd, create=self.create_root, durable=self.durable,
                names=self.names, layout=STORE_FORMAT,
            )  # fmt: skip
            ns_dir = namespace_dir(self.namespace, cased=self.cased)
            if self.create_root:
                ns_fd = ensure_dir(
                    ns_dir, self._root_fd, durable=self.durable,
                    record=f"namespace {self.namespace!r}",
                )  # fmt: skip
            else:
                found = open_dir_or_none(ns_dir, self._root_fd, f"namespace {self.namespace!r}")
                if found is None:
                    raise StoreNotFoundError(
                        f"file store {self.root!r} has no namespace {self.namespace!r} "
                        "(nothing was ever written to it)"
                    )
                ns_fd = found
            self.layout = Layout(ns_fd, durable=self.durable, cased=self.cased)
            self.tokens = Tokens(self.layout.fds["locks"])
            self.locks = Locks(self.layout, self.heads, self.tokens, self.lock_timeout)
            index_path = os.path.join(self.root, ns_dir, "index.sqlite3")
            fd = os.open(
                "index.sqlite3", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
                dir_fd=ns_fd,
            )  # fmt: skip
            os.close(fd)
            self.index = Index(index_path, timeout=max(self.lock_timeout, 5.0))
            self.recovery = Recovery(
                self.layout, self.index, self.locks,
                durable=self.durable, corrupt=self.corrupt, own_markers=self._markers,
                locked=self._locked, index_write=self._index_write, mark=self._mark,
            )  # fmt: skip
            self.recovery.recover()
            self.reads = EventReads(
                self.layout, self.index,
                locked=self._locked, mark=self._mark, settle=self.recovery.settle_journals,
            )  # fmt: skip
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release every handle (the store is shut down)."""
        if self.index is not None:
            self.index.close()
        if self.tokens is not None:
            self.tokens.close()
            self.tokens = None  # type: ignore[assignment]
        self.heads.clear()
        with self._mutex:
            # index rows still behind their files (an index write failed, a full disk):
            # one marker is left naming them, so the next opener's recovery repairs them
            behind = "".join(f"{sid}\n" for sid in sorted(self._dirty)).encode()
            for name, fd in self._markers.items():
                if self.layout is not None:
                    if behind:
                        with suppress(OSError):
                            os.pwrite(fd, behind + b"\n", 0)
                            behind = b""
                    else:
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
        """Record the sessions this thread is about to lock and write ("id\n...\n\n").

        Written before their locks are taken, so a writer that dies anywhere after that
        leaves their ids for recovery: leftovers tidied, index rows matched to the
        files. The list stays until the thread's next write (a dead writer's marker
        may name sessions it had finished with: repairing them is harmless), so a
        thread that writes the same session again skips the ``pwrite``.
        """
        listed = "".join(f"{sid}\n" for sid in sids)
        if self._dirty:  # rows an index write failed to update, named until repaired:
            with self._mutex:  # a death now leaves them to recovery as well
                behind = sorted(self._dirty.difference(sids))
            listed += "".join(f"{sid}\n" for sid in behind)
        if getattr(self._local, "marked", None) == listed:
            return
        self._local.marked = None
        os.pwrite(self._marker_fd(), listed.encode() + b"\n", 0)
        self._local.marked = listed

    # ------------------------------------------------------------------ locking

    @contextmanager
    def _locked(self, sids: set[str]) -> Iterator[Held]:
        """Lock ``sids`` (in lock order), replacing their change tokens."""
        held = self.locks.hold()
        try:
            for sid in in_lock_order(sids):
                held.add(sid)
            yield held
        finally:
            held.release()

    # ------------------------------------------------------------------ reads

    def load(self, sids: Sequence[str]) -> dict[str, Session]:
        """Stored sessions (expired included) for ``sids``; absent ones left out."""
        self.recovery.settle_journals(set(sids))
        out = {}
        for sid in sids:
            state = read_state(self.layout, sid)
            state.close()
            if state.session is not None:
                out[sid] = state.session
        return out

    def events(self, sid: str, after_seq: int, limit: int | None, last: int | None) -> list[Event]:
        return self.reads.window(sid, None, Window(after_seq, None, limit, last))

    def read_events(
        self,
        sid: str,
        now: datetime | None,
        after_seq: int,
        before_seq: int | None,
        limit: int | None,
        last: int | None,
        types: Collection[str] | None,
        at_after: datetime | None,
        at_before: datetime | None,
    ) -> list[Event]:
        """``get_events`` (live at ``now``; None: the store's own read).

        A window from the log's end or start is read from the log; one that ends at
        ``before_seq`` finds its place through the event index (one B-tree descent,
        ~3x cheaper than the log's binary search, whose probes each cost a read)."""
        plain = types is None and at_after is None and at_before is None
        if (plain and before_seq is None) or limit == 0 or last == 0:
            return self.reads.window(sid, now, Window(after_seq, before_seq, limit, last))
        query = EventQuery(
            after_seq, before_seq, None if types is None else tuple(sorted(types)),
            None if at_after is None else to_us(at_after),
            None if at_before is None else to_us(at_before), limit, last,
        )  # fmt: skip
        return self.reads.query(sid, now, query)

    def checkpoints(self, sid: str) -> list[Checkpoint]:
        """The readable checkpoints; unreadable ones go to ``corrupt`` (reported)."""
        self.recovery.settle_journals({sid})
        found, bad = read_checkpoints(self.layout, sid)
        self.corrupt.extend(bad)
        return found

    def checkpoint(self, sid: str, cp_id: str) -> Checkpoint | None:
        self.recovery.settle_journals({sid})
        return read_checkpoint(self.layout, sid, cp_id)

    def shard_sessions(self, shard: str) -> tuple[list[Session], list[IntegrityError]]:
        """Every session of one shard directory (corrupt ones returned apart)."""
        found: list[Session] = []
        bad: list[IntegrityError] = []
        fd = self.layout.open_shard(shard)
        try:
            names = self.layout.session_ids(os.listdir(fd))
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

    def transact(
        self, load_ids: Sequence[str], build: Build, *, atomic: bool = True
    ) -> list[Mutation]:
        """Lock, read, plan with ``build``, check, write: one atomic step (``atomic=False``:
        several sessions' writes are each atomic, not all together: no journal)."""
        ids = set(load_ids)
        for _ in range(_ATTEMPTS):
            self._mark(sorted(ids))  # before any lock is taken: see _mark
            held = self.locks.hold()
            try:
                for sid in in_lock_order(ids):
                    held.add(sid)
                blocker = self.recovery.journal_blocking(ids)
                if blocker is None:
                    states: dict[str, State] = {}
                    outcome = "read"
                    try:
                        for sid in sorted(ids):
                            states[sid] = self._read_locked(held, sid)
                        loaded = {s: st.session for s, st in states.items() if st.session}
                        mutations = build(loaded)
                        if not mutations:
                            return mutations
                        extra = sorted({m.session_id for m in mutations} - ids)
                        if extra:
                            self._mark(sorted(ids.union(extra)))
                            if not held.try_add(extra):
                                ids.update(extra)
                                continue  # lock them in order with the rest, and re-plan
                            for sid in extra:
                                states[sid] = self._read_locked(held, sid)
                        for mut in mutations:
                            current = states[mut.session_id].session
                            actual = 0 if current is None else current.version
                            if actual != mut.expect:
                                raise SessionConflictError(mut.session_id, mut.expect, actual)
                        outcome = "failed"
                        self._write(mutations, states, atomic=atomic)
                        outcome = "written"
                        return mutations
                    finally:
                        self._settle(held, states, outcome)
            finally:
                held.release()
            name, dead = blocker
            if dead:
                self.recovery.recover_journal(name)
            else:
                time.sleep(0.001)
        raise StoreUnavailableError("a pending transaction journal kept blocking this write")

    def apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        """``_apply``: write ``mutations`` if every ``expect`` holds (else a conflict)."""
        muts = list(mutations)
        sids = [m.session_id for m in muts]
        if len(set(sids)) != len(sids):
            raise InvalidArgumentError("a batch of writes names the same session twice")
        self.transact(sids, lambda _loaded: muts, atomic=atomic)

    def _read_locked(self, held: Held, sid: str) -> State:
        """``sid``'s state under its lock: the head cache's when the token allows."""
        head = held.heads.pop(sid, None)
        if head is not None:
            tokens = held.tokens.get(sid)
            state = None if tokens is None else self.heads.revive(self.layout, sid, head, tokens[0])
            head.close_files()
            if state is not None:
                return state
        return read_state(self.layout, sid, locked=True)

    def _settle(self, held: Held, states: dict[str, State], outcome: str) -> None:
        """Before unlocking: keep what we know for the next write (one session only),
        close."""
        single = len(states) == 1
        for sid, state in states.items():
            if outcome != "failed" and state.session is not None and single and sid in held.tokens:
                try:
                    head = self.heads.make(
                        state, held.tokens[sid][1], held.fds[sid], held.inos[sid]
                    )
                except OSError:
                    head = None  # not worth an error: the next write reads the files
                if head is not None:
                    held.keep[sid] = head
            state.close()

    def _write(
        self, mutations: Sequence[Mutation], states: dict[str, State], *, atomic: bool
    ) -> None:
        sids = [m.session_id for m in mutations]  # marked in flight by transact()
        if len(mutations) == 1:
            mut = mutations[0]
            state = states[mut.session_id]
            old = state.session
            early: list[bool] = []
            hook = None
            if EARLY_INDEX and old is not None and is_pure_append(old, mut):
                # The index row of a pure append is written just before its fdatasync:
                # on a thread whose caches are still warm, instead of after the disk
                # wait. Readers see the row and the appended line (page cache) at the
                # same time, as ever; a failed sync is undone in the log and the row
                # resynced below; a crash before the sync is repaired from the in-flight
                # marker like any crash between the two.
                change = (mut.session_id, old, mut.session)

                def hook() -> None:
                    self._index_write([change], _evs(state), _encoded(mutations))
                    early.append(True)

            proven = None
            if mut.removes_events and not mut.reset and state.valid_end:
                proven = self._proven_cover(state)
            try:
                new = apply_one(self.layout, state, mut, before_data=hook)
            except BaseException:
                self._resync(sids)
                raise
            if not early:
                self._index_write(
                    [(mut.session_id, old, new)], _evs(state, proven),
                    _encoded(mutations) if new is mut.session else None,
                )  # fmt: skip
        else:
            self._write_batch(mutations, states, atomic=atomic)

    def _proven_cover(self, state: State) -> Cover | None:
        """The session's event-index cover if it is proven against ``state`` (before a
        write that may cut the log), else None."""
        try:
            cover = read_cover(self.index.conn(), state.sid)
        except sqlite3.Error:
            return None
        reader = LogReader.of(state)
        try:
            return None if classify(cover, state, reader) == STALE else cover
        finally:
            reader.close()

    def _write_batch(
        self, mutations: Sequence[Mutation], states: dict[str, State], *, atomic: bool
    ) -> None:
        """Several sessions: stage all, barrier, commit all, barrier, finish all."""
        sids = [m.session_id for m in mutations]
        sync: Sync = (
            BatchSync(
                self.layout.ns_fd,
                use_syncfs=syncfs_supported() and len(mutations) >= SYNCFS_FROM,
            )
            if self.durable
            else Sync()
        )
        journal: tuple[str, int] | None = None
        gens: list[tuple[str, Session | None, Steps]] = []
        try:
            if atomic:
                journal = self._write_journal(mutations, sync)
            for mut in mutations:
                state = states[mut.session_id]
                gens.append((mut.session_id, state.session, steps(self.layout, state, mut, sync)))
                next(gens[-1][2])  # stage
            sync.barrier()  # the journal and everything staged are durable
            for _, _, gen in gens:
                next(gen)  # commit
            sync.barrier(commit=True)
            changes = [(sid, old, finish(gen)) for sid, old, gen in gens]
        except BaseException as exc:
            sync.close()  # what it still held for the next barrier
            for _, _, gen in gens:
                gen.close()  # removes what it staged
            self._resync(sids)
            committed = any(state.committed for state in states.values())
            if journal is not None:
                name, fd = journal
                journal = None
                if not committed:  # nothing was applied: withdraw the transaction
                    self._withdraw_journal(name)
                os.close(fd)  # unlocked: a journal left in place is completed by recovery
                if committed:
                    raise OutcomeUnknownError(
                        "a transaction was committed to the journal but applying it failed "
                        f"({exc}); it is completed by recovery: re-read the sessions"
                    ) from exc
            elif committed and not isinstance(exc, OutcomeUnknownError):
                raise OutcomeUnknownError(
                    f"a batch of writes failed part way ({exc}); some sessions were "
                    "written: re-read them"
                ) from exc
            raise
        by_id = {m.session_id: m for m in mutations}
        self._index_write(
            changes, [ev for st in states.values() for ev in _evs(st)],  # no cuts
            _encoded([by_id[sid] for sid, _, new in changes if new is by_id[sid].session]),
        )  # fmt: skip
        if journal is not None:
            try:  # applied: a journal left (a failed unlink) is completed as a no-op later
                with suppress(OSError):
                    os.unlink(journal[0], dir_fd=self.layout.journal_fd)
            finally:
                os.close(journal[1])

    def _write_journal(self, mutations: Sequence[Mutation], sync: Sync) -> tuple[str, int]:
        """Write the intent journal (its data fsynced before it is renamed into place, its
        directory entry durable by the next barrier); returns its name and locked fd."""
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
                os.fsync(fd)  # whole before it is visible: a torn journal is never renamed in
            os.replace(tmp, name, src_dir_fd=jfd, dst_dir_fd=jfd)
        except BaseException:
            os.close(fd)
            with suppress(OSError):
                os.unlink(tmp, dir_fd=jfd)
            raise
        sync.dir(jfd, "the transaction journal")
        return name, fd

    def _withdraw_journal(self, name: str) -> None:
        """Remove a journal whose transaction was not applied at all (best effort)."""
        jfd = self.layout.journal_fd
        with suppress(OSError):
            os.unlink(name, dir_fd=jfd)
            if self.durable:
                os.fsync(jfd)

    def _index_write(
        self,
        changes: list[tuple[str, Session | None, Session | None]],
        events: Sequence[EventChange] = (),
        encoded: Mapping[str, bytes] | None = None,
    ) -> None:
        try:
            self.index.write(changes, events, encoded)
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
        self.recovery.settle_journals(None)
        now = time.monotonic()
        if now - self._last_reap >= _REAP_EVERY:
            self._last_reap = now
            self.recovery.reap_writers()
        if self._dirty:
            with self._mutex:
                dirty, self._dirty = sorted(self._dirty), set()
            for n, sid in enumerate(dirty):
                try:
                    self.recovery.repair(sid)
                except BaseException:  # (a full disk): those left are repaired next time
                    with self._mutex:
                        self._dirty.update(dirty[n:])
                    raise

    def _query_load(self, sid: str) -> Session | None:
        try:
            state = read_state(self.layout, sid)
        except IntegrityError as exc:
            self.corrupt.append(exc)
            return None
        state.close()
        return state.session

    def list_page(self, flt: SessionFilter, opts: QueryOptions, now: datetime) -> Page:
        """One page: one indexed query, the sessions decoded from their rows (a row
        without them, in an index being upgraded, is read from the files)."""
        self.maintain()
        # the query's fingerprint only where a cursor is read or written (a short page
        # has none: ~10 us of a 1-row page's ~40)
        fingerprint = after = None
        if opts.cursor is not None:
            fingerprint = query_fingerprint(flt, opts)
            after = decode_cursor(opts.cursor, fingerprint)
        bound: int | None = opts.offset + opts.limit + 8
        for _ in range(4):
            items: list[Session] = []
            stale: list[str] = []
            more = False
            seen = 0
            skip = opts.offset
            # one read snapshot; a filter with a choice to weigh reuses the counts that
            # made it while the index is unchanged (see Index.snapshot)
            with self.index.snapshot():
                for row in self.index.select(flt, now, opts, after, limit=bound, full=True):
                    seen += 1
                    if skip:
                        skip -= 1
                        continue
                    if len(items) == opts.limit:
                        more = True
                        break
                    found = session_of(row)
                    if found is not None:
                        items.append(found)
                        continue
                    sid = row[0]
                    if row[-1] is not None:  # a row that does not decode: rewrite it
                        with self._mutex:
                            self._dirty.add(sid)
                    session = self._query_load(sid)
                    if session is None or not matches(session, flt, now):
                        if session is None and self.corrupt and self.corrupt[-1].record == sid:
                            continue  # reported; the rest of the page goes on
                        stale.append(sid)
                        continue
                    items.append(session)
            if stale:
                for sid in stale:
                    self.recovery.repair(sid)
                continue  # the index was behind the files: ask it again
            if not more and bound is not None and seen >= bound:
                bound = None  # rows were skipped: the page needs more of them
                continue
            break
        next_cursor = None
        if more and items:
            next_cursor = encode_cursor(
                fingerprint or query_fingerprint(flt, opts), order_key(items[-1], opts.sort_by)
            )
        return Page(items, next_cursor)

    def count(self, flt: SessionFilter, now: datetime) -> int:
        self.maintain()
        return self.index.count(flt, now)

    def search(
        self, text: str, flt: SessionFilter, opts: QueryOptions | None, now: datetime
    ) -> Page:
        self.maintain()
        sessions = [
            s
            for row in self.index.select(flt, now, full=True)
            if (s := session_of(row) or self._query_load(row[0])) is not None
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
