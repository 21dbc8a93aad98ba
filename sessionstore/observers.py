"""Observer hooks: telling plugins what happened, each in isolation (guide: "Observing writes").

Stores and backups call :func:`notify` after a write; the plugin manager it calls into is
the registry's (``sessionstore.registry.plugin_manager()``), attached with :func:`attach`
when the registry is imported, so this module needs nothing of driver discovery and
``base`` needs nothing of the registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["attach", "call_one", "has_observers", "notify"]

log = logging.getLogger("sessionstore.registry")

_source: Callable[[], pluggy.PluginManager] | None = None


def attach(source: Callable[[], pluggy.PluginManager]) -> None:
    """Where observers are registered: ``source()`` returns the plugin manager."""
    global _source
    _source = source


def _only(pm: pluggy.PluginManager, hook: str, plugin: object) -> pluggy.HookCaller:
    """A caller of ``hook`` that reaches ``plugin``'s implementation only (pluggy's own
    ``subset_hook_caller``: argument selection and call rules stay pluggy's)."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, remove_plugins=others)


def call_one(pm: pluggy.PluginManager, hook: str, plugin: object, **kwargs: Any) -> Any:
    """Call ``plugin``'s implementation of ``hook`` alone, through pluggy's public API."""
    return _only(pm, hook, plugin)(**kwargs)


def notify(hook: str, **kwargs: Any) -> None:
    """Call every implementation of an observer hook, each in isolation: one that raises
    is logged and the others still run.

    The order is pluggy's own call order (``tryfirst`` first, ``trylast`` last, otherwise
    the most recently registered first), each implementation called through pluggy's
    public API. Observer hooks take no hook wrappers: a wrapper implementation of one is
    skipped (with a warning), since a wrapper around one isolated call would wrap nothing.
    """
    if _source is None:
        return
    pm = _source()
    # get_hookimpls() lists them in the reverse of pluggy's call order
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        if impl.wrapper or impl.hookwrapper:
            log.warning(
                "sessionstore observer %r implements %s as a hook wrapper: skipped "
                "(observer hooks take no wrappers)",
                impl.plugin_name,
                hook,
            )
            continue
        try:
            call_one(pm, hook, impl.plugin, **kwargs)
        except Exception:
            log.exception("sessionstore observer %r failed in %s (ignored)", impl.plugin_name, hook)


def has_observers(hook: str) -> bool:
    """True when some plugin implements ``hook`` (lets stores skip building arguments)."""
    return _source is not None and bool(getattr(_source().hook, hook).get_hookimpls())
