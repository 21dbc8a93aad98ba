"""A pytest plugin for the broken-variants run (``test_broken_variants.py`` loads it with
``-p``): once a variant's class has failed a test, its later tests are skipped, but for
the tests that must run whatever came before them (the state machine, and the one
``CAUGHT_BY`` names for the variant).

The run asserts only that each variant fails at least once (and where ``CAUGHT_BY`` says,
that the named test is among its failures), so the rest of a failed variant's suite is
time spent learning nothing: most variants fail within their first few dozen tests. The
run schedules each class on one worker (``--dist loadscope``), so the worker that runs a
class sees all of its failures.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.conformance.broken_variants import CAUGHT_BY

#: Tests that run in every variant, failed or not (the run counts the state machine's
#: catches on its own).
ALWAYS: frozenset[str] = frozenset({"test_state_machine"})

_failed: set[str] = set()


def _must_run(cls: str, test: str) -> bool:
    return test in ALWAYS or CAUGHT_BY.get(cls.removeprefix("TestBroken")) == test


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    cls = getattr(item, "cls", None)
    if cls is None or cls.__name__ not in _failed:
        return
    name = getattr(item, "originalname", item.name)
    if not _must_run(cls.__name__, name):
        pytest.skip("this variant has already failed a test")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    cls = getattr(item, "cls", None)
    if report.failed and cls is not None:
        _failed.add(cls.__name__)
    return report
