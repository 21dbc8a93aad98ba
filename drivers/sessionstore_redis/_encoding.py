"""The session document and the event/checkpoint encodings (no JSON inside Lua).

A session's ``doc`` key holds one string (layout 3, ``lua/dochead.lua``): ``\x03``, a
fixed-width header (version, updated_at, event counters, the last write token, expiry,
...), then NUL-separated fields, the tags, and ``data`` and ``metadata`` as JSON objects
whose members are separated by JSON whitespace (``"key"\t:value``, ``\n,``), each decoded
with one ``orjson.loads``. Layout 2, a hash of header fields plus one field per tag
(``t:<tag>``) and per top-level key of ``data`` (``d:<json key>``) and ``metadata``
(``m:<json key>``) holding that value's JSON bytes, is still decoded (as ``lua/read.lua``
sends it: fields and values NUL-separated). Event records (``lua/evlog.lua``) are JSON
objects with short field names (``v`` layout, ``s`` seq, ``t`` type, ``a`` at, ``k`` key,
``d`` data), a page of them decoded with one ``orjson.loads``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
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
from sessionstore.codec import checkpoint_from_record, decode_json
from sessionstore.planning import fast_session

__all__ = [
    "DOC_FORMAT",
    "DOC_HEADER",
    "Doc",
    "content_digest",
    "decode_checkpoint",
    "decode_doc",
    "decode_events",
    "decode_full",
    "decode_listed",
    "documents",
    "documents_or_failure",
    "event_args",
    "event_tail",
    "json_object",
    "json_pairs",
    "new_document",
    "numbered_record",
    "record_of",
    "record_tail",
    "strings",
    "type_json",
]

_HEADER: Final = frozenset(
    (b"v", b"id", b"ver", b"ca", b"ua", b"ea", b"ec", b"ls", b"st", b"pid", b"grp", b"wt")
)
_STATUSES: Final = {s.value.encode(): s for s in Status}

#: The document layout this driver writes (field ``v``): 2 since the event log became a
#: sorted set (``lua/evlog.lua``); layout 1 documents are read, and their logs converted
#: by the first script that touches the events.
DOC_FORMAT: Final = 2


def json_pairs(values: Mapping[str, Any]) -> list[bytes]:
    """``[json(key), json(value), ...]`` of a JSON-native dict (already validated)."""
    out: list[bytes] = []
    dumps = orjson.dumps
    for key, value in values.items():
        out.append(dumps(key))
        out.append(dumps(value))
    return out


_KEY_JSON: dict[str, bytes] = {}  # data / metadata keys as JSON (an application uses a few)


def json_object(values: Mapping[str, Any]) -> tuple[bytes, int]:
    """A data or metadata dict of JSON-native values (already validated) as the document
    stores it (``lua/doc.lua``: members ``"key"\t:value`` separated by ``\n,``), and its
    encoded size (``lua/write.lua``'s ``psize``: the compact JSON's length less one, 0
    when empty)."""
    if not values:
        return b"{}", 0
    names = _KEY_JSON
    dumps = orjson.dumps
    parts = [b"{"]  # one join of the pieces, no member made apart
    append = parts.append
    for key, value in values.items():
        name = names.get(key)
        if name is None:
            if len(names) >= 4096:
                names.clear()
            name = names[key] = dumps(key)
        append(name)
        append(b"\t:")
        append(dumps(value))
        append(b"\n,")
    parts[-1] = b"}"
    out = b"".join(parts)
    return out, len(out) - 2 * len(values)  # the members' lengths: less 2 a member


_BLANK: Final = b" " * 20


def new_document(
    sid: str,
    now_ms: int,
    token: str,
    status: str,
    processor_id: str | None,
    expires_ms: int | None,
    tags: Sequence[str],
    data: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> bytes:
    """The layout-3 string (``lua/doc.lua``) of a session created at ``now_ms`` by the
    write ``token`` (version 1, no events, no group): what ``lua/create.lua`` stores."""
    if len(token) > 32:  # pragma: no cover (tokens are 16 hex digits and a short counter)
        raise ValueError("a write token longer than the header's 32 characters")
    data_raw, ds = json_object(data)
    meta_raw, ms = json_object(metadata)
    head = b"\x03%020d%020d%s%s0%-32s%s0" % (
        1,
        now_ms,
        b"0" * 40,
        _BLANK,
        token.encode(),
        _BLANK if expires_ms is None else b"%020d" % expires_ms,
    )
    body = [sid.encode(), b"%d" % now_ms, status.encode(), (processor_id or "").encode(), b""]
    body += (b"%d" % ds, b"%d" % ms, b"%d" % len(tags))
    if tags:  # one string for them all (a tag holds no NUL), no generator
        body.append("\0".join(tags).encode())
    body += (data_raw, meta_raw)
    return head + b"\0".join(body)


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
    # (layout 3 straight to its decoder: every read decodes, a frame is ~0.5k instructions)
    doc = _decode3(blob, record, False) if blob[:1] == b"\x03" else _decode(blob, record, False)
    return doc[0] if isinstance(doc, tuple) else doc


def decode_full(blob: bytes, record: str) -> Doc | str | None:
    """:func:`decode_doc`, with the write token and the encoded data and metadata."""
    doc = _decode(blob, record, False)
    if isinstance(doc, tuple):
        return Doc(doc[0], doc[1].decode(), doc[2], doc[3])
    return doc


def decode_listed(blob: bytes, record: str) -> tuple[Session, bytes] | str | None:
    """:func:`decode_doc`, with the index record (``lua/index.lua``) the document's
    stored fields make: :func:`record_of` of the session for every document the writes
    leave (a field stored in another spelling, e.g. a version ``01``, gives another
    record: callers compare with :func:`record_of` before they call a record stale)."""
    doc = _decode(blob, record, True)
    return (doc[0], doc[4]) if isinstance(doc, tuple) else doc


#: the layout-3 document's first byte and header length (``lua/doc.lua``)
_LAYOUT3: Final = 3
DOC_HEADER: Final = 155


def _decode3(
    blob: bytes, record: str, index: bool
) -> tuple[Session, bytes, bytes, bytes, bytes] | str:
    """:func:`_decode` of a layout-3 document (one string, ``lua/doc.lua``)."""
    if blob[1:2] == b"G":
        return blob[2:].decode()
    try:
        if len(blob) < DOC_HEADER:
            raise ValueError
        # the short fields and the tags split off, data and metadata split from the end:
        # the ~2 KB of data is never scanned for NULs (a split of all of it was ~10k
        # instructions a read); a NUL too many anywhere leaves one in data or metadata,
        # which then fails to decode
        parts = blob[DOC_HEADER:].split(b"\0", 8)
        ntags = int(parts[7])
        if len(parts) != 9 or ntags < 0:
            raise ValueError
        sid, ca, st, pid, grp = parts[0], parts[1], parts[2], parts[3], parts[4]
        if ntags:
            tags = parts[8].split(b"\0", ntags)
            if len(tags) != ntags + 1:
                raise ValueError
            data_raw, sep, meta_raw = tags.pop().rpartition(b"\0")
        else:
            tags = []
            data_raw, sep, meta_raw = parts[8].rpartition(b"\0")
        if not sep:
            raise ValueError
        ver = int(blob[1:21])
        ua, ea = blob[21:41], blob[134:154]
        events = int(blob[41:61])
        token = blob[102:134].rstrip(b" ")
        at = _AT_RAW.get
        try:
            data_value = orjson.loads(data_raw)
            meta_value = orjson.loads(meta_raw)
        except orjson.JSONDecodeError:
            raise IntegrityError("undecodable data or metadata", record) from None
        if type(data_value) is not dict or type(meta_value) is not dict:
            raise IntegrityError("malformed data or metadata", record)
        session = fast_session(
            sid.decode(),
            (_NAMES.get(pid) or _name(pid)) if pid else None,
            _STATUSES[st],
            data_value,
            meta_value,
            frozenset([_TAGS.get(t) or _tag(t) for t in tags]) if tags else _NO_TAGS,
            at(ca) or _when_raw(ca),
            at(ua) or _when_raw(ua),
            None if ea[0] == 32 else (at(ea) or _when_raw(ea)),
            ver,
            events,
            int(blob[61:81]),
            grp.decode() if grp else None,
        )
        token.decode()
    except (KeyError, ValueError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise IntegrityError(f"malformed session document ({type(exc).__name__})", record) from None
    if not index:
        return session, token, data_raw, meta_raw, b""
    head = [
        b"%d" % ver,
        ca,
        b"%d" % int(ua),
        b"" if ea[0] == 32 else b"%d" % int(ea),
        st,
        pid,
        grp,
        b"1" if events > 0 else b"0",
    ]
    if tags:
        head += sorted(tags)  # bytes order: code point order, as record_of sorts them
    return session, token, data_raw, meta_raw, b"\0".join(head)


def _decode(
    blob: bytes, record: str, index: bool
) -> tuple[Session, bytes, bytes, bytes, bytes] | str | None:
    """The one document decoder (see :func:`decode_doc`): the session, its write token,
    its encoded data and metadata and, with ``index``, the index record its stored fields
    make (``b""`` without). Layout 3 (one string) and layout 2 (a hash's fields, as
    ``lua/read.lua`` sends them)."""
    if not blob:
        return None
    first = blob[0]
    if first == _LAYOUT3:
        return _decode3(blob, record, index)
    if 3 < first < 32:
        raise UnsupportedFormatError(
            f"document layout {first} is newer than this sessionstore understands "
            f"({_LAYOUT3}); upgrade sessionstore to read it",
            record,
        )
    if blob == b"\x01":
        raise IntegrityError("a key of this session holds a value of the wrong type", record)
    parts = blob.split(b"\0")
    if len(parts) % 2:
        raise IntegrityError("malformed session document (a field holds a NUL byte)", record)
    pairs = iter(parts)
    fields = dict(zip(pairs, pairs))  # noqa: B905 (an even count, checked above)
    if b"ver" not in fields:
        group = fields.get(b"grp")
        if group is not None and len(fields) == 1:
            return group.decode()
        raise IntegrityError("not a session document (no version field)", record)
    pop = fields.pop
    try:
        version = int(fields[b"v"])
        if version > DOC_FORMAT:
            raise UnsupportedFormatError(
                f"record format version {version} is newer than this sessionstore "
                f"understands ({DOC_FORMAT}); upgrade sessionstore to read it",
                record,
            )
        # the header fields, taken out by name: what is left is data, metadata and tags
        del fields[b"v"]
        sid, ver, ca, ua = pop(b"id"), pop(b"ver"), pop(b"ca"), pop(b"ua")
        ec, ls, st = pop(b"ec"), pop(b"ls"), pop(b"st")
        ea, pid, grp = pop(b"ea", None), pop(b"pid", None), pop(b"grp", None)
        token = pop(b"wt", b"")
        pop(b"ds", None)
        pop(b"ms", None)
        data: list[bytes] = []
        meta: list[bytes] = []
        tags: list[bytes] = []
        for key, value in fields.items():
            kind = key[:2]
            if kind == b"d:":
                data.append(key[2:] + b":" + value)
            elif kind == b"m:":
                meta.append(key[2:] + b":" + value)
            elif kind == b"t:":
                tags.append(key[2:])
        status = _STATUSES[st]
        data_raw, data_value = _object(data, len(data), "data", record)
        meta_raw, meta_value = _object(meta, len(meta), "metadata", record) if meta else (b"{}", {})
        events = int(ec)
        at = _AT_RAW.get
        session = fast_session(
            sid.decode(),
            None if pid is None else (_NAMES.get(pid) or _name(pid)),
            status,
            data_value,
            meta_value,
            frozenset([_TAGS.get(t) or _tag(t) for t in tags]) if tags else _NO_TAGS,
            at(ca) or _when_raw(ca),
            at(ua) or _when_raw(ua),
            None if ea is None else (at(ea) or _when_raw(ea)),
            int(ver),
            events,
            int(ls),
            None if grp is None else grp.decode(),
        )
        token.decode()  # a malformed token is a malformed document, as before
    except UnsupportedFormatError:
        raise
    except (KeyError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise IntegrityError(f"malformed session document ({type(exc).__name__})", record) from None
    if not index:
        return session, token, data_raw, meta_raw, b""
    head = [ver, ca, ua, ea or b"", st, pid or b"", grp or b"", b"1" if events > 0 else b"0"]
    if tags:
        tags.sort()  # bytes order: code point order, as record_of sorts them
        head += tags
    return session, token, data_raw, meta_raw, b"\0".join(head)


_NO_TAGS: Final[frozenset[str]] = frozenset()

# Bounded caches of what a listing decodes again and again (a page is read repeatedly,
# processors and tags are few): stored epoch-ms fields -> datetime, processor ids and tag
# names -> str. Only immutable values; cleared when full.
_AT_RAW: dict[bytes, datetime] = {}
_NAMES: dict[bytes, str] = {}
_TAGS: dict[bytes, str] = {}


def _when_raw(raw: bytes) -> datetime:
    """The datetime of a stored epoch-ms field (``ValueError`` when it is no integer)."""
    when = _when(int(raw))
    if len(_AT_RAW) >= _MAX_AT:
        _AT_RAW.clear()
    _AT_RAW[raw] = when
    return when


def _name(raw: bytes) -> str:
    """A stored processor id as ``str`` (``UnicodeDecodeError`` when malformed)."""
    name = raw.decode()
    if len(_NAMES) >= 1024:
        _NAMES.clear()
    _NAMES[raw] = name
    return name


def _tag(raw: bytes) -> str:
    """A stored tag name as ``str`` (undecodable bytes replaced, as before)."""
    name = raw.decode("utf-8", "replace")
    if len(_TAGS) >= 4096:
        _TAGS.clear()
    _TAGS[raw] = name
    return name


def strings(sizes: bytes, blob: bytes | list[bytes]) -> list[bytes]:
    """The strings a script sent as their concatenation ``blob`` (or its pieces, in
    order: ``lua/pieces.lua``) and their lengths ``sizes`` (``b"3,0,12"``;
    ``lua/read.lua``, ``lua/walk.lua``)."""
    out: list[bytes] = []
    if not sizes:
        return out
    if not isinstance(blob, bytes):
        blob = blob[0] if len(blob) == 1 else b"".join(blob)
    append = out.append
    at = 0
    for size in sizes.split(b","):
        end = at + int(size)
        append(blob[at:end])
        at = end
    return out


def documents_or_failure(reply: Any, count: int) -> list[Any]:
    """The ``count`` documents of one ``lua/read.lua`` call over ``count`` keys, or the
    call's failure (an error reply) in each place (shared with ``_blocking_reads.py``)."""
    return documents(reply, count) or [reply] * count


def documents(reply: Any, count: int) -> list[bytes] | None:
    """The ``count`` document strings of a ``lua/read.lua`` reply (``None``: the call
    failed, ``reply`` is its error)."""
    if isinstance(reply, bytes) and count == 1:
        return [reply]
    if isinstance(reply, list) and len(reply) == 2:
        found = strings(reply[0], reply[1])
        if len(found) == count:
            return found
    return None


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


_TYPES: dict[str, bytes] = {}  # event types as JSON (an application uses a few)


def type_json(etype: str) -> bytes:
    """``etype`` as JSON, as the records and the type index hold it."""
    out = _TYPES.get(etype)
    if out is None:
        if len(_TYPES) >= 1024:
            _TYPES.clear()
        out = _TYPES[etype] = orjson.dumps(etype)
    return out


def event_tail(etype: bytes, at_ms: int, key: bytes | None, data_json: bytes) -> bytes:
    """An event record without its head (``{"v":2,"s":<seq>,``, which the script adds
    once the seq is known): ``"t":<type>,"a":<at>[,"k":<key>],"d":<data>}``. ``etype``
    and ``key`` are JSON, ``data_json`` the data's JSON as ``encode_event_inputs`` made it."""
    if key is None:
        return b'"t":%b,"a":%d,"d":%b}' % (etype, at_ms, data_json)
    return b'"t":%b,"a":%d,"k":%b,"d":%b}' % (etype, at_ms, key, data_json)


def numbered_record(seq: bytes, etype: str, at_ms: bytes, data_json: bytes) -> bytes:
    """The whole record of an event without a key, numbered ``seq`` (``lua/evlog.lua``;
    :func:`event_tail` with its head); ``seq`` and ``at_ms`` as decimal text."""
    return b'{"v":2,"s":%b,"t":%b,"a":%b,"d":%b}' % (seq, type_json(etype), at_ms, data_json)


def content_digest(etype: str, data: Mapping[str, Any]) -> bytes:
    """What a keyed event's content is compared by (type and data; keys of objects in
    any order): a BLAKE2b digest of the type and the data with sorted keys."""
    canon = orjson.dumps(etype) + b"\0" + orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canon, digest_size=16).hexdigest().encode()


def event_args(
    etype: str, at_ms: int, key: str | None, data: Mapping[str, Any], data_json: bytes
) -> list[Any]:
    """The five arguments of one appended event (``lua/append.lua``): the record's tail,
    the type and the key as JSON, ``at`` and the content digest (keyed events only)."""
    tj = type_json(etype)
    if key is None:
        return [event_tail(tj, at_ms, None, data_json), tj, at_ms, b"", b""]
    kj = orjson.dumps(key)
    return [event_tail(tj, at_ms, kj, data_json), tj, at_ms, kj, content_digest(etype, data)]


#: ``Event``'s fields, set one by one through their slot descriptors by
#: ``decode_events`` (the frozen dataclass's ``__init__`` goes through
#: ``object.__setattr__`` per field: ~3.5k instructions an event more, callgrind)
_EVENT_SLOTS: Final = tuple(f.name for f in fields(Event))
if _EVENT_SLOTS != ("seq", "type", "at", "data", "key") or hasattr(Event, "__post_init__"):
    raise ImportError("sessionstore.Event changed: update decode_events")  # pragma: no cover
_SET_SEQ, _SET_TYPE, _SET_AT, _SET_DATA, _SET_KEY = (
    getattr(Event, name).__set__ for name in _EVENT_SLOTS
)
#: epoch milliseconds -> datetime of the events decoded lately (a page is read again and
#: again; a datetime is immutable, so sharing one is safe)
_AT: dict[int, datetime] = {}
_MAX_AT = 8192


def _when(ms: int) -> datetime:
    """``from_ms(ms)``, from the bounded cache of recent values (``_AT``)."""
    when = _AT.get(ms)
    if when is None:
        if len(_AT) >= _MAX_AT:
            _AT.clear()
        when = _AT[ms] = from_ms(ms)
    return when


def decode_events(blobs: Sequence[bytes], record: str) -> list[Event]:
    """Events from stored records (``lua/evlog.lua``), in the order given; each record
    checked field by field (:class:`IntegrityError` naming ``record`` when one is not a
    layout-2 event)."""
    if not blobs:
        return []
    try:
        items = orjson.loads(b"[" + b",".join(blobs) + b"]")
    except orjson.JSONDecodeError:
        raise IntegrityError("undecodable event", record) from None
    out: list[Event] = []
    append = out.append
    new = object.__new__
    times = _AT
    for item in items:
        try:
            if item["v"] != DOC_FORMAT:
                raise ValueError
            seq, etype, at, data = item["s"], item["t"], item["a"], item["d"]
            key = item.get("k") if len(item) > 5 else None
            # orjson makes exact types: ``type() is`` is ``isinstance`` here
            if not (
                type(seq) is int
                and type(etype) is str
                and type(at) is int
                and type(data) is dict
                and (key is None or type(key) is str)
            ):
                raise ValueError
            when = times.get(at)
            if when is None:
                if len(times) >= _MAX_AT:
                    times.clear()
                when = times[at] = from_ms(at)
        except (KeyError, ValueError, TypeError, OverflowError, AttributeError):
            raise IntegrityError("malformed event record", record) from None
        event = new(Event)
        _SET_SEQ(event, seq)
        _SET_TYPE(event, etype)
        _SET_AT(event, when)
        _SET_DATA(event, data)
        _SET_KEY(event, key)
        append(event)
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
