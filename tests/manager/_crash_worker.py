"""A worker process for the crash test: an agent writing interactions until it is killed.

``python _crash_worker.py URL MODE`` with MODE ``interaction`` (persist on every
interaction) or ``interval`` (persist every 50 ms). Every interaction also sets
``data["n"]`` to its number, so the session document and the event log must always
agree. The worker prints (flushed at once):

* ``SESSION <id>`` first;
* ``ACK <n>`` when ``add_interaction`` #n returned (per-interaction mode: durable now);
* ``STAGED <n>`` and ``PERSISTED <n>`` (interval mode: staged, then durable up to n).
"""

from __future__ import annotations

import asyncio
import sys

from sessionstore import ManagerConfig, SessionPersistenceManager, open_store


async def main(url: str, mode: str) -> None:
    per_interaction = mode == "interaction"
    config = ManagerConfig(
        persist_on_interaction=per_interaction,
        persist_interval=None if per_interaction else 0.05,
        cleanup_enabled=False,
    )
    async with open_store(url) as store, SessionPersistenceManager(store, config=config) as m:
        ms = await m.create_managed_session(data={"n": 0})
        print(f"SESSION {ms.id}", flush=True)
        persisted = 0
        n = 0
        while True:
            n += 1
            await ms.update(n=n)
            await ms.add_interaction({"n": n})
            if per_interaction:
                print(f"ACK {n}", flush=True)
            else:
                print(f"STAGED {n}", flush=True)
                durable = ms.session.data["n"]
                if durable != persisted:
                    persisted = durable
                    print(f"PERSISTED {durable}", flush=True)
                await asyncio.sleep(0.002)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
