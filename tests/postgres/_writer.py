"""A writer process for the crash and multi-process tests.

``python -m tests.postgres._writer URL NAMESPACE MODE SESSION_IDS...``

* ``batch``: forever, one ``commit`` appending event ``i`` to every session; prints ``i``
  once the commit returned (an acknowledged write).
* ``bump``: 25 times, read-modify-write ``data.n += 1`` with ``expected_version``
  (re-read on conflict) and append one event; prints ``done``.
"""

from __future__ import annotations

import asyncio
import sys

from sessionstore import AppendOp, SessionConflictError, open_store


async def main(url: str, namespace: str, mode: str, ids: list[str]) -> None:
    async with open_store(url, namespace=namespace) as store:
        if mode == "batch":
            i = 0
            pad = "x" * 4000  # a few pages of WAL per batch: more time inside the transaction
            while True:
                i += 1
                await store.commit(
                    [AppendOp(sid, [{"type": "m", "data": {"i": i, "pad": pad}}]) for sid in ids]
                )
                print(i, flush=True)
        elif mode == "bump":
            sid = ids[0]
            for _ in range(25):
                while True:
                    cur = await store.get_session(sid)
                    assert cur is not None
                    try:
                        await store.update_session(
                            sid, data={"n": cur.data["n"] + 1}, expected_version=cur.version
                        )
                        break
                    except SessionConflictError:
                        continue
                await store.append_events(sid, [{"type": "bump"}])
            print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
