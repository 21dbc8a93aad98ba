"""OpenAI Agents SDK sessions stored in any sessionstore store.

See docs/adapters/openai-agents.md.
"""

from __future__ import annotations

from ._ids import HASHED_PREFIX, METADATA_KEY, PREFIX, TAG, decode_session_id, store_id

__all__ = ["HASHED_PREFIX", "METADATA_KEY", "PREFIX", "TAG", "decode_session_id", "store_id"]
