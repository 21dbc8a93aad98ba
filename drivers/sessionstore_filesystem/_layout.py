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

__all__ = ["COMPACT_SUFFIX", "Layout", "compact_name", "session_ids", "shard_of"]

DEFAULT_NAMESPACE_DIR: Final = "_default"
MARKER: Final = "_sessionstore.json"
SUBDIRS: Final = ("sessions", "locks", "journal", "writers")
#: A session that has never had events or checkpoints is one file in its shard,
#: ``<id>~.json`` (``~`` is not allowed in an id, so it never names a session directory).
COMPACT_SUFFIX: Final = "~.json"


def compact_name(session_id: str) -> str:
    """The name of a compact session's document in its shard directory."""
    return session_id + COMPACT_SUFFIX


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


def namespace_dir(namespace: str) -> str:
    """The directory name of a namespace (validated names cannot start with ``_``)."""
    return namespace or DEFAULT_NAMESPACE_DIR


class Layout:
    """Open directory handles of one namespace; shard handles are opened on demand."""

    def __init__(self, ns_fd: int, *, durable: bool) -> None:
        self.ns_fd = ns_fd
        self.durable = durable
        self.fds: dict[str, int] = {}
        for name in SUBDIRS:
            self.fds[name] = ensure_dir(name, ns_fd, durable=durable)
        self._shards: dict[tuple[str, str], int] = {}
        self._mutex = threading.Lock()

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
