"""Plugin hook specifications (pluggy project name ``"sessionstore"``).

A plugin is a module (or object) with functions marked ``@hookimpl``. Plugins reach us
through the ``sessionstore`` entry-point group, or at run time through
``sessionstore.plugin_manager().register(obj)``.

Store-event hooks are *observers*: synchronous, must not block, called once the write is
durable. Each implementation runs in isolation: one that raises is logged and the others
still run; a write is never failed by an observer. An async observer schedules its own
task (``asyncio.get_running_loop().create_task(...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from .model import Checkpoint, Session

__all__ = ["DriverRegistrar", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("sessionstore")
#: Marker for plugin functions: ``@sessionstore.hookimpl``.
hookimpl = pluggy.HookimplMarker("sessionstore")


class DriverRegistrar(Protocol):
    """The ``register`` callable handed to :func:`sessionstore_register_drivers`."""

    def __call__(self, scheme: str, target: str, *, extra: str | None = None) -> None: ...


@hookspec
def sessionstore_register_drivers(register: DriverRegistrar) -> None:
    """Declare drivers lazily: ``register("acme", "acme_store:AcmeStore", extra=None)``.

    ``target`` is an import string ``"module:Class"``; the module is imported only when a
    URL with that scheme is opened. ``extra`` names the sessionstore extra that installs
    the driver's dependencies (shown when they are missing).
    """


@hookspec
def sessionstore_session_created(store: Any, session: Session) -> None:
    """A session was created (durably)."""


@hookspec
def sessionstore_session_updated(store: Any, session: Session) -> None:
    """A session was changed (data, status, tags, expiry, events...)."""


@hookspec
def sessionstore_session_deleted(store: Any, session_id: str) -> None:
    """A session was deleted (with its events and checkpoints)."""


@hookspec
def sessionstore_session_expired(store: Any, session_id: str) -> None:
    """A session passed its expiry and was marked expired or cleaned up."""


@hookspec
def sessionstore_conflict(store: Any, session_id: str, expected: int, actual: int) -> None:
    """A write was refused by optimistic locking."""


@hookspec
def sessionstore_checkpoint_created(store: Any, checkpoint: Checkpoint) -> None:
    """A checkpoint was saved."""


@hookspec
def sessionstore_backup_created(info: Any) -> None:
    """A backup file was written (``info`` is a ``BackupInfo``)."""
