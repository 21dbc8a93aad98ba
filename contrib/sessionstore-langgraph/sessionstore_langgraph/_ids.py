"""How LangGraph's free-text names map onto sessionstore's validated ids, keys and types.

A thread is one session. Its id is ``lg.`` + the thread id with every character outside
``[A-Za-z0-9-]`` written as ``_`` + two hex digits per UTF-8 byte (``_`` itself too), so
distinct thread ids give distinct session ids (and no ``..``, which sessionstore
refuses); an id that would pass sessionstore's 128 characters becomes ``lgh.`` + the
SHA-256 of the thread id. The two prefixes differ, so the rule stays collision-free.
The thread id itself is kept in the session's metadata, which is what listing reads
back.

Inside a thread, events are found by key and type: a checkpoint by a key made of its
namespace and id, a channel value by its namespace, channel and version, and a
checkpoint's pending writes by a type made of its namespace and id. Namespaces and
ids are free text too, so keys and types carry a 128-bit BLAKE2b digest of the
length-prefixed parts instead of the parts themselves.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = [
    "BLOB_TYPE",
    "CAPPED_TAG",
    "LINK_TYPE",
    "MARK_TYPE",
    "MAX_THREAD_TAGS",
    "NS_TYPE",
    "RUN_TYPE",
    "TAG_PREFIX",
    "UNINDEXED",
    "blob_key",
    "checkpoint_key",
    "checkpoint_type",
    "digest",
    "mark_key",
    "metadata_tag",
    "namespace_key",
    "run_index_id",
    "thread_session_id",
    "version_text",
    "writes_key",
    "writes_type",
]

_SAFE: Final = re.compile(r"[A-Za-z0-9-]")
_MAX_ID: Final = 128
#: The type of every channel-value event (they are found by key, never by type).
BLOB_TYPE: Final = "lg.blob"
#: The type of a channel value stored as a link to a value stored whole (``_records``).
LINK_TYPE: Final = "lg.link"
#: The type of the events of a run index session (one per thread the run wrote to).
RUN_TYPE: Final = "lg.run"
#: The type of a thread's namespace markers (one per checkpoint namespace, keyed
#: :func:`namespace_key`; every ``put`` sends its namespace's, stored once).
NS_TYPE: Final = "lg.ns"
#: The type of a checkpoint's mark (keyed :func:`mark_key`, stored once): ``put``
#: appends it just before the checkpoint and each ``put_writes`` before its writes, so
#: every write of the checkpoint comes after it in the thread's log (``aget_tuple``
#: reads the newest checkpoint with its writes from the thread's tail when the mark is
#: there too).
MARK_TYPE: Final = "lg.mk"
#: The prefix of the session tags that index checkpoint metadata (:func:`metadata_tag`).
TAG_PREFIX: Final = "lg.md."
#: How many metadata tags a thread gathers at most (about: a saver that does not know a
#: thread's tags yet adds one put's). A metadata key given a new value every run (a
#: request id, a timestamp) would otherwise grow the thread's session without bound.
MAX_THREAD_TAGS: Final = 64
#: The tag of a thread whose metadata tags reached :data:`MAX_THREAD_TAGS`: it gets no
#: more, and every filtered listing reads it (it may hold any value). Not a digest (those
#: are 32 hex digits), so no metadata value's tag can equal it.
CAPPED_TAG: Final = TAG_PREFIX + "capped"
#: Checkpoint metadata keys not indexed as session tags (their values change every step
#: or run: a thread would gather a tag each time): a listing filtered on them alone
#: reads every thread.
UNINDEXED: Final = frozenset({"step", "run_id"})


def _escape(text: str) -> str:
    out: list[str] = []
    for char in text:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _mapped(prefix: str, name: str) -> str:
    escaped = f"{prefix}.{_escape(name)}"
    if len(escaped) <= _MAX_ID:
        return escaped
    return f"{prefix}h.{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()}"


def thread_session_id(thread_id: str) -> str:
    """The session id of a LangGraph thread: ``lg.`` + the escaped thread id, or
    ``lgh.`` + its SHA-256 when that would be longer than 128 characters."""
    return _mapped("lg", thread_id)


def namespace_key(ns: str) -> str:
    """The event key of the marker of checkpoint namespace ``ns`` in a thread."""
    return f"n.{digest(ns)}"


def run_index_id(run_id: str) -> str:
    """The session id of a run's index (the threads it wrote to): ``lgrun.`` + the
    escaped run id, or ``lgrunh.`` + its SHA-256 when too long."""
    return _mapped("lgrun", run_id)


def digest(*parts: str) -> str:
    """32 hex digits of BLAKE2b over the length-prefixed parts (no two part lists
    encode alike)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def version_text(version: str | int | float) -> str:
    """A channel version as text that keeps its type (``1``, ``1.0`` and ``'1'`` differ)."""
    return f"{type(version).__name__}:{version!r}"


def checkpoint_key(ns: str, checkpoint_id: str) -> str:
    """The event key of checkpoint ``checkpoint_id`` in namespace ``ns``."""
    return f"c.{digest(ns, checkpoint_id)}"


def checkpoint_type(ns: str) -> str:
    """The event type of the checkpoints of namespace ``ns`` (one type per namespace, so
    the newest checkpoint of a namespace is one indexed read)."""
    return f"lg.cp.{digest(ns)}"


def blob_key(ns: str, channel: str, version: str | int | float) -> str:
    """The event key of a channel's value at a version in namespace ``ns``."""
    return f"b.{digest(ns, channel, version_text(version))}"


def writes_type(ns: str, checkpoint_id: str) -> str:
    """The event type of the pending writes of one checkpoint."""
    return f"lg.w.{digest(ns, checkpoint_id)}"


def writes_key(ns: str, checkpoint_id: str, task_id: str, content_digest: str) -> str:
    """The event key of one ``put_writes`` call: the same call delivered twice is stored
    once."""
    return f"w.{digest(ns, checkpoint_id, task_id, content_digest)}"


def mark_key(ns: str, checkpoint_id: str) -> str:
    """The event key of the mark of checkpoint ``checkpoint_id`` in namespace ``ns``."""
    return f"m.{digest(ns, checkpoint_id)}"


def metadata_tag(key: str, value: object) -> str | None:
    """The session tag saying that some checkpoint of the thread has metadata ``key``
    equal to ``value``, for a top-level value that is a bool, a number or a string
    (else ``None``: not indexed; a filter on ``None`` also matches a checkpoint without
    the key). Values equal in Python (``1``, ``1.0``, ``True``) give the same tag, as
    the listing's filter compares them with ``==``."""
    if isinstance(value, bool | int):
        text = f"n:{int(value)}"
    elif isinstance(value, float):
        text = f"n:{int(value)}" if value.is_integer() else f"f:{value!r}"
    elif isinstance(value, str):
        text = f"s:{value}"
    else:
        return None
    return TAG_PREFIX + digest(key, text)
