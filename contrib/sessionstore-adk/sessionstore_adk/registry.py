"""Registration with ADK's service registry: ``sessionstore+<scheme>://`` URIs.

ADK picks a session service by URI scheme (``adk web --session_service_uri ...``) and
already claims ``memory``, ``sqlite``, ``postgresql``, ``mysql`` and ``agentengine``. The
adapter registers every installed sessionstore driver's scheme with the ``sessionstore+``
prefix (``sessionstore+redis://``, ``sessionstore+memory://``, ``sessionstore+file://``,
...) and never one of ADK's own. Call :func:`register_session_services` from the agents
directory's ``services.py``, or name :class:`~sessionstore_adk.SessionStoreService` in
its ``services.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.adk.cli.service_registry import ServiceRegistry, get_service_registry

from sessionstore import installed_drivers

from .service import SCHEME_PREFIX, SessionStoreService

__all__ = ["register_session_services", "session_service_factory"]


def session_service_factory(uri: str, **kwargs: Any) -> SessionStoreService:
    """ADK's factory signature: ``uri`` is ``sessionstore+<scheme>://...``; ``kwargs`` are
    ADK's (``agents_dir``, dropped) and ``--session_db_kwargs`` (store options)."""
    return SessionStoreService(uri, **kwargs)


def register_session_services(
    registry: ServiceRegistry | None = None, *, schemes: Iterable[str] | None = None
) -> list[str]:
    """Register ``sessionstore+<scheme>`` for each scheme (default: every installed
    sessionstore driver) with ``registry`` (default: ADK's global one); returns the
    registered schemes. A prefixed scheme never matches one of ADK's built-ins."""
    target = registry if registry is not None else get_service_registry()
    names = sorted({d.scheme for d in installed_drivers()} if schemes is None else set(schemes))
    registered = []
    for scheme in names:
        full = scheme if scheme.startswith(SCHEME_PREFIX) else SCHEME_PREFIX + scheme
        target.register_session_service(full, session_service_factory)
        registered.append(full)
    return registered
