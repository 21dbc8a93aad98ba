"""LangGraph checkpoints in any sessionstore store.

:class:`SessionStoreSaver` is a LangGraph ``BaseCheckpointSaver`` that keeps each thread
in one sessionstore session and each step as appended events; see
``docs/adapters/langgraph.md``.
"""

from __future__ import annotations

from ._ids import run_index_id, thread_session_id
from ._saver import SessionStoreSaver

__all__ = ["SessionStoreSaver", "run_index_id", "thread_session_id"]
