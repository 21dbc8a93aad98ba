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

That is key layout 3, every namespace's on one server and Sentinel, and on Cluster a
namespace's that held data before layout 4 existed. Key layout 4 (Cluster, a namespace
created since, recorded in ``P{~0}:layout`` = ``4``) puts each session's keys in its index
shard's slot, behind that shard's tag: ``P{~<k>}:{<id>}:doc|events|...`` with
``k = crc32(id) % shards``, a grouped session's ``P{~<g>}:{<group>}:<id>:doc|...`` with
``g = crc32(group) % shards`` (its stub at its id's ``P{~<k>}:{<id>}:doc``), so that a
write script updates the session's index shard in the same call and a listing's walk
reads the documents of its rows (docs/redis.md, *Key layout*).
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
        #: key layout 4 (Cluster): a session's keys in its index shard's slot
        self.colocated = False
        #: the namespace's key layout marker (Cluster; see ``RedisStore._initialize``)
        self.layout_key = self.index(0) + "layout"

    def use_layout(self, layout: int) -> None:
        """Use key layout ``layout`` (3, or 4: Cluster only; decided when the store opens,
        before any operation)."""
        if layout not in (3, 4):
            raise ValueError(f"unknown key layout {layout}")
        self.colocated = layout == 4
        self._homes.clear()
        tail = "{~*}:{*:doc" if self.colocated else "{*:doc"
        self.doc_pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + tail

    @property
    def layout(self) -> int:
        """The key layout in use (3 or 4)."""
        return 4 if self.colocated else 3

    def home(self, sid: str) -> Loc:
        """The keys of an ungrouped session (and the stub of a grouped one)."""
        loc = self._homes.get(sid)
        if loc is None:  # the same few sessions are written again and again: keep them
            if len(self._homes) >= 4096:
                self._homes.clear()
            if self.colocated:
                base = f"{self.prefix}{{~{self.shard(sid)}}}:{{{sid}}}:"
            else:
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
        if self.colocated:
            base = f"{self.prefix}{{~{self.shard(group)}}}:{{{group}}}:{sid}:"
        else:
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
        """The index shard of a session (stable: CRC-32 of the id; with layout 4 also
        the shard of a group, by its name)."""
        if self.shards == 1:
            return 0
        return zlib.crc32(sid.encode()) % self.shards

    def ix_shard(self, sid: str, group: str | None) -> int:
        """The index shard that holds a session's entry: its id's, or with layout 4 its
        group's for a grouped session (the shard whose slot its keys share)."""
        if group and self.colocated:
            return self.shard(group)
        return self.shard(sid)

    def ix_prefix(self, loc: Loc) -> str:
        """Layout 4: the index shard prefix of the session at ``loc`` (its keys' slot)."""
        return self.index(self.ix_shard(loc.id, loc.group))

    def index(self, shard: int) -> str:
        """The key prefix of index shard ``shard``."""
        return f"{self.prefix}{{~{shard}}}:"

    def parse_doc_key(self, key: str) -> tuple[str, str | None] | None:
        """``(id, group)`` of a doc key found by SCAN (``None`` for other keys)."""
        if not key.startswith(self.prefix) or not key.endswith(":doc"):
            return None
        rest = key[len(self.prefix) : -4]
        if self.colocated:  # "{~k}:" first
            if not rest.startswith("{~"):
                return None
            close = rest.find("}:")
            if close < 0:
                return None
            rest = rest[close + 2 :]
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
