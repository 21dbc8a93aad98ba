"""Fixtures of the adapter's tests. The shared adapter fixtures (``adapter_store`` on every
built-in driver, the private Redis and PostgreSQL servers) come from the repository's
tests/adapters/plugin.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
from packaging.version import Version
from sessionstore_openai_agents import SessionStoreSession

from sessionstore import SessionStore

pytest_plugins = ["tests.adapters.plugin"]

# The SDK exports traces to OpenAI by default: never from the tests (no network).
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

MakeSession = Callable[..., SessionStoreSession]

#: The installed SDK's release (the adapter's range admits several; CI runs the locked one).
SDK_VERSION = Version(version("openai-agents"))


def sdk_since(release: str, what: str) -> pytest.MarkDecorator:
    """Skip a ported test on an SDK older than ``release``: the test checks ``what``, a
    behaviour of the SDK's runner that ``release`` introduced (the session's part of it
    runs on every release in the adapter's range)."""
    return pytest.mark.skipif(
        Version(release) > SDK_VERSION, reason=f"openai-agents < {release}: {what}"
    )


@pytest.fixture
def make_session(adapter_store: SessionStore) -> MakeSession:
    """``make_session(session_id=None, **options)``: a ``SessionStoreSession`` on this
    test's store (a fresh id unless given)."""

    def make(session_id: str | None = None, **options: Any) -> SessionStoreSession:
        return SessionStoreSession(
            session_id if session_id is not None else f"test_session_{uuid.uuid4().hex[:8]}",
            adapter_store,
            **options,
        )

    return make


@pytest.fixture(autouse=True)
def _event_log_drivers_only(request: pytest.FixtureRequest) -> None:
    """Every driver-parametrized test runs only where the driver declares
    ``Capabilities.event_log`` (``adapter_store`` skips it elsewhere), also the tests
    that open their stores themselves."""
    if "adapter_driver" in request.fixturenames:
        request.getfixturevalue("adapter_store")
