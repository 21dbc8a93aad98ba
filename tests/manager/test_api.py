"""The manager's public names, and that `import sessionstore` does not load it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sessionstore
import sessionstore.manager

PUBLIC = {
    "SessionPersistenceManager",
    "ManagerConfig",
    "ManagedSession",
    "ManagerTransaction",
    "Lease",
    "FlushReport",
    "HealthReport",
    "ManagerStats",
    "OptimizeReport",
    "SessionSummary",
    "LeaseError",
    "LeaseHeldError",
    "LeaseLostError",
    "LifecycleError",
    "ManagedSessionConflictError",
    "ManagerClosedError",
}


def test_public_names_are_re_exported() -> None:
    assert set(sessionstore.__all__) >= PUBLIC
    for name in PUBLIC:
        assert getattr(sessionstore, name) is getattr(sessionstore.manager, name)
    assert set(sessionstore.manager.__all__) >= PUBLIC


@pytest.mark.integration
def test_import_sessionstore_does_not_load_the_manager() -> None:
    code = (
        "import sys, sessionstore\n"
        "print('sessionstore.manager' in sys.modules)\n"
        "from sessionstore import SessionPersistenceManager\n"
        "print('sessionstore.manager' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        sessionstore.NoSuchThing  # noqa: B018
