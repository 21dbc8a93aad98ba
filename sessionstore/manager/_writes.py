"""One atomic, version-checked write of a session's document and/or event log.

The manager never writes without ``expected_version``. A document change plus events
becomes one ``store.commit([UpdateOp, AppendOp])`` (all or nothing); a change of only
one kind uses the store's own ``update_session`` / ``append_events`` (a driver's fast
path, e.g. an append-only event log).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from ..model import AppendOp, EventInput, JSONDict, Session, SessionUpdate, UpdateOp
from ..protocol import SessionStore

__all__ = ["update_kwargs", "write"]

_UPDATE_FIELDS = tuple(f.name for f in fields(SessionUpdate))


def update_kwargs(update: SessionUpdate) -> dict[str, Any]:
    """``update`` as keyword arguments of ``store.update_session``."""
    return {name: getattr(update, name) for name in _UPDATE_FIELDS}


async def write(
    store: SessionStore,
    session_id: str,
    expected_version: int,
    update: SessionUpdate | None,
    events: Sequence[tuple[str, JSONDict]] = (),
) -> Session:
    """Write ``update`` and append ``events`` atomically on top of ``expected_version``."""
    inputs = [EventInput(etype, data) for etype, data in events]
    if update is not None and inputs:
        results = await store.commit(
            [
                UpdateOp(session_id, update, expected_version),
                AppendOp(session_id, inputs, expected_version + 1),
            ]
        )
        last = results[-1]
        assert isinstance(last, Session)
        return last
    if update is not None:
        return await store.update_session(
            session_id, **update_kwargs(update), expected_version=expected_version
        )
    return await store.append_events(session_id, inputs, expected_version=expected_version)
