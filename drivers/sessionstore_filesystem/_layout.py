"""Where things live inside one namespace directory, and the directory handles.

::

    <root>/_sessionstore.json               store marker (format version)
    <root>/_default/ | <root>/<namespace>/  one directory per namespace
        sessions/<xx>/<id>~.json            a compact session: its document alone
        sessions/<xx>/<id>/                 a session with events or checkpoints (<xx>: shard)
            session.json                    the session document
            events.<gen>.jsonl              the event log
            checkpoints.<inc>/<cp-id>.json  checkpoints
        locks/<xx>/<id>.lock                per-session flock files
        journal/<tx>.json                   intent journal of multi-session writes
        writers/<store>.<n>.writer          in-flight markers of live writers
        index.sqlite3                       the query index (rebuildable)
        quarantine/                         what doctor moved aside

Names on a case-insensitive volume: a store whose marker says ``"names": "cased"`` names
a session's files, and a namespace's directory, after :func:`cased_name` of its id (the
id, then ``+`` and where its capital letters are, when it has any), so two ids that differ
only in case never share a name; a ``"plain"`` store uses the id as it is.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from typing import TYPE_CHECKING, Final

from ._fs import DIR_MODE, ensure_dir, open_dir, open_dir_or_none

if TYPE_CHECKING:
    from ._durable import Sync

__all__ = [
    "CASE_MARK",
    "COMPACT_SUFFIX",
    "Layout",
    "cased_id",
    "cased_name",
    "session_ids",
    "shard_of",
]

DEFAULT_NAMESPACE_DIR: Final = "_default"
MARKER: Final = "_sessionstore.json"
SUBDIRS: Final = ("sessions", "locks", "journal", "writers")
#: A session that has never had events or checkpoints is one file in its shard,
#: ``<id>~.json`` (``~`` is not allowed in an id, so it never names a session directory).
COMPACT_SUFFIX: Final = "~.json"


#: Starts the case suffix of a cased name; not in the id alphabet (nor ``~``, ``.``).
CASE_MARK: Final = "+"


#: ``bytes.translate`` table: ``A``-``Z`` to ``1``, every other byte to ``0``.
_CAPITAL_BITS: Final = bytes(49 if 65 <= c <= 90 else 48 for c in range(256))


def cased_name(name: str) -> str:
    """The file name of an id (or namespace) on a ``"cased"`` store: unchanged without
    capitals; ``<id>+`` when every letter is a capital (a generated ULID); else
    ``<id>+<hex>``, bit *i* of the lower-case hex number set when character *i* is a
    capital. Two ids equal but for case never get names equal but for case."""
    if name.isupper():  # every cased character upper, and at least one
        return name + CASE_MARK
    if name.lower() == name:
        return name
    mask = int(name.encode().translate(_CAPITAL_BITS)[::-1], 2)  # bit i: character i
    return f"{name}{CASE_MARK}{mask:x}"


def cased_id(name: str) -> str | None:
    """The id whose :func:`cased_name` is ``name``, or ``None`` (not such a name)."""
    base = name.partition(CASE_MARK)[0]
    return base if cased_name(base) == name else None


def session_ids(names: list[str]) -> list[str]:
    """The session ids named by the entries of a shard directory (sorted, each once):
    ``<id>/`` and ``<id>~.json``; names starting with ``.`` (temp files, renamed-aside
    directories) are left out. Other names are returned as they are (the caller validates
    them: a stray entry is reported, not read)."""
    cut = len(COMPACT_SUFFIX)
    return sorted({n[:-cut] if n.endswith(COMPACT_SUFFIX) else n for n in names if n[:1] != "."})


@functools.lru_cache(maxsize=256)
def shard_of(session_id: str) -> str:
    """The shard directory of a session: two hex digits of a hash of its id."""
    return hashlib.blake2b(session_id.encode(), digest_size=1).hexdigest()


def namespace_dir(namespace: str, *, cased: bool = False) -> str:
    """The directory name of a namespace (validated names cannot start with ``_``)."""
    if not namespace:
        return DEFAULT_NAMESPACE_DIR
    return cased_name(namespace) if cased else namespace


def _same(name: str) -> str:
    return name


class Layout:
    """Open directory handles of one namespace; shard handles are opened on demand.

    ``name(sid)`` is the name of a session's files in its shard (the id itself, or on a
    ``cased`` store its :func:`cased_name`), ``compact(sid)`` its compact document's.
    """

    def __init__(self, ns_fd: int, *, durable: bool, cased: bool = False) -> None:
        self.ns_fd = ns_fd
        self.durable = durable
        self.cased = cased
        self.name = cased_name if cased else _same
        self.fds: dict[str, int] = {}
        for name in SUBDIRS:
            self.fds[name] = ensure_dir(name, ns_fd, durable=durable)
        self._shards: dict[tuple[str, str], int] = {}
        self._mutex = threading.Lock()

    def compact(self, session_id: str) -> str:
        """The name of a compact session's document in its shard directory."""
        return self.name(session_id) + COMPACT_SUFFIX

    def id_of(self, name: str) -> str:
        """The id a shard entry's name (without suffix) stands for; a name that is not one
        the store makes is returned as it is (the caller validates it)."""
        if not self.cased:
            return name
        found = cased_id(name)
        return name if found is None else found

    def session_ids(self, names: list[str]) -> list[str]:
        """:func:`session_ids` of a shard's entries, names turned into ids (sorted)."""
        found = session_ids(names)
        if not self.cased:
            return found
        return sorted({self.id_of(n) for n in found})

    @property
    def sessions_fd(self) -> int:
        return self.fds["sessions"]

    @property
    def journal_fd(self) -> int:
        return self.fds["journal"]

    @property
    def writers_fd(self) -> int:
        return self.fds["writers"]

    def shard_fd(
        self, area: str, session_id: str, *, create: bool, sync: Sync | None = None
    ) -> int | None:
        """The open shard directory of ``session_id`` under ``area`` (sessions / locks).

        A new session shard is made durable in ``sessions/`` at once, or, with ``sync``
        (a write of several sessions), by that write's next barrier.
        """
        key = (area, shard_of(session_id))
        fd = self._shards.get(key)
        if fd is not None:
            return fd
        with self._mutex:
            fd = self._shards.get(key)
            if fd is not None:
                return fd
            parent = self.fds[area]
            if create and sync is not None and area == "sessions":
                try:
                    os.mkdir(key[1], DIR_MODE, dir_fd=parent)
                except FileExistsError:
                    pass
                else:
                    sync.dir(parent, f"{area}/{key[1]}")
                fd = open_dir(key[1], parent, f"{area}/{key[1]}")
            elif create:
                fd = ensure_dir(key[1], parent, durable=self.durable and area == "sessions")
            else:
                fd = open_dir_or_none(key[1], parent, f"{area}/{key[1]}")
                if fd is None:
                    return None
            self._shards[key] = fd
            return fd

    def shard_names(self) -> list[str]:
        """Existing session shard directories (sorted)."""
        return sorted(n for n in os.listdir(self.sessions_fd) if len(n) == 2 and n[0] != ".")

    def open_shard(self, name: str) -> int:
        """Open a session shard directory by name (for scans)."""
        return open_dir(name, self.sessions_fd, f"sessions/{name}")

    def close(self) -> None:
        """Close every handle, the namespace directory's included (the layout owns it)."""
        with self._mutex:
            for fd in [*self._shards.values(), *self.fds.values()]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._shards.clear()
            self.fds.clear()
            if self.ns_fd >= 0:  # the namespace directory is ours too
                with contextlib.suppress(OSError):
                    os.close(self.ns_fd)
                self.ns_fd = -1
