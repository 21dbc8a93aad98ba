"""Writing one session's mutation, in three stages that a batch of sessions can share.

:func:`steps` is a generator that writes one :class:`~sessionstore.Mutation` (the caller
holds the session's lock and has checked ``expect``):

1. up to its first ``yield``: everything that must be durable *before* the commit point
   and that no reader can see yet: a new directory, the temp file of the new
   ``session.json``, the pending lines of a write that also changes the document, and
   files that nothing names until the new document does (a new log generation, the
   checkpoints of a new incarnation), written in place under their final names;
2. up to its second ``yield``: the commit point itself, one atomic step (the replace of
   ``session.json``, the ``write`` of committed log lines, the rename of a deleted
   session's directory, checkpoint replaces);
3. to its end: tidying that changes nothing visible (old log generations, the other
   incarnation's checkpoints, a deleted directory, a fold of the log into the document).

Between the stages the caller runs a barrier of the :class:`~._durable.Sync` the steps
registered their files and directories with. One session runs the generator straight
through with :class:`~._durable.EachSync` (every file fsynced before its replace, every
directory right after it: the sequence ``test_syscalls.py`` checks). A batch advances all
its sessions' generators through stage 1, syncs once, through stage 2, syncs once, then
lets them finish, so N sessions share two barriers instead of making ~3N fsyncs. On any
failure before its commit the generator is closed and removes what it made.

Each stage keeps the :class:`~._session.State` in step with the files, so after a write
the state describes the session as it now is on disk (the head cache keeps it).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Callable, Generator
from typing import Final

import orjson

from sessionstore import Event, IntegrityError, Mutation, OutcomeUnknownError, Session

from ._durable import EachSync, Sync
from ._event_index import EventChange, cover_of, rows_of_lines
from ._file_formats import Doc, encode_batch, encode_checkpoint, encode_doc
from ._fs import (
    DIR_MODE,
    FILE_MODE,
    READ_FLAGS,
    open_dir,
    pread_all,
    temp_name,
    unlink_quiet,
    write_all,
)
from ._layout import COMPACT_SUFFIX, Layout
from ._log import (
    LogReader,
    iter_lines,
)
from ._session import (
    DOC,
    FOLD_AFTER,
    FOLD_BYTES,
    State,
    cp_dir_name,
    log_name,
    new_inc,
    rmtree_quiet,
    written,
)

__all__ = ["Steps", "apply_one", "finish", "is_pure_append", "steps", "sync_for"]

log = logging.getLogger("sessionstore.filesystem")

_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
# a name nobody reads yet: what a crashed attempt left there is overwritten
_NEW_NAMED: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | _CLOEXEC
#: ``link()`` refused because the file system has no hard links (exFAT: EPERM)
_NO_LINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})

#: A mutation being written: yields after staging and after committing, returns the
#: session's new state (``None``: deleted).
Steps = Generator[None, None, Session | None]


def sync_for(durable: bool) -> Sync:
    """The per-step sync of one session's write."""
    return EachSync() if durable else Sync()


def apply_one(
    layout: Layout, state: State, mut: Mutation, *, before_data: Callable[[], None] | None = None
) -> Session | None:
    """Write one mutation straight through, every step synced as it is made.

    ``before_data`` (durable stores only): called once just before the first
    ``fdatasync``; for a pure append that is its commit (see :class:`EachSync`)."""
    sync: Sync = EachSync(before_data) if layout.durable else Sync()
    return finish(steps(layout, state, mut, sync))


def finish(gen: Steps) -> Session | None:
    """Run ``gen`` to its end; its result."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        result: Session | None = stop.value
        return result


class _Temps:
    """What a write made that is not part of the session yet: temp files not renamed into
    place, and files and directories made under names nothing follows until the commit
    (``named``: (directory fd, name)); plus directories held open."""

    def __init__(self) -> None:
        self.files: list[tuple[int, str]] = []
        self.named: list[tuple[int, str]] = []
        self.fds: list[int] = []

    def cleanup(self) -> None:
        """Remove what is left (a write given up before its commit) and close."""
        for dir_fd, tmp in self.files:
            unlink_quiet(tmp, dir_fd)
        self.files.clear()
        for dir_fd, name in reversed(self.named):
            if not unlink_quiet(name, dir_fd):
                rmtree_quiet(name, dir_fd)
        self.named.clear()
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def _stage(
    dir_fd: int, name: str, data: bytes, sync: Sync, temps: _Temps
) -> tuple[str, tuple[int, int, int]]:
    """Write ``data`` to a new temp file next to ``name``; its name and (ino, size, mtime)."""
    tmp = temp_name(name)
    fd = os.open(tmp, _NEW_FILE, FILE_MODE, dir_fd=dir_fd)
    temps.files.append((dir_fd, tmp))
    try:
        write_all(fd, data)
        sync.file(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return tmp, (st.st_ino, st.st_size, st.st_mtime_ns)


def _write_new(dir_fd: int, name: str, data: bytes, sync: Sync, temps: _Temps, what: str) -> None:
    """Write a file no reader can see yet under its final name (a new log generation, a
    checkpoint of a new incarnation: nothing names them until the document does), its
    data and directory entry synced per ``sync``. A crash leaves a file tidy() removes."""
    fd = os.open(name, _NEW_NAMED, FILE_MODE, dir_fd=dir_fd)
    temps.named.append((dir_fd, name))
    try:
        try:
            write_all(fd, data)
            sync.file(fd)
        finally:
            os.close(fd)
        sync.dir(dir_fd, what)
    except BaseException:
        unlink_quiet(name, dir_fd)
        raise


def _make_dir(
    name: str, parent_fd: int, sync: Sync, record: str, temps: _Temps | None = None
) -> int:
    """Open directory ``name``, creating it (0700) first; a new one is synced into its
    parent (and with ``temps``, removed if the write is given up before its commit)."""
    try:
        os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
    except FileExistsError:
        return open_dir(name, parent_fd, record)
    if temps is not None:
        temps.named.append((parent_fd, name))
    sync.dir(parent_fd, record)
    return open_dir(name, parent_fd, record)


class _DocStage:
    """The new ``session.json`` staged in a temp file, to be renamed in as the commit;
    with ``shard`` (a descriptor) the compact document ``<id>~.json`` in that shard."""

    def __init__(
        self,
        state: State,
        new: Session,
        mut: Mutation,
        gen: int,
        end: int,
        inc: str,
        *,
        shard: int = -1,
    ) -> None:
        self.state = state
        self.shard = shard
        self.dir_fd, self.name = (
            (shard, state.name + COMPACT_SUFFIX) if shard >= 0 else (state.dir_fd, DOC)
        )
        self.doc = Doc(new, gen, end, inc)
        data_json, meta_json = mut.data_json, mut.metadata_json
        if data_json is None or meta_json is None or mut.session is not new:
            data_json, meta_json = orjson.dumps(new.data), orjson.dumps(new.metadata)
        self.json = (data_json, meta_json)
        self.raw = encode_doc(new, data_json, meta_json, gen=gen, log_end=end, inc=inc)
        self.tmp = ""
        self.key = (0, 0, 0)

    def stage(self, sync: Sync, temps: _Temps) -> None:
        self.tmp, self.key = _stage(self.dir_fd, self.name, self.raw, sync, temps)

    def commit(self, sync: Sync, temps: _Temps) -> None:
        """Rename the new document into place: the commit point."""
        state = self.state
        os.replace(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        written(state.sid, self.raw, self.doc, *self.json)  # a read of these bytes: no decode
        temps.files.remove((self.dir_fd, self.tmp))
        temps.named.clear()  # what the new document names is the session's now
        state.committed = True
        state.compact = self.shard >= 0
        if state.compact:
            state.shard_fd = self.shard
            if state.dir_fd >= 0:  # a directory without session.json: not the session's
                os.close(state.dir_fd)
                state.dir_fd = -1
        if state.doc is None or state.doc.gen != self.doc.gen:
            state.close_log()  # a new log generation: the open one is not the session's
        state.doc = self.doc
        state.session = self.doc.session
        state.doc_key = self.key
        state.doc_json = self.json
        state.valid_end = self.doc.log_end
        state.tail_batches = 0
        sync.dir(self.dir_fd, f"{state.sid}/{self.name}", commit=True)


def _append(state: State, gen: int, data: bytes, sync: Sync, *, commit: bool) -> int:
    """Append lines at the end of the committed log (first cutting what a crashed writer
    left after it); returns the new end. ``commit``: these lines are the commit point."""
    created = state.log_size < 0
    fd = state.log_fd
    if fd < 0:
        fd = os.open(
            log_name(gen), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC,
            FILE_MODE, dir_fd=state.dir_fd,
        )  # fmt: skip
        state.log_fd = fd  # kept for the next append (see _heads); closed with the state
    state.end_chunk = None  # the log changes: what read_state read of its end is stale
    if state.log_size > state.valid_end:
        os.ftruncate(fd, state.valid_end)  # what a crashed writer left: never committed
    try:
        write_all(fd, data)
        sync.file(fd, data_only=True)
    except BaseException:
        # readers ignore an unfinished group anyway; the next writer trims it
        with contextlib.suppress(OSError):
            os.ftruncate(fd, state.valid_end)
        state.close_log()
        raise
    end = state.valid_end + len(data)
    state.log_size = end
    state.committed = state.committed or commit
    if created:  # its directory entry
        sync.dir(state.dir_fd, f"{state.sid}/{log_name(gen)}", commit=commit)
    return end


def is_pure_append(cur: Session | None, mut: Mutation) -> bool:
    """True when ``mut`` only appends: the document would change in derived fields only."""
    new = mut.session
    if cur is None or new is None or not mut.append or mut.reset or mut.removes_events:
        return False
    first, last = mut.append[0], mut.append[-1]
    return (
        first.seq == cur.last_seq + 1
        and new.last_seq == last.seq
        and new.updated_at == last.at
        and new.version > cur.version
        and new.event_count == cur.event_count + len(mut.append)
        and new.processor_id == cur.processor_id
        and new.status is cur.status
        and new.created_at == cur.created_at
        and new.expires_at == cur.expires_at
        and new.group == cur.group
        # an append carries the same objects over: identity first (a dict's == walks it)
        and (new.tags is cur.tags or new.tags == cur.tags)
        and (new.metadata is cur.metadata or new.metadata == cur.metadata)
        and (new.data is cur.data or new.data == cur.data)
    )


class _CheckpointStage:
    """Checkpoint files to put (staged) and to delete, in directory ``checkpoints.<inc>``.

    ``new``: the directory of a new incarnation, which nothing names until the document
    is replaced: its files are written in place (and there is nothing to commit)."""

    def __init__(
        self, state: State, inc: str, mut: Mutation, sync: Sync, temps: _Temps, *, new: bool
    ) -> None:
        self.state = state
        self.mut = mut
        self.fd = _make_dir(cp_dir_name(inc), state.dir_fd, sync, state.sid, temps if new else None)
        temps.fds.append(self.fd)
        self.staged: list[tuple[str, str]] = []
        for cp in mut.put_checkpoints:
            name, raw = f"{cp.id}.json", encode_checkpoint(cp)
            if new:  # (the directory is removed as a whole if the write is given up)
                _write_new(self.fd, name, raw, sync, _Temps(), f"{state.sid} checkpoints")
            else:
                self.staged.append((_stage(self.fd, name, raw, sync, temps)[0], cp.id))

    def commit(self, sync: Sync, temps: _Temps) -> None:
        what = f"{self.state.sid} checkpoints"
        for tmp, cp_id in self.staged:
            os.replace(tmp, f"{cp_id}.json", src_dir_fd=self.fd, dst_dir_fd=self.fd)
            temps.files.remove((self.fd, tmp))
            self.state.committed = True
            sync.dir(self.fd, what, commit=True)
        removed = False
        for cp_id in self.mut.delete_checkpoints:
            removed = unlink_quiet(f"{cp_id}.json", self.fd) or removed
        if removed:
            self.state.committed = True
            sync.dir(self.fd, what, commit=True)


def _checkpoints(
    state: State, inc: str, mut: Mutation, sync: Sync, temps: _Temps, *, new: bool = False
) -> _CheckpointStage | None:
    if not mut.put_checkpoints and not mut.delete_checkpoints:
        return None
    return _CheckpointStage(state, inc, mut, sync, temps, new=new)


# --------------------------------------------------------------------------- the steps


def steps(layout: Layout, state: State, mut: Mutation, sync: Sync) -> Steps:
    """Write ``mut`` in three stages (see the module docstring); the new session."""
    temps = _Temps()
    try:
        if mut.delete:
            return (yield from _delete(layout, state, sync))
        cur = state.session
        new = mut.session if mut.session is not None else cur
        if new is None:
            raise IntegrityError("checkpoint write for a session that does not exist", state.sid)
        if (state.doc is None or state.compact) and _compactable(mut):
            return (yield from _compact(layout, state, mut, new, sync, temps))
        if state.compact and is_pure_append(cur, mut):
            return (yield from _first_append(state, mut, new, sync, temps))
        if mut.reset or state.doc is None or state.compact:  # (compact: its first events)
            return (yield from _reset(layout, state, mut, new, sync, temps))
        return (yield from _change(layout, state, mut, cur, new, sync, temps))
    finally:
        temps.cleanup()


def _compactable(mut: Mutation) -> bool:
    """True when ``mut`` leaves a compact session (or none) compact: no events, no
    checkpoints (deleting checkpoints of a compact session deletes nothing)."""
    return not mut.append and not mut.put_checkpoints


def _compact(
    layout: Layout, state: State, mut: Mutation, new: Session, sync: Sync, temps: _Temps
) -> Steps:
    """Create, re-create or change a compact session: its document ``<id>~.json``
    replaced in the shard directory (made once) is the commit: one new file, one fsync of
    it and one of the shard, as a raw durable file would cost."""
    shard = layout.shard_fd("sessions", state.sid, create=True, sync=sync)
    assert shard is not None
    old = state.doc
    fresh = old is None or mut.reset
    gen = 1 if old is None else old.gen + 1 if mut.reset else old.gen
    inc = new_inc() if fresh or old is None else old.inc
    doc = _DocStage(state, new, mut, gen, 0, inc, shard=shard)
    doc.stage(sync, temps)
    yield
    doc.commit(sync, temps)  # the commit
    state.log_size = -1
    if fresh and old is not None:  # a new incarnation: the old one's rows and cover go
        state.ev = EventChange(state.sid, None, None)
    # A new session's rows need no cover while its log is empty (every indexed read of
    # an empty log answers without the index); its first append writes the empty one.
    yield
    return new


def _first_append(state: State, mut: Mutation, new: Session, sync: Sync, temps: _Temps) -> Steps:
    """The first events of a compact session (a pure append): its directory is made
    (synced into the shard) with the log of the appended lines (``fdatasync``), then the
    compact document is hard-linked in as ``session.json`` (the commit: the document is
    unchanged, its ``log_end`` is 0, so the lines after it are committed appends) and the
    directory synced; then the compact name is removed. Three syncs, one more than the
    first append of a session made with a directory: the one the create saved."""
    assert state.doc is not None
    sid, shard, name = state.sid, state.shard_fd, state.name
    # the empty cover (the create wrote none): the lines appended are after it, so the
    # next indexed read finds it a proven prefix and indexes them without the lock
    state.ev = EventChange(sid, None, (state.doc.inc, state.doc.gen, 0, 0), [])
    rmtree_quiet(name, shard)  # what a conversion that never committed left (we hold the lock)
    state.dir_fd = _make_dir(name, shard, sync, sid, temps)  # removed if given up
    gen = state.doc.gen
    data = encode_batch(mut.append, version=new.version, pending=False)
    fd = os.open(log_name(gen), _NEW_NAMED | os.O_APPEND, FILE_MODE, dir_fd=state.dir_fd)
    state.log_fd = fd  # kept for the next append (see _heads); closed with the state
    write_all(fd, data)
    sync.file(fd, data_only=True)
    yield
    _link_doc(name + COMPACT_SUFFIX, shard, state.dir_fd, sync, temps)
    temps.named.clear()  # the directory is the session's now
    state.committed = True
    state.compact = False
    state.session = new
    state.log_size = state.valid_end = len(data)
    state.tail_batches = 1
    sync.dir(state.dir_fd, f"{sid}/{DOC}", commit=True)  # the link and the log's entry
    yield
    unlink_quiet(name + COMPACT_SUFFIX, shard)  # a leftover loses to session.json anyway
    return new


def _link_doc(compact: str, shard: int, dir_fd: int, sync: Sync, temps: _Temps) -> None:
    """Put the compact document in the new session directory as ``session.json`` (the
    first append's commit): a hard link, or where the file system has none (exFAT, some
    SMB shares) a copy of its bytes, synced, renamed in: the same document either way."""
    try:
        os.link(compact, DOC, src_dir_fd=shard, dst_dir_fd=dir_fd, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    fd = os.open(compact, READ_FLAGS, dir_fd=shard)
    try:
        raw = pread_all(fd, 0, os.fstat(fd).st_size, compact)
    finally:
        os.close(fd)
    tmp, _ = _stage(dir_fd, DOC, raw, sync, temps)
    sync.barrier()  # the copy's bytes durable before its name commits
    os.replace(tmp, DOC, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    temps.files.remove((dir_fd, tmp))


def _delete(layout: Layout, state: State, sync: Sync) -> Steps:
    """Rename the session's directory aside (the commit), then remove it; a compact
    session's commit is the unlink of its document."""
    sid = state.sid
    if state.compact:
        yield
        os.unlink(state.name + COMPACT_SUFFIX, dir_fd=state.shard_fd)
        state.forget()
        state.committed = True
        state.ev = EventChange(sid, None, None)
        sync.dir(state.shard_fd, f"the delete of {sid}", commit=True)
        yield
        return None
    # a compact document its conversion did not remove (a crash): gone durably before
    # the directory is, or it would be the session again
    if (
        state.dir_fd >= 0
        and state.doc is not None
        and state.shard_fd >= 0
        and unlink_quiet(state.name + COMPACT_SUFFIX, state.shard_fd)
    ):
        sync.dir(state.shard_fd, f"{sid} (converted)")
    yield
    if state.dir_fd < 0:
        yield
        return None
    shard = layout.shard_fd("sessions", sid, create=False)
    assert shard is not None
    trash = f".trash.{state.name}.{secrets.token_hex(4)}"
    os.rename(state.name, trash, src_dir_fd=shard, dst_dir_fd=shard)
    try:
        state.forget()
        state.committed = True
        state.ev = EventChange(sid, None, None)
        sync.dir(shard, f"the delete of {sid}", commit=True)
        yield
    finally:
        rmtree_quiet(trash, shard)
    return None


def _reset(
    layout: Layout, state: State, mut: Mutation, new: Session, sync: Sync, temps: _Temps
) -> Steps:
    """A fresh incarnation: new log, new checkpoint directory, then the document. Also the
    first events or checkpoints of a compact session (``convert``): its directory is
    made, then the compact document is removed once ``session.json`` is committed."""
    convert = state.compact
    if state.dir_fd < 0:
        shard = layout.shard_fd("sessions", state.sid, create=True, sync=sync)
        assert shard is not None
        if convert:  # what a conversion that never committed left (we hold the lock)
            rmtree_quiet(state.name, shard)
        state.dir_fd = _make_dir(state.name, shard, sync, state.sid, temps)
    old = state.doc
    if convert and old is not None and not mut.reset:  # the same incarnation, first files
        gen, inc = old.gen, old.inc
    else:
        gen, inc = (old.gen + 1 if old is not None else 1), new_inc()
    events = mut.append  # removals apply to stored events, and a reset drops them all
    data = encode_batch(events, version=new.version, pending=False) if events else b""
    if data:  # not named until the document is replaced
        what = f"{state.sid}/{log_name(gen)}"
        _write_new(state.dir_fd, log_name(gen), data, sync, temps, what)
    _checkpoints(state, inc, mut, sync, temps, new=True)  # likewise
    doc = _DocStage(state, new, mut, gen, len(data), inc)
    doc.stage(sync, temps)
    yield
    doc.commit(sync, temps)  # the commit
    state.log_size = len(data) if data else -1
    tail = events[-1].seq if events else 0
    state.ev = EventChange(state.sid, None, cover_of(state, tail), rows_of_lines(events, data, 0))
    yield
    if convert:  # the directory's session.json is the session now
        unlink_quiet(state.name + COMPACT_SUFFIX, state.shard_fd)
    elif old is not None:
        unlink_quiet(log_name(old.gen), state.dir_fd)
        rmtree_quiet(cp_dir_name(old.inc), state.dir_fd)
    return new


def _change(
    layout: Layout,
    state: State,
    mut: Mutation,
    cur: Session | None,
    new: Session,
    sync: Sync,
    temps: _Temps,
) -> Steps:
    """A write to the current incarnation: removals, append, document, checkpoints."""
    assert state.doc is not None
    gen, inc = state.doc.gen, state.doc.inc
    doc: _DocStage | None = None
    removal = _plan_removal(state, mut) if mut.removes_events else None
    if isinstance(removal, _Cut) and not mut.append:
        # The newest events go: the new document ends the log before them (the commit);
        # the lines after it are cut off the file afterwards (readers ignore them: their
        # seqs are not above the document's last_seq, see _session).
        doc = _DocStage(state, new, mut, gen, removal.offset, inc)
        doc.stage(sync, temps)
        cps = _checkpoints(state, inc, mut, sync, temps)
        yield
        doc.commit(sync, temps)  # the commit
        if cps is not None:
            cps.commit(sync, temps)
        state.ev = EventChange(
            state.sid,
            None,
            cover_of(state, removal.kept_last),
            drop_after=removal.kept_last,
            cut=True,
        )  # fmt: skip (applied by the engine if it proved the cover before the write)
        yield
        _cut_file(state, gen, removal.offset)
        return new
    if removal is not None:
        removal = _Rewrite(mut)
        # Events go from the middle (or the oldest: trim), or the newest go and others
        # come in the same write: a new log generation with the kept events and the new.
        kept = [e for e in _all_events(state) if removal.keeps(e.seq)] + mut.append
        data = encode_batch(kept, version=new.version, pending=False) if kept else b""
        if data:  # not named until the document is replaced
            what = f"{state.sid}/{log_name(gen + 1)}"
            _write_new(state.dir_fd, log_name(gen + 1), data, sync, temps, what)
        doc = _DocStage(state, new, mut, gen + 1, len(data), inc)
        doc.stage(sync, temps)
        cps = _checkpoints(state, inc, mut, sync, temps)
        yield
        doc.commit(sync, temps)  # the commit
        state.log_size = len(data) if data else -1
        if cps is not None:
            cps.commit(sync, temps)
        tail = kept[-1].seq if kept else 0
        state.ev = EventChange(state.sid, None, cover_of(state, tail), rows_of_lines(kept, data, 0))
        yield
        unlink_quiet(log_name(gen), state.dir_fd)
        return new
    pure = is_pure_append(cur, mut)
    if mut.append and not pure:  # lines that count once the document covers them
        data = encode_batch(mut.append, version=new.version, pending=True)
        end = _append(state, gen, data, sync, commit=False)
        doc = _DocStage(state, new, mut, gen, end, inc)
    elif not mut.append and mut.session is not None:
        doc = _DocStage(state, new, mut, gen, state.valid_end, inc)
    if doc is not None:
        doc.stage(sync, temps)
    cps = _checkpoints(state, inc, mut, sync, temps)
    yield
    if pure:  # the commit of a pure append: whole lines, then fdatasync
        data = encode_batch(mut.append, version=new.version, pending=False)
        end = _append(state, gen, data, sync, commit=True)
        state.session = new
        state.valid_end = end
        state.tail_batches += 1
    elif doc is not None:
        doc.commit(sync, temps)  # the commit
    if cps is not None:
        cps.commit(sync, temps)
    yield
    if (
        pure
        and state.doc is not None
        and (state.tail_batches >= FOLD_AFTER or state.valid_end - state.doc.log_end > FOLD_BYTES)
    ):
        _fold(state, new, mut, gen, inc, sync.durable)
    return new


def _fold(state: State, new: Session, mut: Mutation, gen: int, inc: str, durable: bool) -> None:
    """Rewrite the document to cover the appends after it (changes nothing visible).

    After the appends are durable, with its own fsyncs. A failure is not the write's
    failure (the appends are committed): the document stays as it was, the next append
    folds again."""
    temps = _Temps()
    sync = sync_for(durable)
    try:
        doc = _DocStage(state, new, mut, gen, state.valid_end, inc)
        doc.stage(sync, temps)
        doc.commit(sync, temps)
    except (OSError, OutcomeUnknownError) as exc:
        log.warning("could not fold the event log of %s into its document: %s", state.sid, exc)
    finally:
        temps.cleanup()


class _Cut:
    """Removing the newest events: the log ends at ``offset``; ``kept_last`` is the seq
    of the last line before it (0: none)."""

    __slots__ = ("kept_last", "offset")

    def __init__(self, offset: int, kept_last: int) -> None:
        self.offset = offset
        self.kept_last = kept_last


class _Rewrite:
    """Removing events anywhere: the kept ones are written to a new log generation."""

    __slots__ = ("deleted", "floor", "top")

    def __init__(self, mut: Mutation) -> None:
        self.floor = mut.trim_before
        self.top = mut.truncate_after
        self.deleted = set(mut.delete_seqs)

    def keeps(self, seq: int) -> bool:
        return (
            seq >= self.floor and (self.top is None or seq <= self.top) and seq not in self.deleted
        )


def _plan_removal(state: State, mut: Mutation) -> _Cut | _Rewrite | None:
    """How ``mut`` removes stored events: a cut of the log's end (the newest events go:
    O(removed), found by binary search), a rewrite, or None (none of them is stored)."""
    if state.doc is None or state.valid_end == 0:
        return None
    if mut.trim_before:
        return _Rewrite(mut)
    reader = LogReader.of(state)
    try:
        cut = reader.end
        if mut.truncate_after is not None:
            cut = reader.offset_after(mut.truncate_after)
        dels = set(mut.delete_seqs)
        kept_last = 0
        for off, raw in reader.lines_back(cut):
            seq = reader.decode(raw).seq
            if seq in dels:
                dels.discard(seq)
                cut = off
            else:
                kept_last = seq
                break
        # a deleted seq below the last kept line: only if it is stored is a rewrite due
        for seq in sorted(q for q in dels if q < kept_last):
            off = reader.offset_after(seq - 1)
            if off < reader.end and reader.seq_of(next(reader.lines(off, reader.end))[1]) == seq:
                return _Rewrite(mut)
        if cut == reader.end:
            return None
        reader.decode(next(reader.lines(cut, reader.end))[1])  # the boundary, checked
        return _Cut(cut, kept_last)
    finally:
        reader.close()


def _cut_file(state: State, gen: int, offset: int) -> None:
    """Cut the lines after ``offset`` off the log (after the commit that dropped them:
    a failure leaves them to the next writer, which cuts them before appending)."""
    state.end_chunk = None
    try:
        fd = state.log_fd
        if fd < 0:
            fd = os.open(log_name(gen), os.O_WRONLY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=state.dir_fd)
            try:
                os.ftruncate(fd, offset)
            finally:
                os.close(fd)
        else:
            os.ftruncate(fd, offset)
    except OSError as exc:
        log.warning("could not cut the event log of %s: %s", state.sid, exc)
        return
    state.log_size = offset


def _all_events(state: State) -> list[Event]:
    if state.doc is None or state.valid_end == 0:
        return []
    return list(iter_lines(state, state.doc.gen, 0, state.valid_end))
