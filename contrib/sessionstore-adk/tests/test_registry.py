"""ADK's service registry finds ``sessionstore+<scheme>://`` URIs, by ``services.py`` and by
``services.yaml``, the way ``adk web --session_service_uri ...`` looks them up, and ADK's
own schemes stay ADK's."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from google.adk.cli import service_registry
from google.adk.cli.fast_api import get_fast_api_app
from google.adk.cli.service_registry import ServiceRegistry, load_services_module
from google.adk.cli.utils.service_factory import create_session_service_from_options
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from sessionstore_adk import SessionStoreService, _ids, register_session_services, store_url

from sessionstore import SessionFilter, installed_drivers, open_store

ADK_SCHEMES = ("memory", "sqlite", "postgresql", "mysql", "agentengine")


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ADK's global registry, rebuilt for this test (the built-ins only), and a
    ``services`` module loaded by a test forgotten afterwards."""
    monkeypatch.setattr(service_registry, "_service_registry_instance", None)
    yield
    sys.modules.pop("services", None)


def _agents_dir(tmp_path: Path, **files: str) -> Path:
    agents = tmp_path / "agents"
    agent = agents / "hello_agent"
    agent.mkdir(parents=True)
    (agent / "__init__.py").write_text("from . import agent\n")
    (agent / "agent.py").write_text(
        "from google.adk.agents import LlmAgent\n"
        "root_agent = LlmAgent(name='hello_agent', model='gemini-2.0-flash')\n"
    )
    for name, text in files.items():
        (agents / name.replace("_", ".")).write_text(textwrap.dedent(text))
    return agents


def test_store_url_drops_only_the_prefix() -> None:
    assert store_url("sessionstore+redis://h:1/0?namespace=x") == "redis://h:1/0?namespace=x"
    assert store_url("sessionstore+file:///var/sessions") == "file:///var/sessions"
    assert store_url("memory://") == "memory://"


def test_every_installed_driver_gets_a_prefixed_scheme_and_no_builtin_is_touched() -> None:
    registry = ServiceRegistry()
    service_registry._register_builtin_services(registry)
    registered = register_session_services(registry)
    expected = {f"sessionstore+{d.scheme}" for d in installed_drivers()}
    assert set(registered) == expected
    assert {"sessionstore+memory", "sessionstore+redis", "sessionstore+file"} <= expected
    assert not set(registered) & set(ADK_SCHEMES)
    assert isinstance(registry.create_session_service("memory://"), InMemorySessionService)
    ours = registry.create_session_service("sessionstore+memory://", agents_dir="/x")
    assert isinstance(ours, SessionStoreService)
    # schemes with a "+" of their own resolve too (nothing connects before first use)
    cluster = registry.create_session_service("sessionstore+redis+cluster://127.0.0.1:1")
    assert isinstance(cluster, SessionStoreService)
    assert type(cluster.store).__name__ == "RedisStore"


async def test_services_py_registers_for_adk_web(tmp_path: Path, fresh_registry: None) -> None:
    agents = _agents_dir(
        tmp_path,
        services_py="""
            from sessionstore_adk import register_session_services

            register_session_services()
        """,
    )
    load_services_module(str(agents))
    url = f"sessionstore+file://{tmp_path / 'sessions'}"
    service = create_session_service_from_options(base_dir=agents, session_service_uri=url)
    assert isinstance(service, SessionStoreService)
    async with service:
        created = await service.create_session(app_name="hello_agent", user_id="u")
        got = await service.get_session(app_name="hello_agent", user_id="u", session_id=created.id)
        assert got == created
    # ADK's own schemes are still ADK's services
    sqlite = create_session_service_from_options(
        base_dir=agents, session_service_uri=f"sqlite:///{tmp_path / 'adk.db'}"
    )
    assert isinstance(sqlite, SqliteSessionService)


def test_services_yaml_names_the_class(tmp_path: Path, fresh_registry: None) -> None:
    agents = _agents_dir(
        tmp_path,
        services_yaml="""
            services:
              - scheme: sessionstore+memory
                type: session
                class: sessionstore_adk.SessionStoreService
        """,
    )
    load_services_module(str(agents))
    service = create_session_service_from_options(
        base_dir=agents, session_service_uri="sessionstore+memory://"
    )
    assert isinstance(service, SessionStoreService)


async def test_store_options_come_from_the_url_and_session_db_kwargs(
    tmp_path: Path, fresh_registry: None
) -> None:
    register_session_services()
    root = tmp_path / "sessions"
    service = create_session_service_from_options(
        base_dir=tmp_path,
        session_service_uri=f"sessionstore+file://{root}?namespace=from-url",
        session_db_kwargs={"ttl": 3600},
    )
    assert isinstance(service, SessionStoreService)
    async with service:
        await service.create_session(app_name="a", user_id="u", session_id="s")
    async with open_store(f"file://{root}", namespace="from-url") as store:
        [stored] = (
            await store.list_sessions(SessionFilter(tags_all={_ids.user_tag("a", "u")}))
        ).items
        assert stored.metadata["adk_session"] == "s"
        assert stored.expires_at is not None  # ttl=3600 from --session_db_kwargs


def test_the_adk_web_app_serves_sessions_from_the_store(
    tmp_path: Path, fresh_registry: None
) -> None:
    """``adk web`` / ``adk api_server`` build this app: sessions made over its REST API
    land in the sessionstore store named by ``--session_service_uri``."""
    agents = _agents_dir(
        tmp_path,
        services_py="""
            from sessionstore_adk import register_session_services

            register_session_services()
        """,
    )
    sessions = tmp_path / "sessions"
    app = get_fast_api_app(
        agents_dir=str(agents),
        session_service_uri=f"sessionstore+file://{sessions}",
        web=False,
        use_local_storage=False,
    )
    with TestClient(app) as client:
        made = client.post(
            "/apps/hello_agent/users/u1/sessions", json={"state": {"user:lang": "en", "n": 1}}
        )
        assert made.status_code == 200, made.text
        sid = made.json()["id"]
        got = client.get(f"/apps/hello_agent/users/u1/sessions/{sid}")
        assert got.status_code == 200
        assert got.json()["state"] == {"user:lang": "en", "n": 1}
        listed = client.get("/apps/hello_agent/users/u1/sessions")
        assert [s["id"] for s in listed.json()] == [sid]
    assert any(sessions.iterdir()), "the file store holds the session"


@pytest.mark.integration
def test_adk_api_server_command_uses_the_prefixed_scheme(tmp_path: Path) -> None:
    """The real command line: ``adk api_server --session_service_uri sessionstore+file://...``
    (``adk web`` is the same server with the web UI) serves sessions from the store."""
    agents = _agents_dir(
        tmp_path,
        services_py="""
            from sessionstore_adk import register_session_services

            register_session_services()
        """,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sessions = tmp_path / "sessions"
    adk = Path(sys.executable).with_name("adk")
    server = subprocess.Popen(
        [
            str(adk),
            "api_server",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--session_service_uri=sessionstore+file://{sessions}",
            str(agents),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{base}/list-apps", timeout=2).raise_for_status()
                break
            except httpx.HTTPError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    why = server.stderr.read().decode() if server.stderr else ""
                    raise AssertionError(why) from exc
                time.sleep(0.3)
        made = httpx.post(f"{base}/apps/hello_agent/users/u1/sessions", json={"state": {"k": 1}})
        assert made.status_code == 200, made.text
        sid = made.json()["id"]
        got = httpx.get(f"{base}/apps/hello_agent/users/u1/sessions/{sid}")
        assert got.json()["state"] == {"k": 1}
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert any(sessions.iterdir()), "the file store holds the session"
