"""Driver discovery and the plugin manager.

Drivers are found through pluggy plugins in the ``sessionstore`` entry-point group (the
built-in drivers are registered exactly that way), or registered at run time with
:func:`register_driver`. Picking a driver imports only that driver. A plugin that fails to
import is logged and reported by :func:`broken_plugins`; it never breaks the others.
:func:`check_driver` imports one driver on purpose, to tell whether its dependencies are
installed (``sessionstore drivers`` shows that for each driver).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Final

import pluggy

from . import hookspecs, observers
from .errors import ConfigurationError, DriverNotFoundError
from .observers import has_observers, notify
from .options import redact_url

if TYPE_CHECKING:
    from .base import BaseSessionStore

__all__ = [
    "DriverInfo",
    "broken_plugins",
    "check_driver",
    "get_driver",
    "has_observers",
    "installed_drivers",
    "notify",
    "open_store",
    "plugin_manager",
    "register_driver",
]

log = logging.getLogger("sessionstore.registry")

ENTRY_POINT_GROUP: Final = "sessionstore"
_SCHEME_CHARS: Final = set("abcdefghijklmnopqrstuvwxyz0123456789+-.")


@dataclass(frozen=True)
class DriverInfo:
    """One registered driver: its URL scheme, where it lives, and who registered it.

    ``package`` and ``version`` name the installed distribution whose entry point
    registered the driver (``None`` for a driver registered at run time).
    """

    scheme: str
    target: str
    plugin: str
    extra: str | None = None
    package: str | None = None
    version: str | None = None


class _Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("sessionstore")
        self.pm.add_hookspecs(hookspecs)
        self.drivers: dict[str, DriverInfo] = {}
        self.classes: dict[str, type[BaseSessionStore]] = {}
        self.broken: dict[str, str] = {}
        self.loaded = False

    def _registrar(
        self, plugin: str, package: str | None = None, version: str | None = None
    ) -> Callable[..., None]:
        def register(scheme: str, target: str, *, extra: str | None = None) -> None:
            scheme = _check_scheme(scheme)
            if scheme in self.drivers and self.drivers[scheme].target != target:
                log.warning(
                    "driver scheme %r from plugin %r replaces %r",
                    scheme,
                    plugin,
                    self.drivers[scheme],
                )
            self.drivers[scheme] = DriverInfo(scheme, target, plugin, extra, package, version)

        return register

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must never break the others
                self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "sessionstore plugin %r failed to load: %s", ep.name, self.broken[ep.name]
                )
                continue
            dist = ep.dist
            if dist is None:
                self._call_register(ep.name, plugin)
            else:
                self._call_register(ep.name, plugin, dist.metadata["Name"], dist.version)

    def _call_register(
        self, name: str, plugin: Any, package: str | None = None, version: str | None = None
    ) -> None:
        try:
            observers.call_one(
                self.pm,
                "sessionstore_register_drivers",
                plugin,
                register=self._registrar(name, package, version),
            )
        except Exception as exc:
            self.broken[name] = f"{type(exc).__name__}: {exc}"
            log.warning("sessionstore plugin %r failed to register drivers: %s", name, exc)


_registry = _Registry()


def _check_scheme(scheme: str) -> str:
    if not isinstance(scheme, str) or not scheme or not set(scheme.lower()) <= _SCHEME_CHARS:
        raise ConfigurationError(f"invalid URL scheme {scheme!r}")
    return scheme.lower()


def plugin_manager() -> pluggy.PluginManager:
    """The pluggy plugin manager (entry-point plugins loaded). Register observers here."""
    _registry.load()
    return _registry.pm


def register_driver(
    scheme: str, driver: type[BaseSessionStore] | str, *, extra: str | None = None
) -> None:
    """Register a driver class (or an import string ``"module:Class"``) for a scheme.

    For applications and tests; a runtime registration replaces an earlier one.
    """
    _registry.load()
    scheme = _check_scheme(scheme)
    if isinstance(driver, str):
        _registry.classes.pop(scheme, None)
        _registry.drivers[scheme] = DriverInfo(scheme, driver, "<runtime>", extra)
        return
    target = f"{driver.__module__}:{driver.__qualname__}"
    _registry.drivers[scheme] = DriverInfo(scheme, target, "<runtime>", extra)
    _registry.classes[scheme] = driver


def unregister_driver(scheme: str) -> None:
    """Forget a driver registered for ``scheme`` (mostly for tests)."""
    _registry.drivers.pop(scheme.lower(), None)
    _registry.classes.pop(scheme.lower(), None)


def installed_drivers() -> list[DriverInfo]:
    """Every registered driver, sorted by scheme."""
    _registry.load()
    return sorted(_registry.drivers.values(), key=lambda d: d.scheme)


def broken_plugins() -> dict[str, str]:
    """Plugins that failed to load: name -> reason."""
    _registry.load()
    return dict(_registry.broken)


def check_driver(scheme: str) -> str | None:
    """Why the driver for ``scheme`` cannot be used, or ``None`` when it loads.

    Imports the driver (and so its dependencies, e.g. redis-py for ``redis://``): a
    driver whose extra is not installed answers ``"ModuleNotFoundError: No module named
    'redis'; install it with: pip install 'sessionstore[redis]'"``. A scheme no driver
    is registered for answers with the :class:`DriverNotFoundError` message.
    """
    try:
        get_driver(scheme)
    except DriverNotFoundError as exc:
        reason = exc.reason or str(exc)
        if exc.extra:
            reason += f"; install it with: pip install 'sessionstore[{exc.extra}]'"
        return reason
    return None


def get_driver(scheme: str) -> type[BaseSessionStore]:
    """The driver class for ``scheme``, imported on first use.

    Raises :class:`DriverNotFoundError` (listing installed drivers, and the extra to
    install when the driver's dependencies are missing).
    """
    _registry.load()
    scheme = _check_scheme(scheme)
    cls = _registry.classes.get(scheme)
    if cls is not None:
        return cls
    info = _registry.drivers.get(scheme)
    if info is None:
        raise DriverNotFoundError(
            scheme, _registry.drivers, broken=[f"{k} ({v})" for k, v in _registry.broken.items()]
        )
    module_name, _, attr = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
        loaded = getattr(module, attr) if attr else module
    except ImportError as exc:
        raise DriverNotFoundError(
            scheme, _registry.drivers, extra=info.extra, reason=f"{type(exc).__name__}: {exc}"
        ) from exc
    except AttributeError as exc:
        raise DriverNotFoundError(scheme, _registry.drivers, reason=str(exc)) from exc
    if not (isinstance(loaded, type) and hasattr(loaded, "from_url")):
        raise DriverNotFoundError(
            scheme, _registry.drivers, reason=f"{info.target} is not a store class"
        )
    _registry.classes[scheme] = loaded
    return loaded


def open_store(url: str | None = None, **options: Any) -> BaseSessionStore:
    """Build the store for ``url`` (not yet initialised: use ``async with`` or ``initialize``).

    Without a URL, ``$SESSIONSTORE_URL`` is used, else ``memory://``. URL query parameters
    are validated against the driver's typed options; keyword ``options`` override them
    (``clock=`` injects a clock).
    """
    if url is None:
        url = os.environ.get("SESSIONSTORE_URL") or "memory://"
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"not a store URL: {redact_url(str(url))!r} (expected scheme://...)"
        )
    scheme = url.split("://", 1)[0]
    return get_driver(scheme).from_url(url, **options)


# Observers are called by sessionstore.observers (base and backup use that module);
# the registry only tells it where the plugin manager is.
observers.attach(lambda: _registry.pm)
