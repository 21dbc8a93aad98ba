"""OpenAI Agents SDK sessions stored in any sessionstore store.

``SessionStoreSession(session_id, store)`` is a session for ``Runner.run(...,
session=...)``; see docs/adapters/openai-agents.md.
"""

from __future__ import annotations

from ._ids import HASHED_PREFIX, METADATA_KEY, PREFIX, TAG, decode_session_id, store_id
from ._listing import copy_session, iter_session_ids
from ._session import ITEM_TYPE, SessionStoreSession, finish_despite_cancellation

__all__ = [
    "HASHED_PREFIX",
    "ITEM_TYPE",
    "METADATA_KEY",
    "PREFIX",
    "TAG",
    "SessionStoreSession",
    "copy_session",
    "decode_session_id",
    "finish_despite_cancellation",
    "iter_session_ids",
    "store_id",
]
