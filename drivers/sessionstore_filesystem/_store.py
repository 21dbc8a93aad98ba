"""FileStore: the ``file://`` driver. Durable, crash-safe, multi-process, indexed.

Each call makes one worker-thread hop (the store's own :class:`EngineThreads`, a
:class:`HotThreads` pool that reuses the most recently idle thread) into the synchronous
:class:`~sessionstore_filesystem._engine.Engine`, which does the locking, the file I/O
and the index update; no lock is ever waited for on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, Final, Literal
from urllib.parse import SplitResult, unquote

from sessionstore import (
    BaseSessionStore,
    Capabilities,
    Checkpoint,
    ConfigurationError,
    Event,
    IntegrityError,
    InvalidArgumentError,
    Mutation,
    Page,
    QueryOptions,
    Session,
    SessionFilter,
    StoreOptions,
    StoreUnavailableError,
)
from sessionstore.driver import EngineThreads, EventFacts, EventRequest
from sessionstore.options import redact_url
from sessionstore.query import normalize_search_text
from sessionstore.validation import (
    validate_event_key,
    validate_session_id,
)

from ._doctor import DoctorReport, run_doctor
from ._engine import Engine
from ._layout import namespace_dir
from ._names import marker_cased

__all__ = ["FileOptions", "FileStore"]

#: What a query without a filter or options means (both immutable, so built once: ~2 us
#: a call otherwise).
_EVERY: Final = SessionFilter()
_FIRST_PAGE: Final = QueryOptions()


@dataclass(frozen=True)
class FileOptions(StoreOptions):
    """Options of ``file://`` (besides the common ones).

    * ``root`` - the store directory (from the URL: ``file:///abs/path`` or
      ``file://./relative``); created (0700) if missing.
    * ``create`` - ``False``: open an existing store only, creating nothing; a missing root,
      a directory that is not a store (no ``_sessionstore.json``) or a namespace never
      written to is a :class:`~sessionstore.StoreNotFoundError`.
    * ``durability`` - ``"fsync"`` (default): every acknowledged write has been fsynced
      (file and directory), so it survives a power loss. ``"none"``: no fsync; writes are
      still atomic and survive a crash of the *process*, but a power loss or kernel crash
      may lose the last seconds of writes (for caches and tests).
    * ``lock_timeout`` - seconds to wait for a session's lock before
      :class:`StoreUnavailableError`.
    * ``names`` - how files are named after session ids. ``"auto"`` (default): a new
      store probes its volume and takes ``"cased"`` names where it ignores case (macOS's
      default APFS, exFAT, SMB), ``"plain"`` ones elsewhere; an existing store keeps what
      its marker says. ``"cased"``: a new store uses cased names, and an existing plain
      store is upgraded to them at open (no other process may use it meanwhile).
      ``"plain"``: a new store uses plain names (an existing cased store refuses it).
    """

    root: str = ""
    durability: Literal["fsync", "none"] = "fsync"
    lock_timeout: float = 30.0
    create: bool = True
    names: Literal["auto", "plain", "cased"] = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.root:
            raise ConfigurationError(
                "the file store needs a root directory: file:///abs/path, file://./relative "
                "or root=..."
            )
        if not self.lock_timeout > 0:
            raise ConfigurationError("option 'lock_timeout' must be positive")
        if self.names not in ("auto", "plain", "cased"):
            raise ConfigurationError("option 'names' must be 'auto', 'plain' or 'cased'")


class FileStore(BaseSessionStore):
    """Sessions as files in a directory: human-inspectable, durable, safe across processes."""

    Options = FileOptions
    CAPABILITIES = Capabilities(
        atomic_multi_session=True,
        shared_namespace=True,
        cross_process=True,
        durable=True,
        native_ttl=False,
        indexed_query=True,
        any_event_loop=True,
        event_log=True,
    )
    options: FileOptions

    def __init__(self, **options: Any) -> None:
        if sys.platform == "win32" or not hasattr(os, "O_NOFOLLOW"):
            raise ConfigurationError(
                "the file:// driver needs a POSIX system (flock, O_NOFOLLOW, directory "
                "fsync); Windows is not supported: use memory:// or redis:// there"
            )
        super().__init__(**options)
        self.root = os.path.abspath(os.path.expanduser(self.options.root))
        self._engine = Engine(
            self.root,
            self.namespace,
            durable=self.options.durability == "fsync",
            lock_timeout=self.options.lock_timeout,
            create=self.options.create,
            names=self.options.names,
        )
        self._threads = EngineThreads(
            "sessionstore-file", (OSError, sqlite3.Error), partial(_unavailable, self.root)
        )
        self._capabilities = (
            self.CAPABILITIES
            if self.options.durability == "fsync"
            else replace(self.CAPABILITIES, durable=False)
        )

    @classmethod
    def _options_from_url(cls, parts: SplitResult) -> dict[str, Any]:
        """``file:///abs/path``, ``file://localhost/abs/path``, ``file://./relative``."""
        host, path = parts.netloc, unquote(parts.path)
        if host in ("", "localhost"):
            root = path
        elif host in (".", ".."):
            root = host + path
        else:
            raise ConfigurationError(
                f"file:// URLs take a path, not a host: {redact_url(parts.geturl())!r} "
                "(use file:///abs/path or file://./relative)"
            )
        if root in ("", "/") and host in ("", "localhost"):
            raise ConfigurationError(f"file:// URL has no directory: {parts.geturl()!r}")
        return {"root": root}

    @property
    def capabilities(self) -> Capabilities:
        """``durable`` only with ``durability="fsync"``."""
        return self._capabilities

    def __repr__(self) -> str:
        return f"FileStore(root={self.root!r}, namespace={self.namespace!r})"

    # ------------------------------------------------------------------ plumbing

    def _report(self) -> None:
        while self._engine.corrupt:
            self._report_corrupt(self._engine.corrupt.pop(0))

    async def _initialize(self) -> None:
        await self._threads.run(self._engine.open)
        self._report()

    async def _shutdown(self) -> None:
        await self._threads.close(self._engine.close)

    # ------------------------------------------------------------------ primitives

    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        return await self._threads.run(self._engine.load, list(session_ids))

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        """Write ``mutations``; several share their fsyncs (``atomic=False``: no journal,
        each session's write atomic on its own)."""
        await self._threads.run(partial(self._engine.apply, list(mutations), atomic=atomic))

    async def _load_and_apply(
        self,
        load_ids: Sequence[str],
        build: Callable[[Mapping[str, Session]], list[Mutation]],
        *,
        atomic: bool = True,
    ) -> list[Mutation]:
        """Lock, read, plan and write in one worker-thread hop."""
        return await self._threads.run(
            partial(self._engine.transact, list(load_ids), build, atomic=atomic)
        )

    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        return await self._threads.run(self._engine.events, session_id, after_seq, limit, last)

    # ------------------------------------------------------------------ the event log

    async def get_events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: Iterable[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> list[Event]:
        """Events in ascending seq order (see the protocol), read in one worker-thread
        hop that also checks the session is there and live: a window of the log by
        binary search, types and time bounds through the event index (O(page))."""
        kinds, low, high = self._check_event_read(
            session_id, after_seq, before_seq, limit, last, types, at_after, at_before
        )
        self._check_open()
        return await self._threads.run(
            self._engine.read_events, session_id, self.clock.now(),
            after_seq, before_seq, limit, last, kinds, low, high,
        )  # fmt: skip

    async def get_event(self, session_id: str, *, key: str) -> Event | None:
        """The kept event with ``key`` (``None``: none), looked up in the event index
        in the hop that checks the session is there and live."""
        validate_session_id(session_id)
        validate_event_key(key, "key")
        self._check_open()
        found = await self._threads.run(
            self._engine.reads.find, session_id, self.clock.now(), (), (key,)
        )
        return found[0] if found else None

    async def _query_events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        last: int | None = None,
        types: frozenset[str] | None = None,
        at_after: datetime | None = None,
        at_before: datetime | None = None,
    ) -> list[Event]:
        return await self._threads.run(
            self._engine.read_events, session_id, None,
            after_seq, before_seq, limit, last, types, at_after, at_before,
        )  # fmt: skip

    async def _find_events(
        self, session_id: str, *, seqs: Sequence[int] = (), keys: Sequence[str] = ()
    ) -> list[Event]:
        if not seqs and not keys:
            return []
        return await self._threads.run(self._engine.reads.find, session_id, None, seqs, keys)

    async def _load_event_seqs(
        self, session_id: str, *, after_seq: int = 0, last: int | None = None
    ) -> list[int]:
        return await self._threads.run(self._engine.reads.seqs, session_id, after_seq, last)

    async def _read_event_facts(
        self, requests: Mapping[str, EventRequest], facts: dict[str, EventFacts]
    ) -> None:
        """What the planner asks of the sessions' stored events, in one hop."""
        await self._threads.run(self._engine.reads.facts, dict(requests), facts)

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        found = await self._threads.run(self._engine.checkpoints, session_id)
        self._report()  # the unreadable ones, left out
        return found

    async def _load_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        """One checkpoint file, read strictly."""
        return await self._threads.run(self._engine.checkpoint, session_id, checkpoint_id)

    async def _iter_sessions(self) -> AsyncIterator[Session]:
        self._check_open()
        shards = await self._threads.run(self._engine.layout.shard_names)
        for shard in shards:
            try:
                found, bad = await self._threads.run(self._engine.shard_sessions, shard)
            except IntegrityError as exc:
                self._report_corrupt(exc)
                continue
            for error in bad:
                self._report_corrupt(error)
            for session in found:
                yield session

    # ------------------------------------------------------------------ indexed queries

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """Ordered and filtered by the index; only the page's files are read."""
        self._check_open()
        page = await self._threads.run(
            self._engine.list_page, filter or _EVERY, options or _FIRST_PAGE,
            self.clock.now(),
        )  # fmt: skip
        self._report()
        return page

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """Counted by the index (no file is read)."""
        self._check_open()
        return await self._threads.run(self._engine.count, filter or _EVERY, self.clock.now())

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """The index narrows by ``filter``; the candidates' files are searched."""
        normalize_search_text(text)
        self._check_open()
        page = await self._threads.run(
            self._engine.search, text, filter or _EVERY, options, self.clock.now()
        )
        self._report()
        return page

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        expired = await self._threads.run(self._engine.expired, now)
        self._report()
        return expired

    # ------------------------------------------------------------------ maintenance

    async def reindex(self) -> int:
        """Rebuild the query index from the files; returns the number of sessions."""
        self._check_open()
        count = await self._threads.run(self._engine.recovery.reindex)
        self._report()
        return count

    async def optimize(self) -> dict[str, int]:
        """Rebuild the index from the files and compact it (for the manager's ``optimize``)."""
        count = await self.reindex()
        await self._threads.run(self._engine.index.optimize)
        return {"indexed_sessions": count}

    async def doctor(self, *, dry_run: bool = False) -> DoctorReport:
        """Check every record, quarantine corrupt sessions, remove leftovers, reindex.

        With ``dry_run`` nothing is changed; the report says what would be done.
        """
        self._check_open()
        return await self._threads.run(run_doctor, self._engine, dry_run)

    async def drop_namespace(self) -> None:
        """Shut the store down and remove its namespace directory, which must be empty.

        For tools and test suites that made a namespace of their own (the conformance
        suite drops each test's namespace, so a run leaves nothing behind). Only a
        namespace without sessions is removed; one that still holds a session (expired
        included) or an unfinished transaction raises :class:`InvalidArgumentError` and
        nothing is removed. No other store object or process may use the namespace
        meanwhile. Works on a store that was already shut down.
        """
        await self.shutdown()
        await asyncio.to_thread(_remove_empty_namespace, self.root, self.namespace)


def _unavailable(root: str, exc: OSError | sqlite3.Error) -> StoreUnavailableError:
    """The store's error for an I/O error in its engine (a file, or the SQLite index)."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return StoreUnavailableError(
            f"I/O error in file store {root!r}: {exc.strerror or exc}{where}"
        )
    return StoreUnavailableError(f"index error in file store {root!r}: {exc}")


def _remove_empty_namespace(root: str, namespace: str) -> None:
    path = os.path.join(root, namespace_dir(namespace, cased=marker_cased(root)))
    if not os.path.isdir(path):
        return
    leftovers: list[str] = []
    sessions = os.path.join(path, "sessions")
    if os.path.isdir(sessions):
        for shard in os.scandir(sessions):
            if shard.is_dir(follow_symlinks=False):
                leftovers += (entry.name for entry in os.scandir(shard.path))
    journal = os.path.join(path, "journal")
    if leftovers or (os.path.isdir(journal) and os.listdir(journal)):
        shown = ", ".join(sorted(leftovers)[:5]) or "an unfinished transaction"
        raise InvalidArgumentError(
            f"namespace {namespace!r} of {root!r} is not empty ({shown}); nothing was removed"
        )
    shutil.rmtree(path)
