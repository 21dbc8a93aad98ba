"""A stand-in for the client of a key-value service: bytes in, bytes out.

Each call awaits once, like a network round trip, so concurrent tasks interleave between
calls as they would against a real service. ``commit`` is the service's one atomic
operation: a conditional multi-key write (etcd's Txn, FoundationDB transactions and
DynamoDB's TransactWriteItems offer the same). There is no module-level state: stores
share data only by sharing one :class:`AcmeKV` object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["AcmeKV", "ConditionFailed"]


class ConditionFailed(Exception):
    """``commit`` found ``key`` changed since it was read; nothing was written."""

    def __init__(self, key: str, current: bytes | None) -> None:
        super().__init__(key)
        self.key = key
        self.current = current


class AcmeKV:
    """An in-process key-value "service" holding every key of every namespace."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (``None`` for a missing key), in order."""
        await asyncio.sleep(0)
        return [self._data.get(key) for key in keys]

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every ``(key, value)`` whose key starts with ``prefix`` (a snapshot, any order)."""
        await asyncio.sleep(0)
        return [(key, value) for key, value in self._data.items() if key.startswith(prefix)]

    async def commit(
        self,
        writes: Mapping[str, bytes | None],
        *,
        delete_prefixes: Iterable[str] = (),
        if_unchanged: Mapping[str, bytes | None],
    ) -> None:
        """Atomically: check ``if_unchanged``, delete ``delete_prefixes``, then ``writes``.

        A ``None`` value deletes its key. Raises :class:`ConditionFailed` (writing nothing)
        when a key of ``if_unchanged`` no longer holds the given value.
        """
        await asyncio.sleep(0)
        for key, expected in if_unchanged.items():
            if (current := self._data.get(key)) != expected:
                raise ConditionFailed(key, current)
        for prefix in delete_prefixes:
            for key in [k for k in self._data if k.startswith(prefix)]:
                del self._data[key]
        for key, value in writes.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value
