"""``put_records`` in one pipelined round trip: one write script per record, the merge
strategy decided inside the script (``skip_existing``, ``overwrite``, ``update_newer``),
pipelined in chunks. Not atomic across records, as the contract allows; a record of a
grouped session (or one that meets a grouped session's stub) takes the generic path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from sessionstore import (
    InvalidArgumentError,
    MergeStrategy,
    Mutation,
    PutResult,
    Session,
    SessionExistsError,
    SessionRecord,
)
from sessionstore.clock import to_ms
from sessionstore.planning import check_strategy

from ._ops import WriteCall
from ._scripts import WRITE

if TYPE_CHECKING:
    from sessionstore import Clock

    from ._conn import Backend
    from ._keys import Keys

__all__ = ["RecordsMixin"]

_CHUNK: Final = 500
_MODES: Final = {
    "skip_existing": "skip",
    "fail_on_conflict": "skip",  # checked before writing; a later race counts as a conflict
    "overwrite": "over",
    "update_newer": "newer",
}
_OUTCOMES: Final = {
    b"C": PutResult(created=1),
    b"O": PutResult(overwritten=1),
    b"S": PutResult(skipped=1),
}


class RecordsMixin:
    """Pipelined ``put_records`` for :class:`RedisStore`."""

    if TYPE_CHECKING:
        clock: Clock
        _backend: Backend
        _keys: Keys

        def _check_open(self) -> None: ...
        def _check_record(self, record: SessionRecord) -> tuple[bytes, bytes]: ...
        def _after_write(self, mutations: Sequence[Mutation]) -> None: ...
        def _call(self, now_ms: int) -> WriteCall: ...
        def _remember(self, sid: str, group: str | None) -> None: ...
        def _index_put(self, s: Session) -> tuple[str, list[Any]]: ...
        async def _reindex(self, items: Sequence[tuple[str, list[Any]]]) -> None: ...
        async def _load(self, session_ids: Sequence[str]) -> dict[str, Session]: ...
        async def _put_record(
            self,
            record: SessionRecord,
            data_json: bytes,
            meta_json: bytes,
            strategy: str,
            stored: Session | None,
        ) -> PutResult: ...

    async def put_records(
        self, records: Iterable[SessionRecord], *, strategy: MergeStrategy = "skip_existing"
    ) -> PutResult:
        """Write whole records back exactly; pipelined (see the module docstring)."""
        check_strategy(strategy)
        batch = list(records)
        encoded = [self._check_record(r) for r in batch]
        self._check_open()
        ids = [r.session.id for r in batch]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("put_records got the same session twice in one call")
        if strategy == "fail_on_conflict":  # nothing may be written if any exists: read first
            existing = await self._load(ids)
            now = self.clock.now()
            for sid in ids:
                stored = existing.get(sid)
                if stored is not None and not stored.is_expired(now):
                    raise SessionExistsError(sid)
        total = PutResult()
        for start in range(0, len(batch), _CHUNK):
            total += await self._put_chunk(
                batch[start : start + _CHUNK], encoded[start : start + _CHUNK], strategy
            )
        return total

    async def _put_chunk(
        self, chunk: list[SessionRecord], encoded: list[tuple[bytes, bytes]], strategy: str
    ) -> PutResult:
        mode = _MODES[strategy]
        now_ms = to_ms(self.clock.now())
        plain: list[tuple[SessionRecord, Mutation]] = []
        slow: list[tuple[SessionRecord, tuple[bytes, bytes]]] = []
        calls = []
        for record, (data_json, meta_json) in zip(chunk, encoded, strict=True):
            new = record.session
            if new.group is not None:
                slow.append((record, (data_json, meta_json)))  # claims a stub first
                continue
            mut = Mutation(
                session_id=new.id,
                expect=0,
                session=new,
                data_json=data_json,
                metadata_json=meta_json,
                reset=True,
                append=list(record.events),
                put_checkpoints=list(record.checkpoints),
            )
            call = self._call(now_ms)
            call.mutation(self._keys.home(new.id), mut, mode)
            calls.append(("script", WRITE, call.keys, call.args()))
            plain.append((record, mut))
        replies: list[Any] = []
        if calls:
            replies, _ = await self._backend.run(
                lambda: self._backend.pipeline(calls), idempotent=True, what="put_records"
            )
        total = PutResult()
        written: list[Mutation] = []
        for (record, mut), reply in zip(plain, replies, strict=True):
            if isinstance(reply, Exception) or reply[0] != b"OK":
                slow.append((record, (mut.data_json or b"", mut.metadata_json or b"")))
                continue
            outcome = _OUTCOMES[reply[1]]
            if outcome.skipped and strategy == "fail_on_conflict":
                outcome = PutResult(conflicts=1)
            total += outcome
            if outcome.skipped or outcome.conflicts:
                continue
            mut.created = bool(outcome.created)
            self._remember(mut.session_id, None)
            written.append(mut)
        await self._reindex([self._index_put(m.session) for m in written if m.session])
        self._after_write(written)
        for record, (data_json, meta_json) in slow:
            stored = (await self._load([record.session.id])).get(record.session.id)
            total += await self._put_record(record, data_json, meta_json, strategy, stored)
        return total
