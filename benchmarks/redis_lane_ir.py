"""Issue 21, the `redislane` branch: the client's instructions per call of the Redis
lane (``create_session``, ``get_session``, ``append_events``), counted by callgrind.

One process, one store on a private ``redis-server`` (started here on a free port, never
6379): ``--warm`` calls of each kind, then ``--creates`` creates, ``--gets`` gets of one
2 KB session and ``--appends`` appends of one event to it. Run it under callgrind twice
with one count changed; the difference of the two totals over the difference of the
counts is that call's client instructions (start-up and the warm-up cancel)::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/a.out \\
        .venv/bin/python -m benchmarks.redis_lane_ir --creates 100
    valgrind --tool=callgrind --callgrind-out-file=/tmp/b.out \\
        .venv/bin/python -m benchmarks.redis_lane_ir --creates 300

The server is not under callgrind (only the Python process is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time

from sessionstore import Session, open_store

from .bench_memory import EVENT, session_doc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _run(url: str, warm: int, creates: int, gets: int, appends: int) -> None:
    doc = session_doc()
    async with open_store(url, namespace="lane-ir") as store:

        async def create() -> Session:
            return await store.create_session(
                processor_id="agent-7", data=doc, tags={"prod", "eu"}, metadata={"user": "u1"}
            )

        s = await create()
        for _ in range(warm):
            await create()
            await store.get_session(s.id)
            await store.append_events(s.id, [EVENT])
        for _ in range(creates):
            await create()
        for _ in range(gets):
            await store.get_session(s.id)
        for _ in range(appends):
            await store.append_events(s.id, [EVENT])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--creates", type=int, default=100)
    parser.add_argument("--gets", type=int, default=100)
    parser.add_argument("--appends", type=int, default=100)
    a = parser.parse_args()
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="lane-ir-")
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(_run(f"redis://127.0.0.1:{port}", a.warm, a.creates, a.gets, a.appends))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
