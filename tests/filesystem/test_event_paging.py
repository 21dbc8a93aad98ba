"""Paging deep into a long event log finds its start by binary search, not a re-read."""

from __future__ import annotations

import pytest
from sessionstore_filesystem import FileStore, _log
from sessionstore_filesystem._file_formats import decode_line

from sessionstore import Event

N = 4000


async def _long_log(store: FileStore) -> str:
    s = await store.create_session()
    for start in range(0, N, 500):
        await store.append_events(
            s.id,
            [{"type": "t", "data": {"i": i, "pad": "x" * 40}} for i in range(start, start + 500)],
        )
    return s.id


@pytest.mark.asyncio
async def test_paging_returns_exact_windows(fstore: FileStore) -> None:
    sid = await _long_log(fstore)
    for after in (0, 1, 37, 499, 500, 1234, 2999, 3950, N - 1, N, N + 10):
        page = await fstore.get_events(sid, after_seq=after, limit=50)
        assert [e.seq for e in page] == list(range(after + 1, min(after + 50, N) + 1)), after
        assert all(e.data["i"] == e.seq - 1 for e in page)
    tail = await fstore.get_events(sid, after_seq=N - 3)
    assert [e.seq for e in tail] == [N - 2, N - 1, N]


@pytest.mark.asyncio
async def test_paging_after_a_trim(fstore: FileStore) -> None:
    sid = await _long_log(fstore)
    await fstore.trim_events(sid, keep_last=1500)
    await fstore.append_events(sid, [{"type": "late"}])
    assert [e.seq for e in await fstore.get_events(sid, after_seq=10, limit=3)] == [
        2501,
        2502,
        2503,
    ]
    assert [e.seq for e in await fstore.get_events(sid, after_seq=3999, limit=5)] == [4000, 4001]


@pytest.mark.asyncio
async def test_deep_page_decodes_few_lines(
    fstore: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await _long_log(fstore)
    decoded = 0
    real = decode_line

    def counting(line: bytes, record: str) -> tuple[Event, int | None, bool]:
        nonlocal decoded
        decoded += 1
        return real(line, record)

    monkeypatch.setattr(_log, "decode_line", counting)
    page = await fstore.get_events(sid, after_seq=N - 20, limit=10)
    assert [e.seq for e in page] == list(range(N - 19, N - 9))
    # A page near the end of a 4,000-event log reads one chunk's worth of lines plus a
    # handful of probes, not the whole history.
    assert decoded < N // 4, decoded
