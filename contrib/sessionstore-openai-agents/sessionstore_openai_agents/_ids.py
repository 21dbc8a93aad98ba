"""The mapping from the SDK's session ids (free text) to sessionstore ids (validated).

The rule (docs/adapters/openai-agents.md, "Session ids"):

* every UTF-8 byte of the SDK id outside ``[A-Za-z0-9-]`` is written ``_`` + two lowercase
  hex digits (``_`` itself is ``_5f``, ``.`` is ``_2e``, a space ``_20``), so the result
  holds no ``.`` and decodes back to exactly one SDK id;
* the store id is ``oa.`` + that encoding when it fits sessionstore's 128 characters;
* else (an encoding longer than 125 characters) ``oa-`` + the SHA-256 of the SDK id in
  hex (67 characters).

The two forms differ in their third character (``.`` or ``-``), the first is reversible
and the second is SHA-256, so two different SDK ids never share a store id. Each session
also keeps its SDK id in its metadata (:data:`METADATA_KEY`), so listing returns the SDK
ids of both forms.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = ["HASHED_PREFIX", "METADATA_KEY", "PREFIX", "TAG", "decode_session_id", "store_id"]

#: The prefix of a reversible store id.
PREFIX: Final = "oa."
#: The prefix of a hashed store id (an SDK id too long to encode within 128 characters).
HASHED_PREFIX: Final = "oa-"
#: The tag every session the adapter creates carries (listing filters by it).
TAG: Final = "openai-agents"
#: The metadata key that holds the SDK's session id.
METADATA_KEY: Final = "openai_agents_session_id"
_MAX_ID: Final = 128
_KEEP: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_ENCODED: Final = re.compile(r"(?:[A-Za-z0-9-]|_[0-9a-f]{2})*")


def _utf8(session_id: str) -> bytes:
    # "surrogatepass": a lone surrogate (which UTF-8 cannot encode) maps too, still to one
    # id of its own; writing it is refused by the store (SerializationError: the SDK id in
    # the metadata), as it is by the other adapters. Other text encodes as plain UTF-8.
    return session_id.encode("utf-8", "surrogatepass")


def _encode(session_id: str) -> str:
    return "".join(chr(byte) if byte in _KEEP else f"_{byte:02x}" for byte in _utf8(session_id))


def store_id(session_id: str) -> str:
    """The sessionstore id of the SDK session ``session_id`` (any str).

    >>> store_id("user-42")
    'oa.user-42'
    >>> store_id("user 42/chat.1")
    'oa.user_2042_2fchat_2e1'
    """
    if not isinstance(session_id, str):
        raise TypeError(f"a session id is a str, not {type(session_id).__name__}")
    encoded = _encode(session_id)
    if len(PREFIX) + len(encoded) <= _MAX_ID:
        return PREFIX + encoded
    return HASHED_PREFIX + hashlib.sha256(_utf8(session_id)).hexdigest()


def decode_session_id(stored: str) -> str | None:
    """The SDK id a reversible store id encodes (``None`` for a hashed id or an id the
    adapter did not make; the session's metadata has the SDK id in every case)."""
    if not stored.startswith(PREFIX):
        return None
    encoded = stored[len(PREFIX) :]
    if _ENCODED.fullmatch(encoded) is None:
        return None
    raw = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "_":
            raw.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(encoded[i]))
            i += 1
    try:
        decoded = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    # Only the canonical encoding decodes (an escape of a kept byte, "_41" for "A", is not
    # what store_id makes): one store id per SDK id, and back.
    return decoded if _encode(decoded) == encoded else None
