"""The opt-in pytest plugin: ``-p sessionstore.testing.plugin`` or ``pytest_plugins``.

It only adds options; it never collects tests by itself, so installing sessionstore
changes nobody's pytest run.

* ``--sessionstore-url URL`` - the store the shipped live suite
  (:mod:`sessionstore.testing.live`) runs against; each test gets a fresh namespace and
  empties it afterwards.
* ``--sessionstore-long`` - also run the long state-machine budget.

It also lets ``-k`` select conformance tests by the mixin that defines them, by the
names the ``sessionstore conformance`` summary shows: ``-k CrudTests`` (or ``-k crud``:
pytest matches case-insensitive substrings) runs the tests of
:class:`~sessionstore.testing.CrudTests` in any conformance class.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["live_url"]

_URL_ENV = "SESSIONSTORE_CONFORMANCE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sessionstore", "sessionstore conformance suite")
    group.addoption(
        "--sessionstore-url",
        default=None,
        help="run the live conformance suite (sessionstore.testing.live) against this store URL",
    )
    group.addoption(
        "--sessionstore-long",
        action="store_true",
        default=False,
        help="also run the long state-machine budget",
    )


def pytest_configure(config: pytest.Config) -> None:
    url = config.getoption("--sessionstore-url", default=None)
    if url:
        os.environ[_URL_ENV] = url
    if config.getoption("--sessionstore-long", default=False):
        os.environ["SESSIONSTORE_CONFORMANCE_LONG"] = "1"


@pytest.hookimpl(tryfirst=True)  # before pytest's own -k deselection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add the defining mixin's name to each conformance test's ``-k`` keywords."""
    from .suite import MIXINS

    for item in items:
        cls = getattr(item, "cls", None)
        name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
        if cls is None:
            continue
        for base in cls.__mro__:
            if base in MIXINS and name in vars(base):
                item.extra_keyword_matches.add(base.__name__)
                break


def live_url() -> str | None:
    """The URL given with ``--sessionstore-url`` (or $SESSIONSTORE_CONFORMANCE_URL)."""
    return os.environ.get(_URL_ENV) or None
