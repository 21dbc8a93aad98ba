"""The memory driver runs the conformance suite through the public path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sessionstore_memory import MemoryBackend, MemoryStore

from sessionstore import Capabilities, Clock, ConfigurationError, SessionStore
from sessionstore.testing import CorruptKind, StoreConformance


class TestMemoryStore(StoreConformance):
    """Every store of one test class shares a backend, so namespaces are really shared."""

    cleanup_namespaces = False
    backend = MemoryBackend()
    # spelled out, not MemoryStore.CAPABILITIES: the check is against what the docs promise
    expected_capabilities = Capabilities(
        atomic_multi_session=True,
        shared_namespace=True,  # a passed-in backend is shared
        cross_process=False,
        durable=False,
        native_ttl=False,
        indexed_query=True,
        max_batch=None,
        any_event_loop=True,
        event_log=True,
    )

    def make_store(self, *, namespace: str, clock: Clock, **options: Any) -> MemoryStore:
        return MemoryStore(backend=self.backend, namespace=namespace, clock=clock, **options)

    def store_url(self, namespace: str) -> str:
        return f"memory://?namespace={namespace}"

    async def corrupt(
        self,
        store: SessionStore,
        kind: CorruptKind,
        session_id: str,
        checkpoint_id: str | None = None,
    ) -> None:
        """Undecodable bytes where the driver keeps the record's JSON."""
        space = self.backend.space(store.namespace)
        if kind == "session":
            space.docs[session_id].data_json = b'{"torn'
        elif kind == "events":
            etype, at, _, key = space.logs[session_id].items[0]
            space.logs[session_id].items[0] = (etype, at, b"\x80garbage", key)
        elif kind == "checkpoint":
            assert checkpoint_id is not None
            space.checkpoints[session_id][checkpoint_id] = b'{"torn'
        elif kind == "checkpoint_moved":  # another checkpoint's valid record in its place
            assert checkpoint_id is not None
            stored = space.checkpoints[session_id]
            other = next(cp for cp in stored if cp != checkpoint_id)
            stored[checkpoint_id] = stored[other]
        else:  # an edited value: valid JSON, wrong digest
            assert checkpoint_id is not None
            record = orjson.loads(space.checkpoints[session_id][checkpoint_id])
            record["data"]["x"] = "edited"
            space.checkpoints[session_id][checkpoint_id] = orjson.dumps(record)

    def test_url_takes_no_host_or_path(self) -> None:
        """``memory://`` names no server and no file: a host or a path is refused (the
        base's rule for a driver whose URLs take neither)."""
        for url in ("memory://somehost", "memory:///a/path", "memory://h/p?namespace=x"):
            with pytest.raises(ConfigurationError, match="take no host or path"):
                MemoryStore.from_url(url)
        for url in ("memory://", "memory:///", "memory://?namespace=x"):
            assert isinstance(MemoryStore.from_url(url), MemoryStore)

    @pytest.mark.slow
    def test_state_machine_long(self) -> None:
        """The long state-machine budget, as a marked run (``pytest -m slow``)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SESSIONSTORE_CONFORMANCE_LONG", "1")
            super().test_state_machine_long()
