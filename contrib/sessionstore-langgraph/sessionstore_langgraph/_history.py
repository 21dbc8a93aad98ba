"""LangGraph's delta-channel history read (``get_delta_channel_history``), natively.

LangGraph's default walks the parent chain with one ``get_tuple`` per ancestor, which
loads every channel value and every write of each. Here the chain comes from the
checkpoint events alone, a page of them per read (ancestors sit just before their
children in the thread's log), and each checkpoint event says which versions its step
wrote and which of those had a value, so where each channel's walk stops is known
without loading a value. Only then are the writes of the ancestors on the path (one
read: each checkpoint's writes have a type, and a read takes a set of types) and the
seed values read, concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import DeltaChannelHistory, PendingWrite, get_checkpoint_id

from ._ids import blob_key, checkpoint_key, checkpoint_type, thread_session_id
from ._records import MISSING, CheckpointRecord, decode

if TYPE_CHECKING:
    from ._saver import SessionStoreSaver

__all__ = ["delta_channel_history"]

#: Checkpoint events read per backwards page while walking a chain.
PAGE: Final = 64


async def delta_channel_history(
    saver: SessionStoreSaver, config: RunnableConfig, channels: Sequence[str]
) -> Mapping[str, DeltaChannelHistory]:
    """See :meth:`SessionStoreSaver.aget_delta_channel_history`."""
    if not channels:
        return {}
    configurable = config["configurable"]
    session_id = thread_session_id(str(configurable["thread_id"]))
    ns = configurable.get("checkpoint_ns", "")
    target = await saver._record(session_id, ns, get_checkpoint_id(config))
    walk = _Walk(saver, session_id, ns, channels)
    if target is not None:
        await walk.run(target)
    chain = walk.chain
    reach = {ch: walk.seed_at[ch] + 1 if ch in walk.seed_at else len(chain) for ch in channels}
    depth = max(reach.values(), default=0)
    writes, seeds = await asyncio.gather(
        saver._writes_many(session_id, chain[:depth]),
        asyncio.gather(*(walk.value(ch) for ch in walk.seed_at)),
    )
    seed_of = dict(zip(walk.seed_at, seeds, strict=True))
    result: dict[str, DeltaChannelHistory] = {}
    for ch in channels:
        collected: list[PendingWrite] = []
        for step_writes in reversed(writes[: reach[ch]]):  # oldest ancestor first
            collected.extend(w for w in step_writes if w[1] == ch)
        entry: DeltaChannelHistory = {"writes": collected}
        if ch in seed_of:
            entry["seed"] = seed_of[ch]
        result[ch] = entry
    return result


_MORE: Final = "more"  # the version's stretch reaches the end of the chain loaded so far
_OUTSIDE: Final = "outside"  # no step on the chain wrote the version


class _Walk:
    """The parent chain of a target checkpoint, walked until each channel finds the
    nearest ancestor holding its value (its seed) or the root."""

    def __init__(
        self, saver: SessionStoreSaver, session_id: str, ns: str, channels: Sequence[str]
    ) -> None:
        self.saver = saver
        self.session_id = session_id
        self.ns = ns
        self.chain: list[CheckpointRecord] = []
        self.seed_at: dict[str, int] = {}
        self._next = dict.fromkeys(channels, 0)  # per open channel: next index to decide
        self._decided: dict[tuple[str, Any], bool] = {}

    async def run(self, target: CheckpointRecord) -> None:
        loaded: dict[str, CheckpointRecord] = {}
        parent = target.parent
        below = target.event.seq
        kind = checkpoint_type(self.ns)
        while parent is not None and self._next:
            record = loaded.get(parent)
            if record is None:
                page = await self.saver._events(
                    self.session_id, types=[kind], before_seq=below, last=PAGE
                )
                for event in page:
                    loaded.setdefault(event.data["id"], CheckpointRecord.of(event))
                if page:
                    below = page[0].seq
                record = loaded.get(parent)
                if record is None:  # not just before its child (a fork): fetch it by key
                    found = await self.saver._event(
                        self.session_id, checkpoint_key(self.ns, parent)
                    )
                    if found is None:
                        break
                    record = CheckpointRecord.of(found)
                    below = record.event.seq
            self.chain.append(record)
            await self._settle(at_end=False)
            parent = record.parent
        await self._settle(at_end=True)

    async def _settle(self, *, at_end: bool) -> None:
        for ch in list(self._next):
            i = self._next[ch]
            while i < len(self.chain):
                version = self.chain[i].versions.get(ch)
                if version is None:
                    i += 1
                    continue
                pair = (ch, version)
                # a small value is carried in the checkpoint itself
                has = True if ch in self.chain[i].inline else self._decided.get(pair)
                if has is None:
                    status = self._status(i, ch, version)
                    if status == _MORE and not at_end:
                        break
                    if isinstance(status, bool):
                        has = status
                    else:  # written outside the chain: is a value stored for it?
                        event = await self.saver._event(
                            self.session_id, blob_key(self.ns, ch, version)
                        )
                        has = event is not None
                    self._decided[pair] = has
                if has:
                    self.seed_at[ch] = i
                    break
                i += 1
            if ch in self.seed_at:
                del self._next[ch]
            else:
                self._next[ch] = i

    def _status(self, i: int, ch: str, version: Any) -> bool | str:
        for record in self.chain[i:]:
            if record.versions.get(ch) != version:
                return _OUTSIDE
            if record.new_versions.get(ch) == version:
                return ch in record.stored
        return _MORE

    async def value(self, ch: str) -> Any:
        """The seed value of ``ch`` (its walk found one)."""
        record = self.chain[self.seed_at[ch]]
        if ch in record.inline:
            return decode(self.saver.serde, record.inline[ch])
        version = record.versions[ch]
        value = await self.saver._value(self.session_id, blob_key(self.ns, ch, version))
        return None if value is MISSING else value
