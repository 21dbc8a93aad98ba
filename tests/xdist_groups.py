"""Which tests share a pytest-xdist worker when the whole suite runs spread over workers
(``python3 scripts/dev.py test``: ``pytest -n 2 --dist loadgroup``).

Each worker is its own process with its own session-scoped servers (a private Redis, a
PostgreSQL, and the Cluster or Sentinel when a test of that worker asks for one), so no
worker sees another's data, counters or restarts. Under ``--dist loadgroup`` the tests
of one ``xdist_group`` run on one worker, in their collection order; this module gives
each test its group at collection:

- a test on the Redis **Cluster** or **Sentinel** (their fixtures, or a ``cluster`` /
  ``sentinel`` parameter) joins that topology's group: one Cluster (six processes) and
  one Sentinel setup per run, as in a serial run, and the topology's tests never share
  it with themselves on two workers;
- another ``integration`` test (servers, processes, soaks) stays with its class, or its
  module for a plain function (``--dist loadscope``'s unit): module-scoped fixtures
  (a virtualenv, a failover cluster) are made once, and a module's tests run in the
  order written, as they do serially;
- a fast test (``-m "not integration"``) gets no group and is sent on its own: the fast
  loop (``dev.py fast``, ``-n auto``) already runs those one by one on any worker.

A test that carries its own ``xdist_group`` marker keeps it. Nothing is added when the run
is not ``--dist loadgroup`` (a serial run, the fast loop's ``--dist load``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import pytest

__all__ = ["TOPOLOGY_GROUPS", "group_for", "group_items"]

#: fixture name or parameter value -> the group of every test on that topology
TOPOLOGY_GROUPS: Final = {
    "redis_cluster": "redis-cluster",
    "cluster": "redis-cluster",
    "redis_sentinel": "redis-sentinel",
    "sentinel": "redis-sentinel",
}


def group_for(item: pytest.Item) -> str | None:
    """The ``xdist_group`` of ``item`` (None: sent on its own)."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    names.update(value for value in params if isinstance(value, str))
    for name, group in TOPOLOGY_GROUPS.items():
        if name in names:
            return group
    if item.get_closest_marker("integration") is None:
        return None
    # loadscope's unit: "path::Class" for a method, "path" for a function
    nodeid = item.nodeid.split("[", 1)[0]
    parts = nodeid.split("::")
    return "::".join(parts[:2]) if len(parts) > 2 else parts[0]


def group_items(config: pytest.Config, items: Iterable[pytest.Item]) -> None:
    """Give every item its group (after ``mark_items``: it reads the integration marker)."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        group = group_for(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
