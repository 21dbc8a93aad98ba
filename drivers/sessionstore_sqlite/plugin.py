"""Entry-point plugin registering the ``sqlite://`` scheme (lazily, by import string)."""

from __future__ import annotations

from sessionstore import hookimpl
from sessionstore.hookspecs import DriverRegistrar


@hookimpl
def sessionstore_register_drivers(register: DriverRegistrar) -> None:
    """Declare the SQLite driver."""
    register("sqlite", "sessionstore_sqlite:SqliteStore")
