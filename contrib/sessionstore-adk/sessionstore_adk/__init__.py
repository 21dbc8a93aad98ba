"""Google ADK session service over sessionstore.

``SessionStoreService`` is an ADK ``BaseSessionService`` backed by any sessionstore store;
``register_session_services()`` makes ``sessionstore+<scheme>://`` URIs work with ADK's
service registry (``adk web --session_service_uri sessionstore+redis://...``).
"""

from __future__ import annotations

from .migrate import copy_sessions
from .registry import register_session_services, session_service_factory
from .service import EVENT_TYPE, SCHEME_PREFIX, SessionStoreService, store_url

__all__ = [
    "EVENT_TYPE",
    "SCHEME_PREFIX",
    "SessionStoreService",
    "copy_sessions",
    "register_session_services",
    "session_service_factory",
    "store_url",
]
