"""The session document hash and the event/checkpoint encodings (no JSON inside Lua).

A session's ``doc`` hash holds header fields (``v`` format version, ``id``, ``ver``,
``ca``/``ua``/``ea`` epoch milliseconds, ``ec``/``ls`` event counters, ``st``, ``pid``,
``grp``, ``wt`` the last write token, ``ds``/``ms`` encoded sizes) plus one field per
tag (``t:<tag>``) and per top-level key of ``data`` (``d:<json key>``) and ``metadata``
(``m:<json key>``) holding that value's JSON bytes. The field name carries the key
already JSON-encoded, so ``data`` is rebuilt by joining the fields into one JSON object
and decoding it once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

import orjson

from sessionstore import (
    Checkpoint,
    Event,
    IntegrityError,
    Session,
    Status,
    UnsupportedFormatError,
)
from sessionstore.clock import from_ms, to_ms
from sessionstore.codec import FORMAT_VERSION, checkpoint_from_record, decode_json
from sessionstore.planning import fast_session

__all__ = [
    "Doc",
    "decode_checkpoint",
    "decode_doc",
    "decode_events",
    "decode_full",
    "encode_event",
    "event_blob",
    "json_pairs",
    "record_of",
    "record_tail",
]

_HEADER: Final = frozenset(
    (b"v", b"id", b"ver", b"ca", b"ua", b"ea", b"ec", b"ls", b"st", b"pid", b"grp", b"wt")
)
_STATUSES: Final = {s.value.encode(): s for s in Status}


def json_pairs(values: Mapping[str, Any]) -> list[bytes]:
    """``[json(key), json(value), ...]`` of a JSON-native dict (already validated)."""
    out: list[bytes] = []
    dumps = orjson.dumps
    for key, value in values.items():
        out.append(dumps(key))
        out.append(dumps(value))
    return out


def _split(blob: bytes, record: str) -> tuple[list[bytes], list[bytes]]:
    """Field names and values of a document sent as one ``k1\\0v1\\0k2\\0v2...`` string
    (see ``lua/read.lua``)."""
    if blob == b"\x01":
        raise IntegrityError("a key of this session holds a value of the wrong type", record)
    parts = blob.split(b"\0")
    if len(parts) % 2:
        raise IntegrityError("malformed session document (a field holds a NUL byte)", record)
    return parts[0::2], parts[1::2]


def _object(parts: list[bytes], count: int, what: str, record: str) -> tuple[bytes, dict[str, Any]]:
    """The JSON object the fields make, and its decoded value."""
    if not parts:
        return b"{}", {}
    raw = b"{" + b",".join(parts) + b"}"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise IntegrityError(f"undecodable {what} field", record) from None
    if not isinstance(value, dict) or len(value) != count:
        raise IntegrityError(f"malformed {what} fields", record)
    return raw, value


class Doc(NamedTuple):
    """A decoded document with what the client-side cache keeps (``_cache.py``)."""

    session: Session
    token: str  # the last write's token ("wt")
    data: bytes  # data as one JSON object
    metadata: bytes


def decode_doc(blob: bytes, record: str) -> Session | str | None:
    """A :class:`Session` from a document string; a ``str`` (the group) for a grouped
    session's stub; ``None`` for no document. Anything malformed raises
    :class:`IntegrityError`."""
    doc = decode_full(blob, record)
    return doc.session if isinstance(doc, Doc) else doc


def decode_full(blob: bytes, record: str) -> Doc | str | None:
    """:func:`decode_doc`, with the write token and the encoded data and metadata."""
    if not blob:
        return None
    names, values = _split(blob, record)
    data: list[bytes] = []
    meta: list[bytes] = []
    tags: list[str] = []
    head: dict[bytes, bytes] = {}
    for key, value in zip(names, values, strict=True):
        kind = key[:2]
        if kind == b"d:":
            data.append(key[2:] + b":" + value)
        elif kind == b"m:":
            meta.append(key[2:] + b":" + value)
        elif kind == b"t:":
            tags.append(key[2:].decode("utf-8", "replace"))
        else:
            head[key] = value
    if not head and not data and not meta and not tags:
        return None
    if b"ver" not in head:
        group = head.get(b"grp")
        if group is not None and len(head) == 1 and not data and not meta and not tags:
            return group.decode()
        raise IntegrityError("not a session document (no version field)", record)
    try:
        version = int(head[b"v"])
        if version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"record format version {version} is newer than this sessionstore "
                f"understands ({FORMAT_VERSION}); upgrade sessionstore to read it",
                record,
            )
        status = _STATUSES[head[b"st"]]
        ea = head.get(b"ea")
        pid = head.get(b"pid")
        grp = head.get(b"grp")
        data_raw, data_value = _object(data, len(data), "data", record)
        meta_raw, meta_value = _object(meta, len(meta), "metadata", record)
        session = fast_session(
            head[b"id"].decode(),
            None if pid is None else pid.decode(),
            status,
            data_value,
            meta_value,
            frozenset(tags),
            from_ms(int(head[b"ca"])),
            from_ms(int(head[b"ua"])),
            None if ea is None else from_ms(int(ea)),
            int(head[b"ver"]),
            int(head[b"ec"]),
            int(head[b"ls"]),
            None if grp is None else grp.decode(),
        )
        return Doc(session, head.get(b"wt", b"").decode(), data_raw, meta_raw)
    except UnsupportedFormatError:
        raise
    except (KeyError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise IntegrityError(f"malformed session document ({type(exc).__name__})", record) from None


def record_of(s: Session) -> str:
    """The index record of ``s`` (see ``lua/index.lua``)."""
    head = f"{s.version}\0{to_ms(s.created_at)}\0{to_ms(s.updated_at)}\0"
    return head + record_tail(s, s.event_count > 0)


def record_tail(s: Session, has_events: bool) -> str:
    """The part of ``s``'s index record after ``updated_at``: what an append keeps
    (``has_events`` aside), so an append sends it from the copy it holds (``_cache.py``)."""
    return "\0".join(
        [
            "" if s.expires_at is None else str(to_ms(s.expires_at)),
            s.status.value,
            s.processor_id or "",
            s.group or "",
            "1" if has_events else "0",
            *sorted(s.tags),
        ]
    )


def encode_event(etype: str, at_ms: int, data: Mapping[str, Any]) -> bytes:
    """One stored event (its seq is its position in the log)."""
    return orjson.dumps({"v": FORMAT_VERSION, "type": etype, "at": at_ms, "data": data})


_EVENT_HEAD: Final = b'{"v":%d,"type":' % FORMAT_VERSION


_EVENT_TYPES: dict[str, bytes] = {}  # "type" values as JSON (an application uses a few)


def event_blob(etype: str, at_ms: int, data_json: bytes) -> bytes:
    """:func:`encode_event` from the data's JSON as ``encode_events`` made it (the same
    bytes: orjson writes a decoded copy back exactly as it read it), without encoding
    the data a second time."""
    head = _EVENT_TYPES.get(etype)
    if head is None:
        if len(_EVENT_TYPES) >= 1024:
            _EVENT_TYPES.clear()
        head = _EVENT_TYPES[etype] = _EVENT_HEAD + orjson.dumps(etype)
    return b'%b,"at":%d,"data":%b}' % (head, at_ms, data_json)


def decode_events(blobs: Sequence[bytes], first_seq: int, record: str) -> list[Event]:
    """Events from stored blobs; the first one has ``first_seq``."""
    if not blobs:
        return []
    try:
        items = orjson.loads(b"[" + b",".join(blobs) + b"]")
    except orjson.JSONDecodeError:
        raise IntegrityError("undecodable event", record) from None
    out = []
    for offset, item in enumerate(items):
        try:
            if not isinstance(item, dict) or item["v"] > FORMAT_VERSION:
                raise ValueError
            etype, at, data = item["type"], item["at"], item["data"]
            if not isinstance(etype, str) or not isinstance(at, int) or not isinstance(data, dict):
                raise ValueError
        except (KeyError, ValueError, TypeError):
            raise IntegrityError(f"malformed event #{first_seq + offset}", record) from None
        out.append(Event(first_seq + offset, etype, from_ms(at), data))
    if len(out) != len(blobs):
        raise IntegrityError("malformed event log", record)
    return out


def decode_checkpoint(session_id: str, field: bytes, blob: bytes) -> Checkpoint:
    """The checkpoint stored in field ``field`` of the session's ``ckpt`` hash; a record
    that is undecodable, malformed or names another checkpoint raises
    :class:`IntegrityError` naming ``<session id>/checkpoints/<field>``."""
    record = f"{session_id}/checkpoints/{field.decode(errors='replace')}"
    cp = checkpoint_from_record(decode_json(blob, record), record)
    if cp.session_id != session_id or cp.id.encode() != field:
        raise IntegrityError("the checkpoint record names another checkpoint", record)
    return cp
