"""The five-minute tour (the README's first example): create, update, events, query, transaction.

Run it with ``python3 scripts/dev.py demo`` (or ``python examples/quickstart.py``).
The URL comes from the first argument, else $SESSIONSTORE_URL, else memory://.
"""

from __future__ import annotations

import asyncio
import sys

from sessionstore import QueryOptions, SessionConflictError, SessionFilter, open_store


async def main(url: str | None = None) -> None:
    """Walk through the API once and print what happens."""
    async with open_store(url) as store:
        print(f"store: {store!r}")
        s = await store.create_session(
            processor_id="agent-7",
            data={"goal": "triage"},
            tags={"prod"},
            metadata={"user": "u1"},
            ttl=3600,
        )
        print(f"created {s.id} (version {s.version}, expires {s.expires_at:%H:%M:%S})")
        s = await store.update_session(s.id, merge_data={"step": 2}, expected_version=s.version)
        print(f"updated: data={s.data} version={s.version}")

        try:  # optimistic locking: a stale version is refused and nothing is written
            await store.update_session(s.id, merge_data={"step": 99}, expected_version=1)
        except SessionConflictError as exc:
            print(f"refused stale write: {exc}")

        await store.append_events(s.id, [{"type": "tool_call", "data": {"name": "search"}}])
        recent = await store.get_events(s.id, last=20)
        print(f"events: {[(e.seq, e.type) for e in recent]}")

        page = await store.list_sessions(
            SessionFilter(processor_id="agent-7", tags_all={"prod"}),
            QueryOptions(sort_by="updated_at", order="desc", limit=50),
        )
        print(f"query found {len(page)} session(s): {page.ids}")

        async with store.transaction() as tx:  # all or nothing
            await tx.update_session(s.id, status="completed", expected_version=s.version + 1)
            await tx.create_session(processor_id="agent-7", data={"parent": s.id})
        print(f"transaction committed {len(tx.results)} writes")
        print(f"sessions now: {await store.count_sessions()}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
