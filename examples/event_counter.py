"""An observer plugin that counts store events, and a manager workload that feeds it.

The plugin is this module's ``@sessionstore.hookimpl`` functions. An application
registers it at run time with ``sessionstore.plugin_manager().register(module)``; a
package ships it through the ``sessionstore`` entry-point group instead::

    [project.entry-points.sessionstore]
    event-counter = "my_package.event_counter"

Hooks are synchronous observers: they run after the write is durable, must not block,
and one that raises is logged without failing the write. Run: ``python event_counter.py``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import sessionstore
from sessionstore import Checkpoint, ManagerConfig, Session, SessionPersistenceManager

#: Events seen, by kind (module state is fine for a demo; a real plugin might export
#: these to Prometheus or StatsD).
COUNTS: Counter[str] = Counter()


@sessionstore.hookimpl
def sessionstore_session_created(store: Any, session: Session) -> None:
    """A session was created."""
    COUNTS["created"] += 1


@sessionstore.hookimpl
def sessionstore_session_updated(store: Any, session: Session) -> None:
    """A session changed (data, status, events...)."""
    COUNTS["updated"] += 1


@sessionstore.hookimpl
def sessionstore_session_deleted(store: Any, session_id: str) -> None:
    """A session was deleted."""
    COUNTS["deleted"] += 1


@sessionstore.hookimpl
def sessionstore_session_expired(store: Any, session_id: str) -> None:
    """A session expired (marked or cleaned up)."""
    COUNTS["expired"] += 1


@sessionstore.hookimpl
def sessionstore_conflict(store: Any, session_id: str, expected: int, actual: int) -> None:
    """A write was refused by optimistic locking."""
    COUNTS["conflict"] += 1


@sessionstore.hookimpl
def sessionstore_checkpoint_created(store: Any, checkpoint: Checkpoint) -> None:
    """A checkpoint was saved."""
    COUNTS["checkpoint"] += 1


async def workload() -> None:
    """Drive a manager through every kind of event."""
    clock = sessionstore.ManualClock()  # so that expiry happens without waiting
    store = sessionstore.open_store("memory://", clock=clock)
    config = ManagerConfig(persist_interval=None, cleanup_enabled=False)
    async with store, SessionPersistenceManager(store, config=config) as manager:
        ms = await manager.create_managed_session(processor_id="agent-1", ttl=60)
        for step in range(3):
            await ms.add_interaction({"step": step})
        await ms.checkpoint("after-3-steps")
        # another worker changes the session: our next write is refused, not lost
        await store.update_session(ms.id, merge_data={"touched_by": "someone else"})
        try:
            await ms.update(step=3, persist=True)
        except sessionstore.SessionConflictError:
            await ms.reload()
        await ms.complete("done")
        scratch = await manager.create_managed_session(processor_id="agent-1")
        await manager.delete_session(scratch.id)
        clock.advance(120)
        await manager.cleanup_expired_sessions()


def main() -> None:
    """Register this module as a plugin, run the workload, print the counts."""
    plugin = sys.modules[__name__]
    pm = sessionstore.plugin_manager()
    pm.register(plugin, name="event-counter-example")
    try:
        asyncio.run(workload())
    finally:
        pm.unregister(plugin)
    print("events seen by the plugin:")
    for kind in ("created", "updated", "checkpoint", "conflict", "deleted", "expired"):
        print(f"  {kind:<10} {COUNTS[kind]}")


if __name__ == "__main__":
    main()
