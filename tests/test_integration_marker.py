"""The ``integration`` marker (tests/integration.py): what it marks, and that a fast run
starts no server."""

from __future__ import annotations

import pytest

CONFTEST = """
import pytest
from tests.integration import forbid_servers_in_fast_run, mark_items

def pytest_collection_modifyitems(config, items):
    mark_items(items)

@pytest.fixture(scope="session")
def redis_url(request):
    forbid_servers_in_fast_run(request, "a Redis server")
    return "redis://127.0.0.1:1/0"
"""

TESTS = """
import pytest

def test_plain():
    pass

def test_static_fixture(redis_url):
    pass

def test_dynamic_fixture(request):
    request.getfixturevalue("redis_url")

@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_parametrized(kind):
    pass

@pytest.mark.slow
def test_soak():
    pass
"""


def _project(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TESTS)


def test_fast_run_leaves_out_server_and_slow_tests(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest("-m", "not integration", "-p", "no:cacheprovider")
    # static fixture, redis parameter and slow test deselected; plain and memory run;
    # the dynamic request for a server is refused with the fix named
    result.assert_outcomes(passed=2, failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*test_dynamic_fixture*", "*must be marked integration*"])


def test_full_run_starts_the_servers(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)


def test_only_integration_selects_the_rest(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest("-m", "integration", "-p", "no:cacheprovider")
    # a dynamic request is only seen when it runs: such a test needs the marker by hand
    result.assert_outcomes(passed=3, deselected=3)
