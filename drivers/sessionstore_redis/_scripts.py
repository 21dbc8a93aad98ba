"""The Lua scripts of the Redis driver, loaded from ``lua/`` and identified by SHA-1."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "APPEND",
    "CLAIM",
    "COMPOSE",
    "CREATE",
    "EVENT",
    "EVENTS",
    "READ",
    "REINDEX",
    "WALK",
    "WALKN",
    "WRITE",
    "Script",
]


@dataclass(frozen=True)
class Script:
    """A script's source and SHA-1 (what EVALSHA names it by)."""

    name: str
    source: bytes
    sha: str
    #: how many leading arguments are the same for every call on one session (packed once
    #: with the keys, see ``_lane.pack_call``)
    fixed: int = 0


def _load(name: str, *parts: str, fixed: int = 0) -> Script:
    root = resources.files(__package__).joinpath("lua")
    source = b"\n".join(root.joinpath(f"{part}.lua").read_bytes() for part in parts)
    sha = hashlib.sha1(source, usedforsecurity=False).hexdigest()
    return Script(name, source, sha, fixed)


def _wrap(name: str, inner: Script, function: str, *outer: str) -> Script:
    """``inner``'s source as ``local function <function>(KEYS, ARGV)``, then the
    ``outer`` parts, the last of which calls it (once per index shard)."""
    root = resources.files(__package__).joinpath("lua")
    source = b"\n".join(
        (
            b"local function %s(KEYS, ARGV)" % function.encode(),
            inner.source,
            b"end",
            *(root.joinpath(f"{part}.lua").read_bytes() for part in outer),
        )
    )
    sha = hashlib.sha1(source, usedforsecurity=False).hexdigest()
    return Script(name, source, sha)


WRITE = _load(
    "write", "blt", "dochead", "doc", "ixcomp", "ixadd", "index", "evlog", "evdrop", "write"
)
# append.lua's short path runs before any helper is defined (each definition costs every
# call); append_touch.lua needs ixcomp.lua's, append_general.lua the rest (grace, index
# prefix and id are the same for every call on a session)
APPEND = _load(
    "append",
    "append",
    "dochead",
    "ixcomp",
    "append_touch",
    "doc",
    "ixadd",
    "evlog",
    "append_general",
    fixed=3,
)
# create.lua's common path returns before any helper is defined; index.lua only for an id
# that still has index entries; dochead.lua and doc.lua only when something holds the id
# (inside create_rest.lua's `if`)
CREATE = _load(
    "create",
    "create",
    "ixcomp",
    "ixadd",
    "create_rest",
    "dochead",
    "doc",
    "create_check",
    "index",
    "create_reindex",
)
REINDEX = _load("reindex", "ixcomp", "ixadd", "index", "reindex")
WALK = _load("walk", "ixcomp", "ixadd", "index", "pieces", "blt", "docread", "walk")
# walk.lua on several shards of one Cluster node: the walk wrapped as a function
WALKN = _wrap("walkn", WALK, "walk", "pieces", "blt", "docread", "walkn")
COMPOSE = _load("compose", "ixcomp", "ixadd", "index", "compose")
CLAIM = _load("claim", "dochead", "doc", "claim")
EVENTS = _load("events", "dochead", "doc", "evlog", "evdrop", "events")
EVENT = _load("event", "dochead", "doc", "event")
READ = _load("read", "pieces", "read")
