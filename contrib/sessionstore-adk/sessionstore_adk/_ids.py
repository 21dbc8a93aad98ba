"""The id rule: ADK's free-text names mapped to sessionstore ids, groups and tags.

ADK names sessions by three free-text strings (``app_name``, ``user_id``, ``session_id``);
sessionstore ids are ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``. Every stored name is the
SHA-256 of a canonical, length-safe encoding of the names it stands for, with a distinct
first element per kind, so two different inputs never meet (short of a SHA-256 collision),
whatever characters or lengths they have. The original names are kept in the session's
metadata, and every read compares them, so even such a collision would be refused instead
of returning another user's session.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Final

__all__ = [
    "GROUP_PREFIX",
    "PROCESSOR_ID",
    "app_state_id",
    "app_tag",
    "group_id",
    "session_id",
    "user_state_id",
    "user_tag",
]

#: ``processor_id`` of every session the adapter writes (a filter for sessionstore tools).
PROCESSOR_ID: Final = "google-adk"
GROUP_PREFIX: Final = "adk-g-"


# json.dumps(parts, ensure_ascii=True, separators=(",", ":")) without building an encoder
# per call (the same bytes: the stored ids must never change).
_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


@functools.lru_cache(maxsize=1024)
def _digest(*parts: str) -> str:
    # A JSON array of strings is an injective encoding (quotes and separators are escaped
    # inside the strings; ensure_ascii also escapes lone surrogates, which UTF-8 cannot
    # encode). Cached: every call of the service derives its app's and user's ids again.
    encoded = _ENCODER.encode(list(parts))
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


def session_id(app_name: str, user_id: str, adk_session_id: str) -> str:
    """The sessionstore id of one ADK session (its events and session-scoped state)."""
    return "adk-s-" + _digest("session", app_name, user_id, adk_session_id)


def app_state_id(app_name: str) -> str:
    """The sessionstore id of the session that holds ``app:`` state of ``app_name``."""
    return "adk-a-" + _digest("app", app_name)


def user_state_id(app_name: str, user_id: str) -> str:
    """The sessionstore id of the session that holds ``user:`` state of one user."""
    return "adk-u-" + _digest("user", app_name, user_id)


def group_id(app_name: str) -> str:
    """The co-location group of every session of ``app_name`` (one Redis hash tag)."""
    return GROUP_PREFIX + _digest("group", app_name)


def app_tag(app_name: str) -> str:
    """The tag on every ADK session of ``app_name`` (lists an app's sessions)."""
    return "adk-app:" + _digest("app", app_name)


def user_tag(app_name: str, user_id: str) -> str:
    """The tag on every ADK session of one user of ``app_name`` (lists a user's sessions)."""
    return "adk-user:" + _digest("user", app_name, user_id)
