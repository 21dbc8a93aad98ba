"""The one private name of ADK the adapter uses is still where it was: this fails loudly on
the ADK release that moves it (then ``_adk_probes.py`` and the version bound move too)."""

from __future__ import annotations

from google.adk.sessions import Session
from sessionstore_adk._adk_probes import (
    MARKER_ATTRIBUTE,
    marker_is_supported,
    read_marker,
    write_marker,
)


def test_session_still_declares_the_storage_revision_marker() -> None:
    assert marker_is_supported(), (
        f"google.adk.sessions.Session no longer has the private attribute {MARKER_ATTRIBUTE}: "
        "stale-session detection of sessionstore_adk needs a new home for the revision"
    )


def test_the_marker_takes_part_in_equality() -> None:
    # Why the revision lives there: a session read back compares equal to the caller's
    # only when both carry the same marker.
    a = Session(id="s", app_name="a", user_id="u")
    b = Session(id="s", app_name="a", user_id="u")
    write_marker(a, 3)
    write_marker(b, 3)
    assert a == b
    write_marker(b, 4)
    assert a != b


def test_markers_round_trip_and_foreign_markers_are_ignored() -> None:
    session = Session(id="s", app_name="a", user_id="u")
    assert read_marker(session) is None
    write_marker(session, 12)
    assert read_marker(session) == 12
    assert session.model_copy(deep=True) == session
    assert read_marker(session.model_copy(deep=True)) == 12
    setattr(session, MARKER_ATTRIBUTE, "2026-12-06 03:00:00.123456")  # another service's
    assert read_marker(session) is None
