"""One session's files: reading its state, reading its events and checkpoints, tidying up.

The session document (``session.json``) and the event log (``events.<gen>.jsonl``)
together make the session's state:

* ``session.json`` holds the session as of byte ``log_end`` of the log;
* after ``log_end`` the log may hold more *committed* appends: complete groups of lines
  whose last line carries ``"ver"`` (the version that append made) and no ``"doc"`` flag.
  Each such append advances ``version``, ``updated_at`` (its events' time),
  ``event_count`` and ``last_seq``. So an append writes only the log (O(1) in history
  length) and one ``fdatasync``; every few appends the document is rewritten to cover
  them again ("fold"), which changes nothing visible;
* anything after the committed appends is not part of the state: a partial line or an
  unfinished group (a crash or a writer in progress; trimmed by the next writer), or
  lines flagged ``"doc"`` that a write which also changes the document put there before
  replacing ``session.json`` (they count only once the document covers them);
* lines after ``log_end`` whose ``seq`` is not above the document's ``last_seq`` are
  events a pop or truncate dropped (its new document ends the log before them; they are
  cut off the file right after, or by the next writer after a crash): not part of the
  state either. An append's lines always are above it (``last_seq`` never goes down).

The log holds exactly the kept events, in ``seq`` order; their numbering may have gaps
(a pop, truncate, trim or delete), the lines after ``log_end`` never do (appends).

A session that never had events or checkpoints is *compact*: its document alone, the
file ``<id>~.json`` in its shard directory, with no session directory (so a create is one
new file: one fsync of it and one of the shard). The first write that needs the
directory (an append, a checkpoint) creates it, with its ``session.json``, as a re-create
does, and then removes the compact file. A session directory holding a ``session.json``
wins over a compact file (one its writer had not removed yet when it crashed); a session
directory without one (an unfinished create, or a conversion that never committed) is
not the session: the compact file, if any, is.

Every write (``_write``) runs under the session's lock and commits with exactly one atomic
step (a replace of ``session.json`` or of the compact document, an append of committed
lines, a checkpoint file replace, or a rename of the session directory or an unlink of the
compact document), so a crash leaves the old or the new state.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import orjson

from sessionstore import Checkpoint, IntegrityError, Session
from sessionstore.planning import fast_session
from sessionstore.validation import validate_session_id

from ._file_formats import (
    Doc,
    decode_checkpoint,
    decode_doc,
    decode_line,
)
from ._fs import (
    READ_FLAGS,
    is_temp_name,
    open_dir_or_none,
    pread_all,
    read_file,
    read_file_stat,
    symlink_error,
    unlink_quiet,
)
from ._layout import COMPACT_SUFFIX, Layout

if TYPE_CHECKING:
    from ._event_index import EventChange

__all__ = [
    "DOC",
    "END_CHUNK",
    "State",
    "advanced",
    "cp_dir_name",
    "doc_key_now",
    "log_name",
    "new_inc",
    "open_session_dir",
    "read_checkpoint",
    "read_checkpoint_file",
    "read_checkpoints",
    "read_state",
    "rmtree_quiet",
    "tidy",
    "written",
]

DOC: Final = "session.json"
#: Rewrite the document once this many lines (or bytes) follow ``log_end``. A reader
#: reads only the end of the log when its last line is committed (``_derive_from_end``),
#: so the fold bounds what a reader racing a writer (or finding a torn tail) walks, and
#: how far apart the document and the log get; each fold costs two fsyncs.
FOLD_AFTER: Final = 256
FOLD_BYTES: Final = 1 << 18
#: How much of the log's end a reader reads first to find its last line.
END_CHUNK: Final = 1 << 13


def log_name(gen: int) -> str:
    return f"events.{gen}.jsonl"


def cp_dir_name(inc: str) -> str:
    return f"checkpoints.{inc}"


def new_inc() -> str:
    return secrets.token_hex(4)


@dataclass(slots=True)
class State:
    """A session's files as found under its lock (or read without one)."""

    sid: str
    dir_fd: int = -1  # -1: no session directory
    doc: Doc | None = None  # None: absent (no directory, or an unfinished create)
    session: Session | None = None  # the current state (document + committed appends)
    valid_end: int = 0  # end of the committed part of the log
    log_size: int = -1  # -1: no log file
    tail_batches: int = 0  # committed appends (or their lines) past the document's log_end
    #: (st_ino, st_size, st_mtime_ns) of ``session.json`` as read or written (head cache)
    doc_key: tuple[int, int, int] | None = None
    #: the JSON of ``doc.session``'s data and metadata, when known (written or cached)
    doc_json: tuple[bytes, bytes] | None = None
    #: set by a write once one of its commit points is passed (visible to readers)
    committed: bool = False
    #: the log of generation ``doc.gen`` opened for appending (kept by a write), or -1
    log_fd: int = -1
    #: the inode of the directory ``dir_fd`` when known (0: not known)
    dir_ino: int = 0
    #: what a write did to the log, for the event index (set by the write's steps)
    ev: EventChange | None = None
    #: the log of generation ``doc.gen`` as opened for reading by ``read_state``, or -1
    read_fd: int = -1
    #: (offset, bytes) of the log's end as ``read_state`` read it, when it did
    end_chunk: tuple[int, bytes] | None = None
    #: the document is the compact file ``<id>~.json`` in the shard (no events, no
    #: checkpoints, ``dir_fd`` is -1); False: ``session.json`` in the session directory
    compact: bool = False
    #: the session's shard directory when known (the layout's descriptor: never closed)
    shard_fd: int = -1
    #: the name of the session's files in its shard (``Layout.name``; set with ``shard_fd``)
    name: str = ""

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1
        self.close_log()

    def close_log(self) -> None:
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1

    def forget(self) -> None:
        """The session is gone (deleted): close, and describe an absent session."""
        self.close()
        self.doc = self.session = self.doc_key = self.doc_json = None
        self.valid_end, self.log_size, self.tail_batches = 0, -1, 0


def open_session_dir(layout: Layout, sid: str) -> int:
    validate_session_id(sid)  # again: every path below is built from it
    shard = layout.shard_fd("sessions", sid, create=False)
    if shard is None:
        return -1
    fd = open_dir_or_none(layout.name(sid), shard, sid)
    return -1 if fd is None else fd


class _Moved(Exception):
    """The log named by the document we read was replaced meanwhile: read again."""


def read_state(layout: Layout, sid: str, *, kept: bool = False, locked: bool = False) -> State:
    """Read ``sid``'s document and the committed appends after it (the caller closes).

    Without the lock a concurrent trim or re-create may replace the log between our
    reading the document and opening the log: then we read again. ``kept``: the
    document may be the one decoded before from the same bytes (see :class:`_KeptDocs`);
    only for reads whose ``state.session`` never reaches a caller. ``locked``: the caller
    holds the session's lock, so no conversion of a compact session can commit between
    two looks (an absent session is absent after looking once at each of its names).
    """
    for _ in range(5):
        try:
            return _read_state(layout, sid, retry=True, kept=kept, locked=locked)
        except _Moved:
            continue
    return _read_state(layout, sid, retry=False, kept=kept, locked=locked)


#: Session documents the event reads keep decoded: one per session, at most this many,
#: each at most ``KEPT_DOC_MAX`` bytes (a few MB at most with the decoded objects).
KEPT_DOCS: Final = 256
KEPT_DOC_MAX: Final = 1 << 14


class _KeptDocs:
    """The last document decoded per session for the event reads, by its exact bytes.

    An event read checks that the session is there and live and takes its ``last_seq``:
    it reads the whole document (it must: the bytes are the only proof of what is there
    now) but checking and decoding them (SHA-256, JSON, the record's checks) is most of
    that read's CPU, and a reader polling a session's tail reads the same document again
    and again. A document's meaning depends on its bytes and the session id alone, so
    bytes equal to the ones decoded last time decode to the same :class:`Doc`: they are
    compared (``==``), not hashed or checked again. Bytes that differ in any way (a new
    version, a corrupt copy) are decoded and checked in full. Memory is bounded: documents
    over ``KEPT_DOC_MAX`` bytes are not kept, and past ``KEPT_DOCS`` sessions the entry
    kept first goes. The kept ``Doc``'s session is shared between such reads, so only
    reads that never hand it to a caller (its ``data`` is a mutable dict) may use it:
    ``read_state(kept=True)``."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[bytes, Doc]] = {}

    def decode(self, raw: bytes, sid: str) -> Doc:
        hit = self.docs.get(sid)
        if hit is not None and hit[0] == raw:
            return hit[1]
        doc = decode_doc(raw, sid)
        if len(raw) > KEPT_DOC_MAX:
            return doc
        docs = self.docs
        if len(docs) >= KEPT_DOCS and sid not in docs:
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                del docs[next(iter(docs))]  # the oldest kept (another thread may race)
        docs[sid] = (raw, doc)
        return doc


_KEPT = _KeptDocs()


class _WrittenDocs:
    """The last document this process wrote per session, by its exact bytes, for reads
    that hand the session to a caller (``get_session``, a write's own read).

    A write knows what it put on disk: the bytes, and the session they encode (a
    :class:`Doc` whose session is the one encoded, with its data and metadata as the
    JSON it wrote). A read whose bytes are equal (``==``) to those decodes to that session
    - a document's meaning is a function of its bytes and the session id alone, as for
    :class:`_KeptDocs` - so the checksum, the record's checks and the whole-document JSON
    are skipped: the session is rebuilt from the written one's fields, its data and
    metadata decoded afresh from the written JSON (a caller gets dicts of its own). Bytes
    that differ in any way (another writer, a corrupt copy, a hand edit) are decoded and
    checked in full. Only sessions whose times are in UTC (as every validated time and
    clock reading is) are kept, so the rebuilt session equals the decoded one field for
    field. Bounded as :class:`_KeptDocs`."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[bytes, Doc, bytes, bytes]] = {}

    def put(self, sid: str, raw: bytes, doc: Doc, data_json: bytes, meta_json: bytes) -> None:
        s = doc.session
        if (
            len(raw) > KEPT_DOC_MAX
            or s.created_at.tzinfo is not UTC
            or s.updated_at.tzinfo is not UTC
            or (s.expires_at is not None and s.expires_at.tzinfo is not UTC)
        ):
            self.docs.pop(sid, None)
            return
        docs = self.docs
        if len(docs) >= KEPT_DOCS and sid not in docs:
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                del docs[next(iter(docs))]  # the oldest kept (another thread may race)
        docs[sid] = (raw, doc, data_json, meta_json)

    def decode(self, raw: bytes, sid: str) -> Doc:
        hit = self.docs.get(sid)
        if hit is None or hit[0] != raw:
            return decode_doc(raw, sid)
        _, doc, data_json, meta_json = hit
        s = doc.session
        session = fast_session(
            s.id, s.processor_id, s.status, orjson.loads(data_json), orjson.loads(meta_json),
            s.tags, s.created_at, s.updated_at, s.expires_at, s.version, s.event_count,
            s.last_seq, s.group,
        )  # fmt: skip
        return Doc(session, doc.gen, doc.log_end, doc.inc)


_WRITTEN = _WrittenDocs()
#: What a write calls once its new document is in place (see :class:`_WrittenDocs`).
written = _WRITTEN.put


def _read_compact(layout: Layout, state: State, *, retry: bool, kept: bool) -> State:
    """The compact document, when the session directory has no ``session.json``."""
    sid = state.sid
    shard = state.shard_fd
    found = read_file_stat(state.name + COMPACT_SUFFIX, shard, sid)
    if found is None:
        # A conversion (the first append) may have committed its session.json and removed
        # the compact file between our two looks: look at the directory again (not under
        # the session's lock, which every conversion holds: ``retry`` is False there).
        if retry and _has_doc(shard, state.name):
            raise _Moved
        return state
    if state.dir_fd >= 0:  # a conversion that has not committed (or never will)
        os.close(state.dir_fd)
        state.dir_fd = -1
    raw, st = found
    doc = _KEPT.decode(raw, sid) if kept else _WRITTEN.decode(raw, sid)
    if doc.log_end:
        raise IntegrityError("a compact session document names events", sid)
    state.compact = True
    state.doc = doc
    state.doc_key = (st.st_ino, st.st_size, st.st_mtime_ns)
    state.session = doc.session
    return state


def _has_doc(shard: int, name: str) -> bool:
    try:
        os.stat(f"{name}/{DOC}", dir_fd=shard, follow_symlinks=False)
    except OSError:
        return False
    return True


def _read_state(layout: Layout, sid: str, *, retry: bool, kept: bool, locked: bool) -> State:
    validate_session_id(sid)  # again: every path below is built from it
    state = State(sid, name=layout.name(sid))
    shard = layout.shard_fd("sessions", sid, create=False)
    if shard is None:
        return state
    state.shard_fd = shard
    name = state.name
    fd = open_dir_or_none(name, shard, sid)
    state.dir_fd = -1 if fd is None else fd
    try:
        found = None if fd is None else read_file_stat(DOC, fd, sid)
        if found is None:
            return _read_compact(layout, state, retry=retry and not locked, kept=kept)
        raw, st = found
        doc = _KEPT.decode(raw, sid) if kept else _WRITTEN.decode(raw, sid)
        state.doc = doc
        state.doc_key = (st.st_ino, st.st_size, st.st_mtime_ns)
        state.session = doc.session
        state.valid_end = doc.log_end
        try:
            fd = os.open(log_name(doc.gen), READ_FLAGS, dir_fd=state.dir_fd)
        except FileNotFoundError:
            if doc.log_end:
                if retry and read_file(DOC, state.dir_fd, sid) != raw:
                    raise _Moved from None
                raise IntegrityError(f"event log {log_name(doc.gen)} is missing", sid) from None
            return state
        except OSError as exc:
            if (error := symlink_error(exc, sid)) is not None:
                raise error from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IntegrityError("event log is not a regular file", sid)
            state.log_size = st.st_size
            if st.st_size < doc.log_end:
                if retry and _doc_key(state.dir_fd) != state.doc_key:
                    raise _Moved  # a cut (pop, truncate) replaced the document meanwhile
                raise IntegrityError(
                    f"event log {log_name(doc.gen)} is shorter than committed (truncated)", sid
                )
            if st.st_size > doc.log_end:
                try:
                    if not _derive_from_end(state, doc, fd, st.st_size):
                        tail = pread_all(fd, doc.log_end, st.st_size, sid)
                        _derive(state, doc, tail)
                except IntegrityError:
                    # a pop or truncate since we read the document cuts the log in
                    # place and appends go where the cut lines were: read both again.
                    # A cut replaces the document first and truncates the log after it,
                    # so a reader of the new document can still find the log shrinking.
                    if retry and (
                        _doc_key(state.dir_fd) != state.doc_key or os.fstat(fd).st_size < st.st_size
                    ):
                        raise _Moved from None
                    raise
                # Lines after log_end that a write flagged as its own count once that
                # write's new document covers them; if the document was replaced
                # since we read it, an append after it can make those lines look
                # committed under our old document: read both again.
                if retry and _doc_key(state.dir_fd) != state.doc_key:
                    raise _Moved
        except BaseException:
            os.close(fd)
            raise
        state.read_fd = fd  # the log of this document, for reading its events
    except BaseException:
        state.close()
        raise
    return state


def doc_key_now(state: State) -> tuple[int, int, int] | None:
    """``(inode, size, mtime)`` of the document ``state`` was read from as it is now
    (``None``: gone), the compact one's or ``session.json``'s."""
    if state.compact:
        try:
            st = os.stat(state.name + COMPACT_SUFFIX, dir_fd=state.shard_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)
    return _doc_key(state.dir_fd)


def _doc_key(dir_fd: int) -> tuple[int, int, int] | None:
    """``(inode, size, mtime)`` of the ``session.json`` there now (``None``: none). Not the
    inode alone: a replaced document's inode is free again, and the next replacement can
    get it back while a reader is between its two looks."""
    try:
        st = os.stat(DOC, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _derive_from_end(state: State, doc: Doc, fd: int, size: int) -> bool:
    """Fold the committed appends after ``log_end`` in from the log's last line alone.

    Uncommitted bytes can only be at the very end (every writer trims them before it
    appends), so when the log ends with a complete, committed line, everything between
    ``log_end`` and it is committed too, and the line's ``seq`` says how many events
    follow the document (each line is one event, and appends are numbered without gaps;
    a last line not above the document's ``last_seq`` ends lines a cut dropped). Only the last
    ``END_CHUNK`` bytes are read: O(1) however long the tail. When that chunk holds the
    whole tail its lines are counted against ``seq`` as well (as ``_derive`` does); in a
    longer tail the other lines are checked when the events are read. Returns False
    (nothing changed) when the end is not a committed line: the caller walks the tail.
    """
    start = max(doc.log_end, size - END_CHUNK)
    chunk = pread_all(fd, start, size, state.sid)
    state.end_chunk = (start, chunk)
    if not chunk.endswith(b"\n"):
        return False
    cut = chunk.rfind(b"\n", 0, len(chunk) - 1)
    if cut < 0 and start > doc.log_end:
        return False  # a last line longer than the chunk: walk the tail
    record = f"{state.sid}/{log_name(doc.gen)}"
    try:
        event, ver, flagged = decode_line(chunk[cut + 1 : -1], record)
    except IntegrityError:
        return False
    if ver is None or flagged:
        return False
    base = doc.session
    if event.seq <= base.last_seq:
        state.valid_end = doc.log_end  # lines a cut dropped (see _stale): none committed
        return True
    count = event.seq - base.last_seq
    if count < 1 or ver <= base.version or (start == doc.log_end and chunk.count(b"\n") != count):
        raise IntegrityError(
            f"event log after byte {doc.log_end} does not continue the session "
            f"(seq {event.seq} after {base.last_seq}, version {ver} after {base.version})",
            record,
        )
    state.session = advanced(base, ver, event.at, base.event_count + count, event.seq)
    state.valid_end = size
    state.tail_batches = count  # lines; >= appends, good enough to pace folds
    return True


def _derive(state: State, doc: Doc, tail: bytes) -> None:
    """Fold the committed appends found in ``tail`` (the log after ``log_end``) in.

    Uncommitted bytes can only be at the very end (every writer trims them before it
    appends), so when the last complete line ends a committed append, everything before
    it is committed too: one line is decoded, the others only counted (they are checked
    line by line when events are read). Otherwise the tail is walked line by line.
    """
    if tail.endswith(b"\n"):
        start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
        record = f"{state.sid}/{log_name(doc.gen)}"
        try:
            event, ver, flagged = decode_line(tail[start:-1], record)
        except IntegrityError:
            ver = None
        if ver is not None and not flagged:
            base = doc.session
            if event.seq <= base.last_seq:
                state.valid_end = doc.log_end  # lines a cut dropped: none committed
                return
            count = tail.count(b"\n")
            if event.seq != base.last_seq + count or ver <= base.version:
                raise IntegrityError(
                    f"event log after byte {doc.log_end} does not continue the session "
                    f"(seq {event.seq} after {count} lines from {base.last_seq})",
                    record,
                )
            state.session = advanced(base, ver, event.at, base.event_count + count, event.seq)
            state.valid_end = doc.log_end + len(tail)
            state.tail_batches = count  # lines; >= appends, good enough to pace folds
            return
    _derive_slowly(state, doc, tail)


def _derive_slowly(state: State, doc: Doc, tail: bytes) -> None:
    base = doc.session
    record = f"{state.sid}/{log_name(doc.gen)}"
    version, updated, last_seq = base.version, base.updated_at, base.last_seq
    count = pending = batches = valid = pos = 0
    expect_seq = base.last_seq + 1
    while True:
        nl = tail.find(b"\n", pos)
        if nl < 0:
            break  # a partial last line: torn by a crash, or being written right now
        try:
            event, ver, flagged = decode_line(tail[pos:nl], record)
        except IntegrityError:
            if tail.find(b"\n", nl + 1) >= 0:
                raise  # a bad line with more lines after it: corruption, not a torn tail
            break
        if pos == 0 and event.seq <= base.last_seq:
            break  # lines a cut (pop, truncate) dropped, not yet cut off the file
        if event.seq != expect_seq:
            raise IntegrityError(
                f"event sequence breaks at byte {doc.log_end + pos}: expected "
                f"{expect_seq}, found {event.seq}",
                record,
            )
        expect_seq += 1
        pending += 1
        if ver is not None:
            if flagged:
                break  # an uncommitted write's lines: never part of the state
            if ver <= version:
                raise IntegrityError(f"version goes back at byte {doc.log_end + pos}", record)
            count += pending
            pending = 0
            version, updated, last_seq = ver, event.at, event.seq
            valid = nl + 1
            batches += 1
        pos = nl + 1
    if batches:
        state.session = advanced(base, version, updated, base.event_count + count, last_seq)
    state.valid_end = doc.log_end + valid
    state.tail_batches = batches


# advanced() names every field of Session positionally: a new field must be added there.
assert len(fields(Session)) == 13, "Session changed: update advanced()"


def advanced(s: Session, version: int, at: datetime, event_count: int, last_seq: int) -> Session:
    """``s`` after appends (``fast_session``: ``dataclasses.replace`` and the frozen
    ``__init__`` are slow)."""
    return fast_session(
        s.id, s.processor_id, s.status, s.data, s.metadata, s.tags, s.created_at, at,
        s.expires_at, version, event_count, last_seq, s.group,
    )  # fmt: skip


def rmtree_quiet(name: str, dir_fd: int) -> None:
    """Remove a directory tree; what cannot be removed is left for ``tidy()``/``doctor``."""
    with contextlib.suppress(OSError):  # out of the state already
        shutil.rmtree(name, dir_fd=dir_fd)


# --------------------------------------------------------------------------- checkpoints


def read_checkpoints(layout: Layout, sid: str) -> tuple[list[Checkpoint], list[IntegrityError]]:
    """The readable checkpoints of the session's current incarnation, oldest first, and an
    :class:`IntegrityError` per checkpoint file that cannot be read (left out: one bad
    file must not hide the others). A checkpoint directory that is not a directory (a
    symlink) is one such error, and no checkpoint is readable."""
    state = read_state(layout, sid)
    try:
        if state.doc is None or state.compact:
            return [], []
        dir_record = f"{sid}/{cp_dir_name(state.doc.inc)}"
        try:
            cp_fd = open_dir_or_none(cp_dir_name(state.doc.inc), state.dir_fd, dir_record)
        except IntegrityError as exc:
            return [], [exc]
        if cp_fd is None:
            return [], []
        out: list[Checkpoint] = []
        bad: list[IntegrityError] = []
        try:
            for name in os.listdir(cp_fd):
                if is_temp_name(name) or not name.endswith(".json"):
                    continue
                try:
                    cp = read_checkpoint_file(cp_fd, sid, name)
                except IntegrityError as exc:
                    bad.append(exc)
                    continue
                if cp is not None:  # None: deleted while we listed
                    out.append(cp)
        finally:
            os.close(cp_fd)
        out.sort(key=lambda cp: (cp.created_at, cp.id))
        return out, bad
    finally:
        state.close()


def read_checkpoint(layout: Layout, sid: str, cp_id: str) -> Checkpoint | None:
    """One checkpoint of the current incarnation (``None``: none by that id); a corrupt
    file raises :class:`IntegrityError`."""
    state = read_state(layout, sid)
    try:
        if state.doc is None or state.compact:
            return None
        dir_record = f"{sid}/{cp_dir_name(state.doc.inc)}"
        cp_fd = open_dir_or_none(cp_dir_name(state.doc.inc), state.dir_fd, dir_record)
        if cp_fd is None:
            return None
        try:
            return read_checkpoint_file(cp_fd, sid, f"{cp_id}.json")
        finally:
            os.close(cp_fd)
    finally:
        state.close()


def read_checkpoint_file(cp_fd: int, sid: str, name: str) -> Checkpoint | None:
    """Checkpoint file ``name`` of directory ``cp_fd`` (``None``: absent); a corrupt file
    raises :class:`IntegrityError`."""
    record = f"{sid}/checkpoints/{name.removesuffix('.json')}"
    raw = read_file(name, cp_fd, record)
    if raw is None:
        return None
    cp = decode_checkpoint(raw, record)
    if cp.session_id != sid or f"{cp.id}.json" != name:
        raise IntegrityError("checkpoint file names another checkpoint", record)
    return cp


# --------------------------------------------------------------------------- tidy


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def tidy(layout: Layout, state: State, *, dry_run: bool = False) -> list[str]:
    """Remove leftovers of interrupted writes (the caller holds the lock).

    Temp files, old log generations, other incarnations' checkpoint directories, the
    uncommitted tail of the log, renamed-aside directories of a delete. Returns what was
    (or, with ``dry_run``, would be) removed, as paths relative to the namespace.
    """
    sid = state.sid
    own = layout.name(sid)  # the session's name in its shard
    compact = own + COMPACT_SUFFIX
    removed: list[str] = []
    shard = layout.shard_fd("sessions", sid, create=False)
    if shard is not None:
        for name in os.listdir(shard):
            if name.startswith(f".trash.{own}.") or (
                is_temp_name(name) and name.startswith((f".tmp.{own}.", f".tmp.{compact}."))
            ):
                removed.append(f"sessions/{name}")
                if not dry_run and not unlink_quiet(name, shard):
                    rmtree_quiet(name, shard)
        if state.compact:
            if _exists(own, shard):  # a conversion that never committed
                removed.append(f"{sid}/ (no session.json)")
                if not dry_run:
                    rmtree_quiet(own, shard)
        elif state.doc is not None and _exists(compact, shard):
            # the compact document of a session converted to a directory (its writer
            # died before removing it): the directory's session.json is the session
            removed.append(f"sessions/{compact} (converted)")
            if not dry_run:
                unlink_quiet(compact, shard)
    if state.dir_fd < 0:
        return removed
    if state.doc is None:  # a create that never committed its document
        removed.append(f"{sid}/ (no session.json)")
        if not dry_run and shard is not None:
            state.close()
            rmtree_quiet(own, shard)
        return removed
    keep = {DOC}
    if state.doc is not None:
        keep |= {log_name(state.doc.gen), cp_dir_name(state.doc.inc)}
    for name in os.listdir(state.dir_fd):
        if name in keep:
            continue
        if is_temp_name(name) or name.startswith(("events.", "checkpoints.")):
            if _is_symlink(name, state.dir_fd):
                continue  # planted, not a leftover: `doctor` reports and quarantines it
            removed.append(f"{sid}/{name}")
            if not dry_run and not unlink_quiet(name, state.dir_fd):
                rmtree_quiet(name, state.dir_fd)
    if state.doc is not None:
        try:
            cp_fd = open_dir_or_none(cp_dir_name(state.doc.inc), state.dir_fd, sid)
        except IntegrityError:  # a symlink: `doctor` reports and quarantines it
            cp_fd = None
        if cp_fd is not None:
            try:
                for name in os.listdir(cp_fd):
                    if is_temp_name(name):
                        removed.append(f"{sid}/{cp_dir_name(state.doc.inc)}/{name}")
                        if not dry_run:
                            unlink_quiet(name, cp_fd)
            finally:
                os.close(cp_fd)
        if state.log_size > state.valid_end:
            removed.append(f"{sid}/{log_name(state.doc.gen)} (uncommitted tail)")
            if not dry_run:
                fd = os.open(
                    log_name(state.doc.gen), os.O_WRONLY | os.O_NOFOLLOW, dir_fd=state.dir_fd
                )
                try:
                    os.ftruncate(fd, state.valid_end)
                    if layout.durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                state.log_size = state.valid_end
    return removed
