"""Write planning, public for drivers that implement writes natively.

A driver built on :class:`~sessionstore.BaseSessionStore` gets every write through the
base class's load → plan → ``_apply`` engine and never needs this module. A driver that
overrides a public write method to do it in one round trip (a server-side script, a
single SQL statement) still has to refuse bad input exactly like the base does; these
are the same pieces the base uses, so the validation and the planned result cannot drift
apart:

* :func:`prepare` validates and encodes one op (no I/O) and returns a :class:`Prepared`;
* :class:`Planner` applies prepared ops to loaded sessions and yields :class:`Mutation` s;
* :class:`Limits` carries the size limits (``store._limits`` on a base store);
* :func:`make_checkpoint` builds a checkpoint with its digest;
* :func:`new_session` is the version-1 session a prepared create makes at a given time;
* :func:`check_expected_version` validates an ``expected_version`` argument;
* :func:`encode_events` validates and encodes the events of an append, keeping each
  event's data JSON (for drivers that store it as it is);
* :func:`fast_session` builds a :class:`~sessionstore.Session` from all 13 fields
  positionally, several times faster than ``Session(...)`` (for decoding hot paths);
* :func:`check_strategy` and :func:`merge_decision` are ``put_records``' merge rules
  (what restoring a record does to a stored session), for drivers that batch restores.

The implementation lives in a private module; these names are the stable API.
"""

from __future__ import annotations

from ._batch import (
    Limits,
    Mutation,
    Planner,
    Prepared,
    check_expected_version,
    encode_events,
    make_checkpoint,
    new_session,
    prepare,
)
from ._bulk import check_strategy, merge_decision
from .model import fast_session

__all__ = [
    "Limits",
    "Mutation",
    "Planner",
    "Prepared",
    "check_expected_version",
    "check_strategy",
    "encode_events",
    "fast_session",
    "make_checkpoint",
    "merge_decision",
    "new_session",
    "prepare",
]
