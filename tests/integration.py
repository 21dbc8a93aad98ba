"""The ``integration`` marker: tests that start servers, processes or long runs.

``python3 scripts/dev.py fast`` (``pytest -m "not integration"``) leaves them out and runs
the rest in seconds; ``python3 scripts/dev.py test`` (and CI) runs both. A test is
integration when its module says so (``pytestmark``), when it uses a server fixture or
is parametrized onto a server-backed driver (marked here at collection), or when it is
``slow`` (the long soaks are a subset). In a fast run a server fixture refuses to start:
a test that reaches a server without the marker fails, naming the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import pytest

__all__ = [
    "SERVER_DIRS",
    "SERVER_FIXTURES",
    "SERVER_PARAMS",
    "forbid_servers_in_fast_run",
    "is_fast_run",
    "mark_items",
]

#: The fixtures that start (or reach) a private Redis or PostgreSQL server.
SERVER_FIXTURES: Final = frozenset(
    {
        "redis_binaries",
        "redis_url",
        "redis_unix_url",
        "redis_tls",
        "redis_cluster",
        "redis_sentinel",
        "postgres_server",
        "postgres_url",
    }
)
#: Directories whose every test is about a server-backed driver (its servers, topologies
#: and faults), including the few that start a server without a fixture.
SERVER_DIRS: Final = ("redis", "postgres")
#: Parameter values that put a test on a server-backed driver (``store_factory``, ``kind``).
SERVER_PARAMS: Final = frozenset({"redis", "postgres", "cluster", "sentinel"})


def _needs_server(item: pytest.Item) -> bool:
    try:
        parts = item.path.relative_to(item.config.rootpath).parts
    except ValueError:
        parts = ()
    if parts[:1] == ("tests",) and len(parts) > 2 and parts[1] in SERVER_DIRS:
        return True
    if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and value in SERVER_PARAMS for value in params)


def mark_items(items: Iterable[pytest.Item]) -> None:
    """Add ``integration`` to every server-backed or ``slow`` test."""
    for item in items:
        if item.get_closest_marker("integration") is not None:
            continue
        if item.get_closest_marker("slow") is not None or _needs_server(item):
            item.add_marker(pytest.mark.integration)


def is_fast_run(config: pytest.Config) -> bool:
    """True when the run leaves the integration tests out (``-m "not integration"``)."""
    markexpr = str(config.getoption("markexpr", "") or "")
    return "not integration" in " ".join(markexpr.split())


def forbid_servers_in_fast_run(request: pytest.FixtureRequest, what: str) -> None:
    """Called first by every server fixture: no server starts in a fast run."""
    if is_fast_run(request.config):
        pytest.fail(
            f"{what} was requested in a fast run (-m 'not integration'): the test that "
            "needs it must be marked integration (tests/integration.py)",
            pytrace=False,
        )
