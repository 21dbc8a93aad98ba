"""Every private name of the OpenAI Agents SDK this adapter relies on, in one place.

The SDK's history compaction (``agents.memory.OpenAIResponsesCompactionSession``) looks
two optional hooks up on the session it wraps, by ``getattr`` on private names, and
builds a private snapshot type. They are not part of the SDK's public API, so a release
may move them; the adapter then still works (the SDK falls back to clear + add, and
:func:`compaction_snapshot` returns ``None``), only without atomic compaction.
``tests/test_probes.py`` runs :func:`probe` and fails, naming what moved, so a new SDK
release is checked before its range is admitted in ``pyproject.toml``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from agents import TResponseInputItem
from agents.memory import openai_responses_compaction_session as compaction_module
from agents.memory import session as session_module

if TYPE_CHECKING:
    from agents.memory.session import _CompactionSnapshot

__all__ = [
    "REPLACE_HOOK",
    "SNAPSHOT_CLASS",
    "SNAPSHOT_FIELDS",
    "SNAPSHOT_HOOK",
    "Probe",
    "compaction_snapshot",
    "probe",
]

#: Looked up on the wrapped session *instance*: ``(limit, *, prune_prefix=None) ->
#: _CompactionSnapshot | None``, the bounded read whose suffix can be replaced atomically.
SNAPSHOT_HOOK: Final = "_get_compaction_snapshot"
#: Looked up on the wrapped session's *type*: ``(self, items) -> bool``, the whole-history
#: atomic replacement (``False``: not handled, the SDK clears and adds instead).
REPLACE_HOOK: Final = "_atomic_replace_items"
#: The snapshot type, in ``agents.memory.session``.
SNAPSHOT_CLASS: Final = "_CompactionSnapshot"
SNAPSHOT_FIELDS: Final = ("items", "complete", "replace_suffix")


@dataclass(frozen=True)
class Probe:
    """One private name the adapter needs: where the SDK has it, and whether it is there."""

    name: str
    module: str
    found: bool
    detail: str


def _lookup(module: ModuleType, pattern: str) -> bool:
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    return re.search(pattern, source) is not None


def probe() -> list[Probe]:
    """Check each private name against the installed SDK."""
    snapshot = getattr(session_module, SNAPSHOT_CLASS, None)
    fields = (
        tuple(f.name for f in dataclasses.fields(snapshot))
        if snapshot is not None and dataclasses.is_dataclass(snapshot)
        else ()
    )
    where = compaction_module.__name__
    return [
        Probe(
            SNAPSHOT_CLASS,
            session_module.__name__,
            fields == SNAPSHOT_FIELDS,
            f"a dataclass with fields {SNAPSHOT_FIELDS}, found {fields or snapshot!r}",
        ),
        Probe(
            SNAPSHOT_HOOK,
            where,
            _lookup(
                compaction_module, rf'getattr\(\s*self\.underlying_session,\s*"{SNAPSHOT_HOOK}"'
            ),
            "getattr(self.underlying_session, ...) in the compaction session",
        ),
        Probe(
            REPLACE_HOOK,
            where,
            _lookup(
                compaction_module,
                rf'getattr\(\s*type\(self\.underlying_session\),\s*"{REPLACE_HOOK}"',
            ),
            "getattr(type(self.underlying_session), ...) in the compaction session",
        ),
    ]


def compaction_snapshot(
    items: list[TResponseInputItem],
    complete: bool,
    replace_suffix: Callable[[int, list[TResponseInputItem]], Awaitable[bool]],
) -> _CompactionSnapshot | None:
    """The SDK's snapshot value (``None`` when this SDK has no such type: the SDK then
    reads and replaces through the public methods)."""
    snapshot: Any = getattr(session_module, SNAPSHOT_CLASS, None)
    if snapshot is None:
        return None
    made: _CompactionSnapshot = snapshot(items, complete, replace_suffix)
    return made
