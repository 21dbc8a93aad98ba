"""Entry-point plugin registering the Redis schemes (lazily, by import string)."""

from __future__ import annotations

from sessionstore import hookimpl
from sessionstore.hookspecs import DriverRegistrar

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


@hookimpl
def sessionstore_register_drivers(register: DriverRegistrar) -> None:
    """Declare the Redis driver for every scheme it serves."""
    for scheme in SCHEMES:
        register(scheme, "sessionstore_redis:RedisStore", extra="redis")
