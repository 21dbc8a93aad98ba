"""SqliteStore: the ``sqlite://`` driver. One database file, durable, multi-process, indexed.

Each call makes one worker-thread hop (the store's own :class:`HotThreads`) into the
synchronous :class:`~sessionstore_sqlite._engine.Engine`: a write reads, plans and
writes inside one ``BEGIN IMMEDIATE`` transaction; a query is one SQL statement. No
SQLite call and no lock wait ever runs on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar
from urllib.parse import SplitResult, unquote

from sessionstore import (
    BaseSessionStore,
    Capabilities,
    Checkpoint,
    ConfigurationError,
    Event,
    IntegrityError,
    Mutation,
    Page,
    QueryOptions,
    Session,
    SessionFilter,
    SessionNotFoundError,
    StoreOptions,
    StoreUnavailableError,
)
from sessionstore.driver import HotThreads
from sessionstore.options import redact_url
from sessionstore.query import decode_cursor, normalize_search_text, query_fingerprint
from sessionstore.validation import validate_session_id

from ._engine import Engine

__all__ = ["SqliteOptions", "SqliteStore"]

T = TypeVar("T")
_SCAN_PAGE = 256


@dataclass(frozen=True)
class SqliteOptions(StoreOptions):
    """Options of ``sqlite://`` (besides the common ones).

    * ``path`` - the database file (from the URL: ``sqlite:///abs/path.db`` or
      ``sqlite://./relative.db``); created (0600) if missing unless ``create=False``.
      Its directory must exist. ``:memory:`` is refused: use ``memory://``.
    * ``durability`` - ``"fsync"`` (default, ``PRAGMA synchronous=FULL``): every
      acknowledged write was fsynced and survives a power loss. ``"none"``
      (``synchronous=NORMAL``): writes stay atomic and survive a crash of the process,
      but a power loss may lose the last transactions (never corrupts the database).
    * ``lock_timeout`` - seconds to wait for the database's write lock (held by another
      connection or process) before :class:`StoreUnavailableError`.
    """

    path: str = ""
    durability: Literal["fsync", "none"] = "fsync"
    lock_timeout: float = 30.0
    create: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ConfigurationError(
                "the sqlite store needs a database file: sqlite:///abs/path.db, "
                "sqlite://./relative.db or path=..."
            )
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ConfigurationError(
                f"sqlite store path {self.path!r} is not supported: give a file path "
                "(for a private in-memory store use memory://)"
            )
        if not self.lock_timeout > 0:
            raise ConfigurationError("option 'lock_timeout' must be positive")


class SqliteStore(BaseSessionStore):
    """Sessions in one SQLite database file: durable, safe across processes, indexed."""

    Options = SqliteOptions
    CAPABILITIES = Capabilities(
        atomic_multi_session=True,
        shared_namespace=True,
        cross_process=True,
        durable=True,
        native_ttl=False,
        indexed_query=True,
        any_event_loop=True,
    )
    options: SqliteOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.path = os.path.abspath(os.path.expanduser(self.options.path))
        self._engine = Engine(
            self.path,
            self.namespace,
            durable=self.options.durability == "fsync",
            lock_timeout=self.options.lock_timeout,
            create=self.options.create,
        )
        self._threads: HotThreads | None = None
        self._capabilities = (
            self.CAPABILITIES
            if self.options.durability == "fsync"
            else replace(self.CAPABILITIES, durable=False)
        )

    @classmethod
    def _options_from_url(cls, parts: SplitResult) -> dict[str, Any]:
        """``sqlite:///abs/path.db``, ``sqlite://localhost/abs/path.db``,
        ``sqlite://./relative.db``."""
        host, path = parts.netloc, unquote(parts.path)
        if host in ("", "localhost"):
            target = path
        elif host in (".", ".."):
            target = host + path
        else:
            raise ConfigurationError(
                f"sqlite:// URLs take a file path, not a host: {redact_url(parts.geturl())!r} "
                "(use sqlite:///abs/path.db or sqlite://./relative.db)"
            )
        if target in ("", "/") or target.endswith("/"):
            raise ConfigurationError(f"sqlite:// URL has no database file: {parts.geturl()!r}")
        if target == "/:memory:":
            target = ":memory:"
        return {"path": target}

    @property
    def capabilities(self) -> Capabilities:
        """``durable`` only with ``durability="fsync"``."""
        return self._capabilities

    def __repr__(self) -> str:
        return f"SqliteStore(path={self.path!r}, namespace={self.namespace!r})"

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        threads = self._threads
        if threads is None:
            threads = self._threads = HotThreads("sessionstore-sqlite")
        try:
            return await threads.run(fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"sqlite store {self.path!r}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailableError(
                f"I/O error in sqlite store {self.path!r}: {exc.strerror or exc}"
            ) from exc

    def _report(self, bad: Sequence[IntegrityError]) -> None:
        for error in bad:
            self._report_corrupt(error)

    async def _initialize(self) -> None:
        try:
            await self._run(self._engine.open)
        except BaseException:
            await self._shutdown()
            raise

    async def _shutdown(self) -> None:
        threads, self._threads = self._threads, None
        try:
            await asyncio.to_thread(self._engine.close)
        finally:
            if threads is not None:
                threads.shutdown(wait=False)  # idle workers exit at once

    # ------------------------------------------------------------------ primitives

    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        return await self._run(self._engine.load, list(session_ids))

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        """Write ``mutations`` in one transaction (also with ``atomic=False``)."""
        await self._run(self._engine.apply, list(mutations))

    async def _load_and_apply(
        self,
        load_ids: Sequence[str],
        build: Callable[[Mapping[str, Session]], list[Mutation]],
        *,
        atomic: bool = True,
    ) -> list[Mutation]:
        """Lock, read, plan and write in one worker-thread hop and one transaction."""
        return await self._run(partial(self._engine.transact, list(load_ids), build, atomic=atomic))

    async def _create_new(self, session: Session, data_json: bytes, metadata_json: bytes) -> bool:
        """One ``INSERT ... ON CONFLICT DO NOTHING`` (a fresh id needs no read)."""
        return await self._run(self._engine.create_new, session, data_json, metadata_json)

    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        return await self._run(self._engine.events, session_id, after_seq, limit, last)

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        found = await self._run(self._engine.checkpoints_many, [session_id])
        return found[session_id]

    async def _load_checkpoints_many(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[Checkpoint]]:
        """One ``SELECT`` (one hop) for all of them."""
        return await self._run(self._engine.checkpoints_many, list(session_ids))

    async def _iter_sessions(self) -> AsyncIterator[Session]:
        self._check_open()
        after: str | None = ""
        while after is not None:
            found, bad, after = await self._run(self._engine.scan_page, after, _SCAN_PAGE)
            self._report(bad)
            for session in found:
                yield session

    # ------------------------------------------------------------------ fast paths

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
        """Events in seq order (one hop: the session check and the indexed ``SELECT``)."""
        if not self._plain_events_read(before_seq, limit, last, types, at_after, at_before):
            return await super().get_events(
                session_id,
                after_seq=after_seq,
                before_seq=before_seq,
                limit=limit,
                last=last,
                types=types,
                at_after=at_after,
                at_before=at_before,
            )
        validate_session_id(session_id)
        self._check_event_window(after_seq, limit, last)
        self._check_open()
        found = await self._run(
            self._engine.live_events, session_id, self.clock.now(), after_seq, limit, last
        )
        if found is None:
            raise SessionNotFoundError(session_id)
        return found

    async def _expired_sessions(self, now: datetime) -> list[Session]:
        expired, bad = await self._run(self._engine.expired, now)
        self._report(bad)
        return expired

    async def list_sessions(
        self, filter: SessionFilter | None = None, options: QueryOptions | None = None
    ) -> Page:
        """One indexed ``SELECT`` in keyset order; only the page's rows are decoded."""
        return await self._page(filter, options, None)

    async def count_sessions(self, filter: SessionFilter | None = None) -> int:
        """``SELECT COUNT(*)`` with the filter in SQL."""
        self._check_open()
        return await self._run(self._engine.count, filter or SessionFilter(), self.clock.now())

    async def search_sessions(
        self,
        text: str,
        options: QueryOptions | None = None,
        filter: SessionFilter | None = None,
    ) -> Page:
        """SQL narrows by ``filter`` and gives the order; the text is matched row by row
        until the page is full."""
        normalize_search_text(text)
        return await self._page(filter, options, text)

    async def _page(
        self, flt: SessionFilter | None, options: QueryOptions | None, text: str | None
    ) -> Page:
        self._check_open()
        flt = flt or SessionFilter()
        opts = options or QueryOptions()
        fingerprint = query_fingerprint(flt, opts, text)
        after = decode_cursor(opts.cursor, fingerprint) if opts.cursor is not None else None
        needle = None if text is None else normalize_search_text(text)
        page, bad = await self._run(
            self._engine.page, flt, opts, self.clock.now(), after, fingerprint, needle
        )
        self._report(bad)
        return page
