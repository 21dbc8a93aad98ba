"""The file-system driver: ``file:///abs/path`` and ``file://./relative``.

Sessions live as human-readable files (one directory per session: a JSON document, a
JSON Lines event log, checkpoint files; every record checksummed), written durably and
atomically, safe for several processes at once, with a rebuildable SQLite index for
queries. The layout and guarantees are described in ``docs/filesystem.md``.

The names are imported lazily, so loading the entry-point plugin
(``sessionstore_filesystem.plugin``) does not load the driver itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._doctor import DoctorReport
    from ._store import FileOptions, FileStore

__all__ = ["DoctorReport", "FileOptions", "FileStore"]

_HOMES = {"DoctorReport": "._doctor", "FileOptions": "._store", "FileStore": "._store"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
