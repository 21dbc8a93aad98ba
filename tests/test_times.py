"""``clock.from_ms`` (integer arithmetic, used by every driver) is exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sessionstore.clock import from_ms


def _reference(ms: int) -> datetime:
    """The obvious conversion, which ``from_ms``'s faster arithmetic must equal."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


#: from_ms's range: datetime.min .. datetime.max in UTC, in milliseconds.
LOW = -62_135_596_800_000
HIGH = 253_402_300_799_999
EDGES = [0, 1, -1, 999, 1000, -999, -1000, -1001, 1_796_520_312_037, LOW, HIGH, 2**31 * 1000]


def test_edges_equal_from_ms() -> None:
    for ms in EDGES:
        fast = from_ms(ms)
        assert fast == _reference(ms), ms
        assert (
            fast.tzinfo == _reference(ms).tzinfo and fast.utcoffset() == _reference(ms).utcoffset()
        )
        assert type(fast) is datetime


@settings(deadline=None)  # a loaded machine stalls an example past Hypothesis's 200 ms
@given(st.integers(min_value=LOW, max_value=HIGH))
def test_any_millisecond_equals_from_ms(ms: int) -> None:
    assert from_ms(ms) == _reference(ms)
    assert str(from_ms(ms)) == str(_reference(ms))
