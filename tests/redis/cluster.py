"""A private Redis Cluster: masters and their replicas as child processes."""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.redis.processes import RedisBinaries, RedisServer, command, start_server

__all__ = [
    "RedisCluster",
    "start_cluster",
]


@dataclass
class RedisCluster:
    """A cluster of child processes: masters first, then their replicas."""

    nodes: list[RedisServer]
    masters: int

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[: self.masters])
        return f"redis+cluster://{seeds}"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def info(self, node: RedisServer) -> dict[str, str]:
        raw = command(node.port, "CLUSTER", "INFO").decode(errors="replace")
        return dict(
            line.split(":", 1) for line in raw.splitlines() if ":" in line and "$" not in line
        )

    def wait_ok(self, timeout: float = 30.0, *, nodes: list[RedisServer] | None = None) -> None:
        deadline = time.monotonic() + timeout
        check = nodes or self.nodes
        while time.monotonic() < deadline:
            try:
                if all(self.info(n).get("cluster_state") == "ok" for n in check):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            synced = 0
            for node in self.nodes[self.masters :]:
                with contextlib.suppress(OSError):
                    info = command(node.port, "INFO", "replication").decode(errors="replace")
                    if "master_link_status:up" in info:
                        synced += 1
            if synced == len(self.nodes) - self.masters:
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster replicas did not sync")


def start_cluster(
    binaries: RedisBinaries,
    workdir: Path,
    *,
    masters: int = 3,
    replicas: int = 1,
    node_timeout_ms: int = 2000,
) -> RedisCluster:
    """A ``masters``-master Cluster with ``replicas`` replicas each, created by redis-cli.
    ``node_timeout_ms``: how long a node may not answer before it is failed over (the
    tests' failovers want it short; a long benchmark on a starved machine, long)."""
    if binaries.cli is None:
        raise RuntimeError("redis-cli is needed to create a cluster")
    nodes = []
    try:
        for index in range(masters * (1 + replicas)):
            node_dir = workdir / f"node{index}"
            node_dir.mkdir()
            nodes.append(
                start_server(
                    binaries,
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--repl-diskless-sync-delay",
                    "0",
                    "--repl-diskless-sync",
                    "yes",
                )
            )
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [
                binaries.cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster = RedisCluster(nodes, masters)
        cluster.wait_ok()
        cluster.wait_replicas_synced()
        return cluster
    except BaseException:
        for node in nodes:
            node.stop()
        raise
