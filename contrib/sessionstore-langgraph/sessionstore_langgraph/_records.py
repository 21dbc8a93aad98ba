"""What a LangGraph checkpoint, channel value or write looks like as a sessionstore event.

Values go through the saver's serializer (LangGraph's ``serde``: msgpack with type tags)
and are kept as ``[type, base64]`` pairs, since event data is JSON only. A channel value
whose encoding is long (a message list) is stored zlib-compressed when that saves at
least a quarter (``"z": 1`` in its event): a plain message channel is stored whole at
every step, so what each step writes and syncs is mostly that value. A checkpoint
event carries the checkpoint without its channel values, the metadata, and in plain
JSON what reading needs without decoding: the parent id, the run id, the channel
versions, the versions this step wrote (``nv``) and which of those had a value (``sv``).
Small values (``None``, a bool, a number, a string of at most :data:`INLINE_STR`
characters) are not stored as events of their own: every checkpoint carries the
current small value of each channel (``iv``, encoded pairs), as ``AsyncPostgresSaver``
inlines primitive values in its checkpoint row, so a step appends one event fewer per
such channel and a read finds them in the checkpoint.

A plain ``list`` value that extends the same channel's previous value (a message list
under ``add_messages``) may be stored as a *link* instead (type ``lg.link``): the key of
a value of the channel stored whole (its *snapshot*) and every item after the
snapshot's, each encoded on its own, so it is rebuilt from two reads by key whatever
how many links came before it. A step encodes only its new items: the pairs of the
link before are reused.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from langgraph.checkpoint.base import WRITES_IDX_MAP, PendingWrite
from langgraph.checkpoint.serde.base import SerializerProtocol

from sessionstore import Event, EventInput

from ._ids import BLOB_TYPE, LINK_TYPE, UNINDEXED, digest, metadata_tag

__all__ = [
    "CHUNK",
    "INLINE_STR",
    "MISSING",
    "CheckpointRecord",
    "blob_base",
    "blob_events",
    "blob_value",
    "decode",
    "encode",
    "inline_pairs",
    "is_value_event",
    "link_event",
    "link_value",
    "metadata_tags",
    "pending_writes",
    "write_rows",
    "writes_digest",
]

Versions = dict[str, str | int | float]

#: What a read of a channel value gives when none is stored (``None`` is a value).
MISSING: Final = object()

#: The most base64 characters one channel-value event holds: a longer value (a message
#: list of thousands of messages) is split over events keyed ``<key>.1``, ``<key>.2``, ...
#: so that each stays well below sessionstore's default 1 MiB per event.
CHUNK: Final = 512 * 1024
#: Channel values whose encoding is at least this many bytes are compressed (zlib level 1:
#: ~0.4 ms for 225 KB, a fifth of what base64 and the write's checksum cost without it)
#: when that makes them at least a quarter smaller (not, e.g., an encrypting serde's output).
COMPRESS_FROM: Final = 1024
#: The longest string a checkpoint carries inline (a longer one is a value event).
INLINE_STR: Final = 256
_INLINE_TYPES: Final = (type(None), bool, int, float, str)


def encode(serde: SerializerProtocol, value: Any) -> list[str]:
    """``value`` as a JSON-able ``[type, base64]`` pair."""
    kind, raw = serde.dumps_typed(value)
    return [kind, base64.b64encode(raw).decode("ascii")]


def decode(serde: SerializerProtocol, pair: Sequence[str]) -> Any:
    """The value an :func:`encode` pair holds."""
    return serde.loads_typed((pair[0], base64.b64decode(pair[1])))


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A checkpoint event, read without decoding its checkpoint or metadata."""

    event: Event
    ns: str
    id: str
    parent: str | None
    run_id: str | None
    versions: Versions
    new_versions: Versions
    stored: frozenset[str]
    inline: Mapping[str, Sequence[str]]  # channel -> encoded value, carried in the event

    @classmethod
    def of(cls, event: Event) -> CheckpointRecord:
        data = event.data
        return cls(
            event=event,
            ns=data["ns"],
            id=data["id"],
            parent=data["parent"],
            run_id=data.get("run"),
            versions=data["cv"],
            new_versions=data["nv"],
            stored=frozenset(data["sv"]),
            inline=data.get("iv") or {},
        )

    @property
    def evented(self) -> frozenset[str]:
        """The channels whose value this step stored as events (not inline)."""
        return self.stored.difference(self.inline) if self.inline else self.stored

    def checkpoint(self, serde: SerializerProtocol) -> dict[str, Any]:
        """The checkpoint, without channel values."""
        value: dict[str, Any] = decode(serde, self.event.data["cp"])
        return value

    def metadata(self, serde: SerializerProtocol) -> dict[str, Any]:
        """The checkpoint's metadata."""
        value: dict[str, Any] = decode(serde, self.event.data["md"])
        return value


def blob_events(serde: SerializerProtocol, key: str, value: Any) -> list[EventInput]:
    """The events holding one channel value: one, or one per :data:`CHUNK` of its
    encoding (the first says how many, and whether the encoding is compressed)."""
    kind, packed = serde.dumps_typed(value)
    head: dict[str, Any] = {"t": kind}
    if len(packed) >= COMPRESS_FROM:
        small = zlib.compress(packed, 1)
        if len(small) * 4 <= len(packed) * 3:
            packed, head["z"] = small, 1
    raw = base64.b64encode(packed).decode("ascii")
    if len(raw) <= CHUNK:
        return [EventInput(type=BLOB_TYPE, key=key, data={**head, "b": raw})]
    parts = [raw[i : i + CHUNK] for i in range(0, len(raw), CHUNK)]
    events = [EventInput(type=BLOB_TYPE, key=key, data={**head, "b": parts[0], "n": len(parts)})]
    events.extend(
        EventInput(type=BLOB_TYPE, key=f"{key}.{i}", data={"b": part})
        for i, part in enumerate(parts[1:], start=1)
    )
    return events


def blob_value(serde: SerializerProtocol, head: Mapping[str, Any], raw: str) -> Any:
    """The channel value of a first blob event's data ``head`` and the whole base64
    ``raw`` (its own ``"b"`` and those of the events it was split over, in order)."""
    packed = base64.b64decode(raw)
    if head.get("z"):
        packed = zlib.decompress(packed)
    return serde.loads_typed((head["t"], packed))


def is_value_event(event_type: str) -> bool:
    """Whether events of ``event_type`` hold a channel value (a full one or a link)."""
    return event_type in (BLOB_TYPE, LINK_TYPE)


def link_event(
    key: str, *, snapshot: str, depth: int, pairs: Sequence[Sequence[str]], length: int
) -> EventInput:
    """The link event storing, under ``key``, the value made of ``snapshot``'s value and
    the items encoded in ``pairs`` (every item after the snapshot's, as :func:`encode`
    pairs; ``length`` items in all, the ``depth``-th link on that snapshot)."""
    data = {"s": snapshot, "d": depth, "len": length, "x": list(pairs)}
    return EventInput(type=LINK_TYPE, key=key, data=data)


def link_value(serde: SerializerProtocol, link: Mapping[str, Any], base: Any) -> Any:
    """The list a link event's data ``link`` stands for, given ``base``, the value of
    its snapshot; ``MISSING`` unless that is a list of the length the link expects."""
    if not isinstance(base, list) or len(base) + len(link["x"]) != link["len"]:
        return MISSING
    return [*base, *(decode(serde, pair) for pair in link["x"])]


def blob_base(key: str) -> str:
    """The key of a channel value's first event, from the key of any of its events."""
    return key if key.count(".") == 1 else key.rsplit(".", 1)[0]


def checkpoint_data(
    serde: SerializerProtocol,
    *,
    ns: str,
    checkpoint: Mapping[str, Any],
    parent: str | None,
    metadata: Mapping[str, Any],
    new_versions: Mapping[str, str | int | float],
    stored: Iterable[str],
    inline: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """The data of a checkpoint event (``checkpoint`` without its channel values;
    ``inline``: the small ones, encoded)."""
    run_id = metadata.get("run_id")
    data = {
        "ns": ns,
        "id": checkpoint["id"],
        "parent": parent,
        "run": run_id if isinstance(run_id, str) else None,
        "cv": dict(checkpoint["channel_versions"]),
        "nv": dict(new_versions),
        "sv": sorted(stored),
        "cp": encode(serde, checkpoint),
        "md": encode(serde, metadata),
    }
    if inline:
        data["iv"] = dict(inline)
    return data


def inline_pairs(serde: SerializerProtocol, values: Mapping[str, Any]) -> dict[str, list[str]]:
    """The small channel values among ``values`` (``None``, bools, numbers, strings of
    at most :data:`INLINE_STR` characters; exact types only), encoded."""
    return {
        channel: encode(serde, value)
        for channel, value in values.items()
        if type(value) in _INLINE_TYPES and (type(value) is not str or len(value) <= INLINE_STR)
    }


def write_rows(serde: SerializerProtocol, writes: Sequence[tuple[str, Any]]) -> list[list[Any]]:
    """``put_writes``' writes as ``[idx, channel, type, base64]`` rows; special channels
    (errors, interrupts, ...) take LangGraph's fixed negative indexes."""
    rows: list[list[Any]] = []
    for idx, (channel, value) in enumerate(writes):
        rows.append([WRITES_IDX_MAP.get(channel, idx), channel, *encode(serde, value)])
    return rows


def writes_digest(task_path: str, rows: Sequence[Sequence[Any]]) -> str:
    """A digest of one ``put_writes`` call's content (its event key is made from it)."""
    parts = [task_path]
    for row in rows:
        parts.extend(str(part) for part in row)
    return digest(*parts)


def pending_writes(serde: SerializerProtocol, events: Iterable[Event]) -> list[PendingWrite]:
    """The pending writes of one checkpoint from its write events, oldest first.

    As in LangGraph's own savers, a regular write stored again under the same task and
    index keeps its first value, and a special one (negative index) its last. The result
    is ordered by task path, task id and index, as ``PostgresSaver`` orders it.
    """
    chosen: dict[tuple[str, int], tuple[str, str, list[Any]]] = {}
    for event in events:
        data = event.data
        task_id, path = data["task"], data["path"]
        for idx, channel, kind, raw in data["w"]:
            slot = (task_id, idx)
            if idx >= 0 and slot in chosen:
                continue
            chosen[slot] = (path, channel, [kind, raw])
    ordered = sorted(chosen.items(), key=lambda item: (item[1][0], item[0][0], item[0][1]))
    return [(task_id, channel, decode(serde, pair)) for (task_id, _), (_, channel, pair) in ordered]


def metadata_tags(metadata: Mapping[str, Any]) -> frozenset[str]:
    """The session tags indexing a checkpoint's ``metadata``: one per top-level key
    (but :data:`~sessionstore_langgraph._ids.UNINDEXED`) whose value is a bool, a
    number or a string (:func:`~sessionstore_langgraph._ids.metadata_tag`)."""
    tags = (metadata_tag(k, v) for k, v in metadata.items() if k not in UNINDEXED)
    return frozenset(t for t in tags if t)
