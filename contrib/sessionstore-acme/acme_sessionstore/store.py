"""AcmeStore: the whole sessionstore contract on a key-value service, from five primitives.

Written against the public driver interface only (:mod:`sessionstore.driver`, plus the
public API and :mod:`sessionstore.codec`): being a ``BaseSessionStore``, it offers
``store.primitives``, so backup, restore, migrate and transactions work on it unchanged.

Keys, all under the namespace prefix ``<ns>/`` (ids never contain ``:`` or ``/``)::

    <ns>/doc:<id>            the session document
    <ns>/ev:<id>:<seq>       one event
    <ns>/cp:<id>:<cpid>      one checkpoint

Values are JSON bytes made by :mod:`sessionstore.codec` (format-versioned records).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sessionstore import Checkpoint, Event, Session, SessionConflictError
from sessionstore.codec import (
    checkpoint_from_record,
    checkpoint_to_record,
    decode_json,
    dumps_record,
    event_from_record,
    event_to_record,
    session_from_record,
    session_to_record,
)
from sessionstore.driver import BaseSessionStore, Capabilities, Mutation, StoreOptions

from .kv import AcmeKV, ConditionFailed

__all__ = ["AcmeOptions", "AcmeStore"]


@dataclass(frozen=True)
class AcmeOptions(StoreOptions):
    """Options of ``acme://`` (the common ones: ``namespace``, size limits, ...).

    A driver adds its own typed fields here: ``acme://?name=value`` query values are
    converted to the field's type, and unknown names are refused.
    """


def _session(raw: bytes, key: str) -> Session:
    return session_from_record(decode_json(raw, key), key)


class AcmeStore(BaseSessionStore):
    """``acme://[?namespace=x]``: sessions in a key-value service.

    ``AcmeStore(kv=kv, namespace=...)`` shares ``kv`` (and so the data of each
    namespace) with other stores; without ``kv`` the store gets a private one.
    """

    Options = AcmeOptions
    CAPABILITIES = Capabilities(
        atomic_multi_session=True,  # one conditional commit covers a whole batch
        shared_namespace=True,  # stores sharing one AcmeKV see one data set
        cross_process=False,
        durable=False,
        native_ttl=False,
        indexed_query=False,  # queries scan every document of the namespace
    )

    def __init__(self, *, kv: AcmeKV | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.kv = kv if kv is not None else AcmeKV()
        self._prefix = f"{self.namespace}/"

    # The key of one record; with the last part left out, the prefix of them all.
    def _doc_key(self, session_id: str) -> str:
        return f"{self._prefix}doc:{session_id}"

    def _event_key(self, session_id: str, seq: int | str = "") -> str:
        return f"{self._prefix}ev:{session_id}:{seq}"

    def _checkpoint_key(self, session_id: str, checkpoint_id: str = "") -> str:
        return f"{self._prefix}cp:{session_id}:{checkpoint_id}"

    # ------------------------------------------------------------------ primitives

    async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]:
        keys = [self._doc_key(sid) for sid in session_ids]
        raws = await self.kv.get_many(keys)
        return {
            sid: _session(raw, key)
            for sid, key, raw in zip(session_ids, keys, raws, strict=True)
            if raw is not None
        }

    async def _apply(self, mutations: Sequence[Mutation], *, atomic: bool = True) -> None:
        # Always all or nothing: one conditional commit (atomic=False would allow less).
        keys = [self._doc_key(mut.session_id) for mut in mutations]
        raws = await self.kv.get_many(keys)
        writes: dict[str, bytes | None] = {}
        prefixes: list[str] = []
        for mut, key, raw in zip(mutations, keys, raws, strict=True):
            stored = None if raw is None else _session(raw, key)
            actual = 0 if stored is None else stored.version
            if actual != mut.expect:
                raise SessionConflictError(mut.session_id, mut.expect, actual)
            self._plan(mut, stored, writes, prefixes)
        try:
            # Commit only if no document changed since we read it (compare-and-set).
            await self.kv.commit(
                writes, delete_prefixes=prefixes, if_unchanged=dict(zip(keys, raws, strict=True))
            )
        except ConditionFailed as exc:
            mut = mutations[keys.index(exc.key)]
            actual = 0 if exc.current is None else _session(exc.current, exc.key).version
            raise SessionConflictError(mut.session_id, mut.expect, actual) from None

    def _plan(
        self,
        mut: Mutation,
        stored: Session | None,
        writes: dict[str, bytes | None],
        prefixes: list[str],
    ) -> None:
        """Translate one mutation into key writes (``None`` deletes) and prefix deletes."""
        sid = mut.session_id
        if mut.delete or mut.reset:  # the commit drops these prefixes before its writes
            prefixes += [self._event_key(sid), self._checkpoint_key(sid)]
        if mut.delete:
            writes[self._doc_key(sid)] = None
            return
        if mut.session is not None:
            record = session_to_record(mut.session, mut.data_json, mut.metadata_json)
            writes[self._doc_key(sid)] = dumps_record(record)
        if mut.trim_before and stored is not None and not mut.reset:
            first = stored.last_seq - stored.event_count + 1  # events are gap-free
            for seq in range(first, mut.trim_before):
                writes[self._event_key(sid, seq)] = None
        for event in mut.append:
            writes[self._event_key(sid, event.seq)] = dumps_record(event_to_record(event))
        for cp_id in mut.delete_checkpoints:
            writes[self._checkpoint_key(sid, cp_id)] = None
        for cp in mut.put_checkpoints:
            writes[self._checkpoint_key(sid, cp.id)] = dumps_record(checkpoint_to_record(cp))

    async def _load_events(
        self, session_id: str, *, after_seq: int, limit: int | None, last: int | None
    ) -> list[Event]:
        # The document says which seqs exist, so a page is one get_many: O(page).
        session = (await self._load([session_id])).get(session_id)
        if session is None:
            return []
        first = max(session.last_seq - session.event_count + 1, after_seq + 1)
        end = session.last_seq
        if last is not None:
            first = max(first, end - last + 1)
        if limit is not None:
            end = min(end, first + limit - 1)
        keys = [self._event_key(session_id, seq) for seq in range(first, end + 1)]
        raws = await self.kv.get_many(keys)
        return [  # a missing key was trimmed by a writer between our two reads
            event_from_record(decode_json(raw, key), key)
            for key, raw in zip(keys, raws, strict=True)
            if raw is not None
        ]

    async def _load_checkpoints(self, session_id: str) -> list[Checkpoint]:
        found = [
            checkpoint_from_record(decode_json(raw, key), key)
            for key, raw in await self.kv.scan(self._checkpoint_key(session_id))
        ]
        return sorted(found, key=lambda cp: (cp.created_at, cp.id))

    async def _iter_sessions(self) -> AsyncIterator[Session]:
        for key, raw in await self.kv.scan(self._doc_key("")):
            yield _session(raw, key)
