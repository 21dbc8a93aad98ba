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


WRITE = _load("write", "ixcomp", "ixadd", "index", "evlog", "evdrop", "write")
# append.lua's short path runs before ixadd.lua and evlog.lua define the helpers it does
# not use (grace, index prefix and id are the same for every call on a session)
APPEND = _load("append", "ixcomp", "append", "ixadd", "evlog", "append_general", fixed=3)
# index.lua only for an id that still has index entries (after the common path returned)
CREATE = _load("create", "ixcomp", "ixadd", "create", "index", "create_reindex")
REINDEX = _load("reindex", "ixcomp", "ixadd", "index", "reindex")
WALK = _load("walk", "ixcomp", "ixadd", "index", "pieces", "walk")
COMPOSE = _load("compose", "ixcomp", "ixadd", "index", "compose")
CLAIM = _load("claim", "claim")
EVENTS = _load("events", "evlog", "evdrop", "events")
EVENT = _load("event", "event")
READ = _load("read", "pieces", "read")
