"""Entry-point plugin registering the PostgreSQL schemes (lazily, by import string)."""

from __future__ import annotations

from sessionstore import hookimpl
from sessionstore.hookspecs import DriverRegistrar

SCHEMES = ("postgresql", "postgres")


@hookimpl
def sessionstore_register_drivers(register: DriverRegistrar) -> None:
    """Declare the PostgreSQL driver for ``postgresql://`` and ``postgres://``."""
    for scheme in SCHEMES:
        register(scheme, "sessionstore_postgres:PostgresStore", extra="postgres")
