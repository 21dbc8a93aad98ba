"""The key layout (documented in ``docs/redis.md``).

Every key of a namespace starts with ``P = <key_prefix><namespace or "_">:``.

* a session: ``P{<id>}:doc`` (a string, layout 3, ``lua/dochead.lua``; a hash in layout
  2), ``P{<id>}:events`` (sorted set; a list in layout
  1, see ``lua/evlog.lua``), ``P{<id>}:etypes`` (sorted set, the event type index),
  ``P{<id>}:ekeys`` (hash, the event key index), ``P{<id>}:ckpt`` (hash);
* a session created with a ``group``: ``P{<group>}:<id>:doc|events|etypes|ekeys|ckpt`` (one slot for
  the whole group), plus a stub ``P{<id>}:doc`` = ``\x03G<group>`` (layout 2: a hash
  ``{grp: <group>}``) so that the session is found from its id;
* index shard ``k``: ``P{~<k>}:<name>`` (``~`` never starts an id, so index keys never
  share a hash tag with a session).
"""

from __future__ import annotations

import re
import zlib
from typing import Final, NamedTuple

__all__ = ["Keys", "Loc"]

_GLOB_SPECIAL: Final = re.compile(r"([*?\[\]\\])")


class Loc(NamedTuple):
    """Where one session's keys live (a named tuple: built on every operation, and a
    frozen dataclass costs several times more to build)."""

    id: str
    group: str | None
    doc: str
    events: str
    ckpt: str
    etypes: str
    ekeys: str


class Keys:
    """Key names of one namespace."""

    def __init__(self, key_prefix: str, namespace: str, shards: int) -> None:
        self.prefix = f"{key_prefix}{namespace or '_'}:"
        self.shards = shards
        self.doc_pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "{*:doc"
        self._homes: dict[str, Loc] = {}

    def home(self, sid: str) -> Loc:
        """The keys of an ungrouped session (and the stub of a grouped one)."""
        loc = self._homes.get(sid)
        if loc is None:  # the same few sessions are written again and again: keep them
            if len(self._homes) >= 4096:
                self._homes.clear()
            base = f"{self.prefix}{{{sid}}}:"
            loc = self._homes[sid] = Loc(
                sid,
                None,
                base + "doc",
                base + "events",
                base + "ckpt",
                base + "etypes",
                base + "ekeys",
            )
        return loc

    def grouped(self, sid: str, group: str) -> Loc:
        """The keys of a session in ``group``."""
        base = f"{self.prefix}{{{group}}}:{sid}:"
        return Loc(
            sid,
            group,
            base + "doc",
            base + "events",
            base + "ckpt",
            base + "etypes",
            base + "ekeys",
        )

    def loc(self, sid: str, group: str | None) -> Loc:
        """``grouped`` or ``home``."""
        return self.home(sid) if group is None else self.grouped(sid, group)

    def shard(self, sid: str) -> int:
        """The index shard of a session (stable: CRC-32 of the id)."""
        if self.shards == 1:
            return 0
        return zlib.crc32(sid.encode()) % self.shards

    def index(self, shard: int) -> str:
        """The key prefix of index shard ``shard``."""
        return f"{self.prefix}{{~{shard}}}:"

    def parse_doc_key(self, key: str) -> tuple[str, str | None] | None:
        """``(id, group)`` of a doc key found by SCAN (``None`` for other keys)."""
        if not key.startswith(self.prefix) or not key.endswith(":doc"):
            return None
        rest = key[len(self.prefix) : -4]
        if not rest.startswith("{") or rest.startswith("{~"):
            return None
        close = rest.find("}")
        if close < 0:
            return None
        tag, tail = rest[1:close], rest[close + 1 :]
        if tail == "":
            return tag, None
        if tail.startswith(":") and tail[1:]:
            return tail[1:], tag
        return None
