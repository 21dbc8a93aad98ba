"""Driver discovery, open_store, URL redaction and the observer hooks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as real_entry_points
from typing import Any
from urllib.parse import SplitResult

import pytest
from sessionstore_memory import MemoryStore

import sessionstore
import sessionstore.registry
from sessionstore import (
    Checkpoint,
    ConfigurationError,
    DriverInfo,
    DriverNotFoundError,
    ManualClock,
    Session,
    SessionConflictError,
    StoreUnavailableError,
    broken_plugins,
    get_driver,
    hookimpl,
    installed_drivers,
    open_store,
    plugin_manager,
    redact_url,
    register_driver,
)
from tests.secrets_walk import find_secret


class AcmeStore(MemoryStore):
    """A test driver: a memory store whose URL carries a host (and maybe a password)."""

    @classmethod
    def _options_from_url(cls, parts: SplitResult) -> dict[str, Any]:
        if not parts.hostname:
            raise ConfigurationError(f"acme:// needs a host, got {redact_url(parts.geturl())!r}")
        return {}


NOT_A_STORE = 42


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> sessionstore.registry._Registry:
    """A private registry for the test (the global one is left untouched)."""
    registry = sessionstore.registry._Registry()
    monkeypatch.setattr(sessionstore.registry, "_registry", registry)
    return registry


# --------------------------------------------------------------------------- open_store


@pytest.mark.asyncio
async def test_open_store_without_url_defaults_to_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONSTORE_URL", raising=False)
    store = open_store()
    assert type(store) is MemoryStore
    assert store.url == "memory://"
    async with store:
        s = await store.create_session()
        assert await store.get_session(s.id) == s
    monkeypatch.setenv("SESSIONSTORE_URL", "")
    assert type(open_store()) is MemoryStore


def test_open_store_without_url_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSTORE_URL", "memory://?namespace=from-env&max_event_bytes=77")
    store = open_store()
    assert isinstance(store, MemoryStore)
    assert store.namespace == "from-env"
    assert store.options.max_event_bytes == 77
    # keyword options still override
    assert open_store(namespace="kw").namespace == "kw"
    # an explicit URL wins over the environment
    assert open_store("memory://").namespace == ""
    monkeypatch.setenv("SESSIONSTORE_URL", "nosuchscheme://x")
    with pytest.raises(DriverNotFoundError):
        open_store()


@pytest.mark.asyncio
async def test_open_store_passes_the_clock() -> None:
    clock = ManualClock()
    async with open_store("memory://", clock=clock) as store:
        s = await store.create_session(ttl=5)
        assert s.created_at == clock.now()
        clock.advance(5)
        assert await store.get_session(s.id) is None


def test_scheme_is_case_insensitive() -> None:
    assert type(open_store("MEMORY://")) is MemoryStore


# --------------------------------------------------------------------------- drivers


def test_installed_drivers_include_memory_from_its_entry_point() -> None:
    drivers = {d.scheme: d for d in installed_drivers()}
    assert "memory" in drivers
    memory = drivers["memory"]
    assert memory.target == "sessionstore_memory:MemoryStore"
    assert memory.plugin == "memory"  # the entry point's name, not a runtime registration
    assert (memory.package, memory.version) == ("sessionstore", sessionstore.__version__)
    assert get_driver("memory") is MemoryStore
    eps = {ep.name: ep.value for ep in real_entry_points(group="sessionstore")}
    assert eps.get("memory") == "sessionstore_memory.plugin"
    assert [d.scheme for d in installed_drivers()] == sorted(drivers)


def test_check_driver_says_why_a_driver_cannot_load(
    fresh_registry: sessionstore.registry._Registry,
) -> None:
    assert sessionstore.check_driver("memory") is None
    register_driver("ghost", "no_such_module_for_sessionstore_tests:Store", extra="ghost")
    problem = sessionstore.check_driver("ghost")
    assert problem is not None
    assert problem.startswith("ModuleNotFoundError: No module named 'no_such_module_for")
    assert problem.endswith("; install it with: pip install 'sessionstore[ghost]'")
    register_driver("notastore", "sessionstore.codec:new_id")
    assert "is not a store class" in (sessionstore.check_driver("notastore") or "")
    info = {d.scheme: d for d in installed_drivers()}["ghost"]
    assert (info.package, info.version) == (None, None)  # registered at run time
    assert "no driver for scheme 'nosuchscheme'" in (
        sessionstore.check_driver("nosuchscheme") or ""
    )


@pytest.mark.asyncio
async def test_register_driver_class_at_runtime(
    fresh_registry: sessionstore.registry._Registry,
) -> None:
    register_driver("acme", AcmeStore)
    info = {d.scheme: d for d in installed_drivers()}["acme"]
    assert info == DriverInfo("acme", f"{__name__}:AcmeStore", "<runtime>", None)
    assert get_driver("acme") is AcmeStore
    store = open_store("acme://db.example:5432/")
    assert type(store) is AcmeStore
    async with store:
        s = await store.create_session()
        assert await store.get_session(s.id) == s
    with pytest.raises(ConfigurationError, match="needs a host"):
        open_store("acme://")


@pytest.mark.asyncio
async def test_register_driver_import_string_at_runtime(
    fresh_registry: sessionstore.registry._Registry,
) -> None:
    register_driver("acme-lazy", f"{__name__}:AcmeStore")
    assert "acme-lazy" not in fresh_registry.classes  # not imported before use
    assert type(open_store("acme-lazy://h")) is AcmeStore
    assert fresh_registry.classes["acme-lazy"] is AcmeStore
    # a runtime registration replaces an earlier one, class or string
    register_driver("acme-lazy", "sessionstore_memory:MemoryStore")
    assert type(open_store("acme-lazy://")) is MemoryStore
    register_driver("memory", AcmeStore)
    assert type(open_store("memory://h")) is AcmeStore


def test_broken_driver_targets(fresh_registry: sessionstore.registry._Registry) -> None:
    register_driver("missing-mod", "no_such_module_for_tests:Store", extra="fancy")
    with pytest.raises(DriverNotFoundError) as info:
        open_store("missing-mod://x")
    text = str(info.value)
    assert "no_such_module_for_tests" in text
    assert "pip install 'sessionstore[fancy]'" in text
    assert info.value.extra == "fancy"
    register_driver("missing-attr", f"{__name__}:NoSuchClass")
    with pytest.raises(DriverNotFoundError, match="NoSuchClass"):
        open_store("missing-attr://x")
    register_driver("not-a-class", f"{__name__}:NOT_A_STORE")
    with pytest.raises(DriverNotFoundError, match="not a store class"):
        open_store("not-a-class://x")
    # the registry still works
    assert type(open_store("memory://")) is MemoryStore


@pytest.mark.parametrize("scheme", ["", "bad scheme", "a/b", "ünï"])
def test_invalid_scheme_names(fresh_registry: sessionstore.registry._Registry, scheme: str) -> None:
    with pytest.raises(ConfigurationError):
        register_driver(scheme, AcmeStore)


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host/0", "redis://user:***@host/0"),
        ("rediss://u:s3:cr@et@host", "rediss://u:***@host"),
        ("redis://host/?password=s3cret&db=1", "redis://host/?password=***&db=1"),
        ("redis://host/?TOKEN=s3cret", "redis://host/?TOKEN=***"),
        ("memory://", "memory://"),
        ("memory://?password=s3cret&namespace=a", "memory://?password=***&namespace=a"),
        ("redis//:s3cret@host", "redis//:***@host"),
        ("file:///var/lib/app", "file:///var/lib/app"),
        ("redis://host:6379/0?key_prefix=s:", "redis://host:6379/0?key_prefix=s:"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(url)


@pytest.mark.asyncio
async def test_passwords_never_appear_in_repr_or_errors(
    fresh_registry: sessionstore.registry._Registry,
) -> None:
    register_driver("acme", AcmeStore)
    url = "acme://admin:s3cret@db.example:5432/?namespace=ns1"
    store = open_store(url)
    for text in (repr(store), str(store), store.url or ""):
        assert "s3cret" not in text
        assert "***" in text
    # no attribute keeps the raw URL (BaseSessionStore kept it in `_url`)
    assert find_secret(store, "s3cret") == []
    assert "db.example" in repr(store)
    # an error mentioning the store does not leak it either
    with pytest.raises(StoreUnavailableError) as info:
        await store.create_session()
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)
    with pytest.raises(ConfigurationError) as cfg:
        open_store("acme://admin:s3cret@db.example/?bogus=s3cret")
    assert "s3cret" not in str(cfg.value)
    with pytest.raises(ConfigurationError) as cfg:
        open_store("memory://admin:s3cret@db.example/")
    assert "s3cret" not in str(cfg.value)
    # a mistyped URL (no "://") is refused without echoing its password
    with pytest.raises(ConfigurationError) as cfg:
        open_store("redis//:s3cret@db.example:6379")
    assert "s3cret" not in str(cfg.value)


# --------------------------------------------------------------------------- observers


class Recorder:
    """Records every store event, and what the store held at the moment of the call."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.calls: list[tuple[str, Any]] = []
        self.durable: list[bool] = []

    def _docs(self) -> dict[str, Any]:
        return self.store.backend.space(self.store.namespace).docs

    @hookimpl
    def sessionstore_session_created(self, store: Any, session: Session) -> None:
        if store is self.store:
            self.calls.append(("created", session))
            doc = self._docs().get(session.id)
            self.durable.append(doc is not None and doc.head.version == session.version)

    @hookimpl
    def sessionstore_session_updated(self, store: Any, session: Session) -> None:
        if store is self.store:
            self.calls.append(("updated", session))
            doc = self._docs().get(session.id)
            self.durable.append(doc is not None and doc.head.version == session.version)

    @hookimpl
    def sessionstore_session_deleted(self, store: Any, session_id: str) -> None:
        if store is self.store:
            self.calls.append(("deleted", session_id))
            self.durable.append(session_id not in self._docs())

    @hookimpl
    def sessionstore_session_expired(self, store: Any, session_id: str) -> None:
        if store is self.store:
            self.calls.append(("expired", session_id))

    @hookimpl
    def sessionstore_conflict(
        self, store: Any, session_id: str, expected: int, actual: int
    ) -> None:
        if store is self.store:
            self.calls.append(("conflict", (session_id, expected, actual)))

    @hookimpl
    def sessionstore_checkpoint_created(self, store: Any, checkpoint: Checkpoint) -> None:
        if store is self.store:
            self.calls.append(("checkpoint", checkpoint))
            cps = self.store.backend.space(self.store.namespace).checkpoints
            self.durable.append(checkpoint.id in cps.get(checkpoint.session_id, {}))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


class Raiser:
    """An observer that fails on every event."""

    def __init__(self) -> None:
        self.calls = 0

    def _boom(self) -> None:
        self.calls += 1
        raise RuntimeError("observer exploded")

    @hookimpl
    def sessionstore_session_created(self, session: Session) -> None:
        self._boom()

    @hookimpl
    def sessionstore_session_updated(self, session: Session) -> None:
        self._boom()

    @hookimpl
    def sessionstore_session_deleted(self, session_id: str) -> None:
        self._boom()

    @hookimpl
    def sessionstore_conflict(self, session_id: str) -> None:
        self._boom()

    @hookimpl
    def sessionstore_checkpoint_created(self, checkpoint: Checkpoint) -> None:
        self._boom()


@pytest.fixture
def observed(store: MemoryStore) -> Iterator[Recorder]:
    recorder = Recorder(store)
    pm = plugin_manager()
    pm.register(recorder)
    try:
        yield recorder
    finally:
        pm.unregister(recorder)


@pytest.mark.asyncio
async def test_observer_hooks_fire_after_the_write(
    store: MemoryStore, clock: ManualClock, observed: Recorder
) -> None:
    s = await store.create_session(id="obs", data={"a": 1})
    assert observed.calls == [("created", s)]
    s2 = await store.update_session("obs", merge_data={"b": 2})
    s3 = await store.append_events("obs", [{"type": "t"}])
    s4 = await store.touch("obs", ttl=10)
    assert observed.calls[1:] == [("updated", s2), ("updated", s3), ("updated", s4)]
    cp = await store.save_checkpoint("obs")
    assert observed.calls[-1:] == [("checkpoint", cp)]
    with pytest.raises(SessionConflictError):
        await store.update_session("obs", data={}, expected_version=1)
    assert observed.calls[-1:] == [("conflict", ("obs", 1, 4))]
    assert await store.delete_session("obs")
    assert observed.calls[-1:] == [("deleted", "obs")]
    assert all(observed.durable)
    assert len(observed.durable) == 6


@pytest.mark.asyncio
async def test_expired_hook(store: MemoryStore, clock: ManualClock, observed: Recorder) -> None:
    a = await store.create_session(id="a", ttl=1)
    await store.create_session(id="b", ttl=1)
    await store.create_session(id="keep")
    observed.calls.clear()
    clock.advance(1)
    assert sorted(await store.expire_sessions()) == ["a", "b"]
    expired = [p for k, p in observed.calls if k == "expired"]
    assert sorted(expired) == ["a", "b"]
    updated = [p for k, p in observed.calls if k == "updated"]
    assert sorted(u.id for u in updated) == ["a", "b"]
    assert all(u.status == "expired" and u.version == a.version + 1 for u in updated)
    await store.create_session(id="c", ttl=1)
    clock.advance(1)
    observed.calls.clear()
    assert await store.cleanup_expired_sessions() == 3
    # "c" was not marked before: it is reported expired once, as it is removed
    assert [p for k, p in observed.calls if k == "expired"] == ["c"]
    assert sorted(p for k, p in observed.calls if k == "deleted") == ["a", "b", "c"]
    assert all(observed.durable)


@pytest.mark.asyncio
async def test_transaction_hooks_fire_only_after_commit(
    store: MemoryStore, observed: Recorder
) -> None:
    await store.create_session(id="a")
    observed.calls.clear()

    async def failing() -> None:
        async with store.transaction() as tx:
            await tx.create_session(id="b")
            await tx.update_session("a", data={}, expected_version=5)

    with pytest.raises(SessionConflictError):
        await failing()
    assert observed.kinds() == ["conflict"]
    observed.calls.clear()
    async with store.transaction() as tx:
        await tx.create_session(id="b")
        await tx.update_session("a", data={"x": 1})
        assert observed.calls == []
    assert sorted(observed.kinds()) == ["created", "updated"]
    assert all(observed.durable)


@pytest.mark.asyncio
async def test_a_raising_observer_is_logged_and_isolated(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    first, raiser, last = Recorder(store), Raiser(), Recorder(store)
    pm = plugin_manager()
    for plugin in (first, raiser, last):
        pm.register(plugin)
    try:
        with caplog.at_level(logging.ERROR, logger="sessionstore"):
            s = await store.create_session(id="iso")
            s = await store.update_session("iso", merge_data={"a": 1})
            await store.save_checkpoint("iso")
            with pytest.raises(SessionConflictError):
                await store.update_session("iso", data={}, expected_version=1)
            assert await store.delete_session("iso")
    finally:
        for plugin in (first, raiser, last):
            pm.unregister(plugin)
    assert raiser.calls == 5
    expected = ["created", "updated", "checkpoint", "conflict", "deleted"]
    assert first.kinds() == expected
    assert last.kinds() == expected
    failures = [r for r in caplog.records if "observer" in r.getMessage()]
    assert len(failures) == 5
    assert all(r.exc_info is not None for r in failures)
    assert s.version == 2
    assert await store.get_session("iso") is None


@pytest.mark.asyncio
async def test_unregistered_observer_is_not_called(store: MemoryStore) -> None:
    recorder = Recorder(store)
    pm = plugin_manager()
    pm.register(recorder)
    pm.unregister(recorder)
    await store.create_session()
    assert recorder.calls == []


# --------------------------------------------------------------------------- broken plugins


class _RaisingRegistrar:
    @hookimpl
    def sessionstore_register_drivers(self, register: Any) -> None:
        raise RuntimeError("cannot register")


class _BadSchemeRegistrar:
    @hookimpl
    def sessionstore_register_drivers(self, register: Any) -> None:
        register("bad scheme!", "x:Y")


raising_registrar = _RaisingRegistrar()
bad_scheme_registrar = _BadSchemeRegistrar()


@pytest.mark.asyncio
async def test_broken_plugins_are_reported_and_isolated(
    monkeypatch: pytest.MonkeyPatch,
    fresh_registry: sessionstore.registry._Registry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = sessionstore.registry.ENTRY_POINT_GROUP
    fakes = [
        EntryPoint("broken-import", "no_such_plugin_module_for_tests", group),
        EntryPoint("broken-register", f"{__name__}:raising_registrar", group),
        EntryPoint("broken-scheme", f"{__name__}:bad_scheme_registrar", group),
    ]

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [*real_entry_points(group=group), *fakes]

    monkeypatch.setattr(sessionstore.registry, "entry_points", fake_entry_points)
    with caplog.at_level(logging.WARNING, logger="sessionstore"):
        broken = broken_plugins()
    assert set(broken) == {"broken-import", "broken-register", "broken-scheme"}
    assert "ModuleNotFoundError" in broken["broken-import"]
    assert "no_such_plugin_module_for_tests" in broken["broken-import"]
    assert "cannot register" in broken["broken-register"]
    assert "ConfigurationError" in broken["broken-scheme"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "broken-import" in logged
    assert "broken-register" in logged
    # the healthy plugins still work
    assert "memory" in {d.scheme for d in installed_drivers()}
    async with open_store("memory://") as store:
        s = await store.create_session()
        assert await store.get_session(s.id) == s
    # an unknown scheme's error mentions the broken plugins (a likely cause)
    with pytest.raises(DriverNotFoundError) as info:
        open_store("nosuch://")
    assert "broken-import" in str(info.value)
    assert set(fresh_registry.broken) == set(broken)
    # the global registry never saw the fake entry points
    monkeypatch.undo()
    assert sessionstore.registry._registry is not fresh_registry
    assert "broken-import" not in broken_plugins()


class _Ordered:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def _record(self) -> None:
        self.log.append(self.name)


class _First(_Ordered):
    @hookimpl(tryfirst=True)
    def sessionstore_session_created(self, session: Session) -> None:
        self._record()


class _Plain(_Ordered):
    @hookimpl
    def sessionstore_session_created(self, session: Session) -> None:
        self._record()


class _Last(_Ordered):
    @hookimpl(trylast=True)
    def sessionstore_session_created(self, session: Session) -> None:
        self._record()


class _Wrapper(_Ordered):
    @hookimpl(wrapper=True)
    def sessionstore_session_created(self, session: Session) -> Iterator[None]:
        self._record()
        yield


@pytest.mark.asyncio
async def test_observers_run_in_pluggys_order_tryfirst_and_trylast_honoured(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    # registered so that registration order alone would give the opposite order
    plugins = [
        _Last("last", calls),
        _Plain("plain-1", calls),
        _Plain("plain-2", calls),
        _First("first", calls),
        _Wrapper("wrapper", calls),
        Raiser(),
    ]
    pm = plugin_manager()
    for plugin in plugins:
        pm.register(plugin)
    try:
        await store.create_session()
    finally:
        for plugin in plugins:
            pm.unregister(plugin)
    # tryfirst first, then the newest plain one first (pluggy's LIFO), trylast last; the
    # raising observer in between stops nobody; the wrapper is skipped with a warning
    assert calls == ["first", "plain-2", "plain-1", "last"]
    assert any("hook wrapper" in r.getMessage() for r in caplog.records)
    assert any("observer exploded" in str(r.exc_info) for r in caplog.records if r.exc_info)
