"""The Lua scripts of the Redis driver, loaded from ``lua/`` and identified by SHA-1."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = ["APPEND", "CLAIM", "EVENTS", "READ", "REINDEX", "WALK", "WRITE", "Script"]


@dataclass(frozen=True)
class Script:
    """A script's source and SHA-1 (what EVALSHA names it by)."""

    name: str
    source: bytes
    sha: str


def _load(name: str, *parts: str) -> Script:
    root = resources.files(__package__).joinpath("lua")
    source = b"\n".join(root.joinpath(f"{part}.lua").read_bytes() for part in parts)
    return Script(name, source, hashlib.sha1(source, usedforsecurity=False).hexdigest())


WRITE = _load("write", "ixadd", "index", "write")
APPEND = _load("append", "ixadd", "append")
REINDEX = _load("reindex", "ixadd", "index", "reindex")
WALK = _load("walk", "ixadd", "index", "walk")
CLAIM = _load("claim", "claim")
EVENTS = _load("events", "events")
READ = _load("read", "read")
