"""The driver's fast millisecond-to-datetime conversion equals ``clock.from_ms`` exactly."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st
from sessionstore_sqlite._engine import _at

from sessionstore.clock import from_ms

#: from_ms's range: datetime.min .. datetime.max in UTC, in milliseconds.
LOW = -62_135_596_800_000
HIGH = 253_402_300_799_999
EDGES = [0, 1, -1, 999, 1000, -999, -1000, -1001, 1_796_520_312_037, LOW, HIGH, 2**31 * 1000]


def test_edges_equal_from_ms() -> None:
    for ms in EDGES:
        fast = _at(ms)
        assert fast == from_ms(ms), ms
        assert fast.tzinfo == from_ms(ms).tzinfo and fast.utcoffset() == from_ms(ms).utcoffset()
        assert type(fast) is datetime


@given(st.integers(min_value=LOW, max_value=HIGH))
def test_any_millisecond_equals_from_ms(ms: int) -> None:
    assert _at(ms) == from_ms(ms)
    assert str(_at(ms)) == str(from_ms(ms))
