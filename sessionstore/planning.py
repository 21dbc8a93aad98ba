"""Write planning for drivers: an alias of part of :mod:`sessionstore.driver`.

New code imports these names from :mod:`sessionstore.driver`, the whole public driver
interface; this module stays so that code written against it keeps working. The names
(see :mod:`sessionstore.driver` for each):

* :func:`prepare`, :class:`Prepared`, :class:`Planner`, :class:`Mutation`, :class:`Limits`,
  :func:`make_checkpoint`, :func:`new_session`, :func:`check_expected_version`: the
  write planner;
* :func:`check_strategy` and :func:`merge_decision`: ``put_records``' merge rules;
* :func:`fast_session` - builds a :class:`~sessionstore.Session` from all 13 fields
  positionally, several times faster than ``Session(...)``, for decoding hot paths.
* :func:`fast_event` - the same for :class:`~sessionstore.Event` (one per event read),
  :func:`fast_raw_event` for :class:`~sessionstore.RawEvent`.
  **CPython only**: it relies on ``__class__`` assignment between slot classes of one
  layout, and on the field order of ``Session`` (a new field breaks positional callers).
  It is deliberately not part of :mod:`sessionstore.driver`.
"""

from __future__ import annotations

from .driver import (
    Limits,
    Mutation,
    Planner,
    Prepared,
    check_expected_version,
    check_strategy,
    make_checkpoint,
    merge_decision,
    new_session,
    prepare,
)
from .model import fast_event, fast_raw_event, fast_session

__all__ = [
    "Limits",
    "Mutation",
    "Planner",
    "Prepared",
    "check_expected_version",
    "check_strategy",
    "fast_event",
    "fast_raw_event",
    "fast_session",
    "make_checkpoint",
    "merge_decision",
    "new_session",
    "prepare",
]
