"""A private Sentinel setup: a master, a replica and one sentinel watching them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from tests.redis.processes import (
    RedisBinaries,
    RedisServer,
    command,
    free_port,
    spawn,
    start_server,
)

__all__ = [
    "SentinelSetup",
    "start_sentinel",
]


@dataclass
class SentinelSetup:
    """A master, a replica and one sentinel watching them."""

    master: RedisServer
    replica: RedisServer
    sentinel: RedisServer
    service: str = "mymaster"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.stop()

    def master_port(self) -> int:
        """The master's port as the sentinel reports it now."""
        reply = command(self.sentinel.port, "SENTINEL", "get-master-addr-by-name", self.service)
        found = re.findall(rb"\$\d+\r\n(\d+)\r\n", reply)
        return int(found[-1]) if found else 0


def start_sentinel(
    binaries: RedisBinaries, workdir: Path, *, down_after_ms: int = 2000
) -> SentinelSetup:
    """Master + replica (in sync) + a sentinel (quorum 1) on free loopback ports. The
    sentinel calls the master down after ``down_after_ms`` without an answer."""
    assert binaries.sentinel is not None
    for name in ("master", "replica", "sentinel"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    master = start_server(binaries, workdir / "master", "--repl-diskless-sync-delay", "0")
    # no diskless-sync delay on the replica either: promoted by a failover, it would make
    # the old master, back as its replica, wait 5 s (the default) for its first sync
    replica = start_server(
        binaries,
        workdir / "replica",
        "--replicaof",
        "127.0.0.1",
        str(master.port),
        "--repl-diskless-sync-delay",
        "0",
    )
    sdir = workdir / "sentinel"
    port = free_port()
    conf = sdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {sdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds mymaster {down_after_ms}\n"
        "sentinel failover-timeout mymaster 10000\n"
    )
    if binaries.sentinel[-1] == "--sentinel":  # redis-server <conf> --sentinel
        args = [binaries.sentinel[0], str(conf), "--sentinel"]
    else:
        args = [*binaries.sentinel, str(conf)]
    sentinel = RedisServer(port, spawn(args, sdir, port), sdir, args)
    try:
        sentinel.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            known = str(master.port).encode() in command(
                port, "SENTINEL", "get-master-addr-by-name", "mymaster"
            )
            synced = b"master_link_status:up" in command(replica.port, "INFO", "replication")
            if known and synced:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the sentinel setup did not come up")
    except BaseException:
        for server in (sentinel, replica, master):
            server.stop()
        raise
    return SentinelSetup(master, replica, sentinel)


# --------------------------------------------------------------------------- fixtures
