"""Every use of ADK's non-public surface, in one place, each behind a named probe.

ADK gives a ``Session`` a private ``_storage_update_marker`` attribute ("internal storage
revision marker used for stale-session detection", a pydantic private attribute). Its own
persistent services keep the storage revision there, and pydantic compares private
attributes in ``==``, so a service that stores its revision anywhere else would make a
session re-read from storage compare unequal to the one the caller holds. The adapter
keeps the sessionstore ``version`` there, as a string. ``tests/test_adk_probes.py`` fails
loudly when an ADK release moves it.
"""

from __future__ import annotations

from typing import Final

from google.adk.sessions import Session

__all__ = ["MARKER_ATTRIBUTE", "marker_is_supported", "read_marker", "write_marker"]

MARKER_ATTRIBUTE: Final = "_storage_update_marker"


def marker_is_supported() -> bool:
    """True when ADK's ``Session`` still declares the private revision marker."""
    private = getattr(Session, "__private_attributes__", {})
    return MARKER_ATTRIBUTE in private


def read_marker(session: Session) -> int | None:
    """The sessionstore version recorded on ``session`` (None: none, or not ours)."""
    value = getattr(session, MARKER_ATTRIBUTE, None)
    if isinstance(value, str) and value.startswith("v") and value[1:].isdigit():
        return int(value[1:])
    return None


def write_marker(session: Session, version: int) -> None:
    """Record the sessionstore ``version`` that ``session`` reflects."""
    setattr(session, MARKER_ATTRIBUTE, f"v{version}")
