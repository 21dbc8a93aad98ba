"""Helpers the test modules share."""

from __future__ import annotations

import pytest

from sessionstore import open_store


def skip_without_event_log(url: str) -> None:
    """Skip the test when the driver of ``url`` does not declare ``event_log`` yet (as the
    shared ``adapter_store`` fixture does)."""
    store = open_store(url)
    if not getattr(store.capabilities, "event_log", False):
        pytest.skip(f"{type(store).__name__} does not declare Capabilities.event_log")
