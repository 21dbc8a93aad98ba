"""The entry-point plugin: declares ``acme://`` lazily (the driver is imported on first use)."""

from __future__ import annotations

from sessionstore import hookimpl
from sessionstore.hookspecs import DriverRegistrar


@hookimpl
def sessionstore_register_drivers(register: DriverRegistrar) -> None:
    """Register the ``acme`` URL scheme."""
    register("acme", "acme_sessionstore:AcmeStore")
