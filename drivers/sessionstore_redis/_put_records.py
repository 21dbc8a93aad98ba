"""``put_records`` in one pipelined round trip: one write script per record, the merge
strategy decided inside the script (``skip_existing``, ``overwrite``, ``update_newer``),
pipelined in chunks. Not atomic across records, as the contract allows; a record of a
grouped session (or one that meets a grouped session's stub) takes the generic path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from sessionstore import (
    Mutation,
    PutResult,
    Session,
    SessionExistsError,
    SessionRecord,
)
from sessionstore.clock import to_ms

from ._scripts import WRITE
from ._writes import Writes

__all__ = ["RecordWriter"]

PutOne = Callable[[SessionRecord, bytes, bytes, str, Session | None], Awaitable[PutResult]]

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


class RecordWriter:
    """Writes whole records (``put_records``) for :class:`RedisStore` through its
    :class:`~._writes.Writes`; a record the pipelined script cannot take goes to
    ``put_record`` (the base engine's generic path, given the stored session from
    ``load``); ``after_write`` tells the base engine what was written."""

    def __init__(
        self,
        writes: Writes,
        *,
        load: Callable[[Sequence[str]], Awaitable[dict[str, Session]]],
        put_record: PutOne,
        after_write: Callable[[Sequence[Mutation]], None],
    ) -> None:
        self._writes = writes
        self._load = load
        self._put_record = put_record
        self._after_write = after_write

    async def put(
        self, batch: list[SessionRecord], encoded: list[tuple[bytes, bytes]], strategy: str
    ) -> PutResult:
        """Write checked, encoded records (no id twice) with ``strategy``."""
        ids = [r.session.id for r in batch]
        if strategy == "fail_on_conflict":  # nothing may be written if any exists: read first
            existing = await self._load(ids)
            now = self._writes.clock.now()
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
        writes = self._writes
        now_ms = to_ms(writes.clock.now())
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
            call = writes.call(now_ms)
            call.mutation(writes.keys.home(new.id), mut, mode)
            calls.append(("script", WRITE, call.keys, call.args()))
            plain.append((record, mut))
        replies: list[Any] = []
        if calls:
            backend = writes.backend
            replies, _ = await backend.run(
                lambda: backend.pipeline(calls), idempotent=True, what="put_records"
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
            writes.remember(mut.session_id, None)
            written.append(mut)
        writes.reindex_later([m.session for m in written if m.session])
        self._after_write(written)
        for record, (data_json, meta_json) in slow:
            stored = (await self._load([record.session.id])).get(record.session.id)
            total += await self._put_record(record, data_json, meta_json, strategy, stored)
        return total
