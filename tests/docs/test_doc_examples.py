"""Every Python block of README.md and docs/*.md runs, in a temp dir, against private
servers only (see runner.py for how a page runs, sandbox.py for the fence)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import sessionstore

from .runner import (
    DOC_POSTGRES_URL,
    INVISIBLE,
    PYTHON_SPELLINGS,
    fences,
    postgres_rewrite,
    redis_rewrite,
    rewrites,
    run_page,
)
from .sandbox import sandboxed

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The example external driver: the driver-author guide imports it as its users would.
ACME = ROOT / "contrib" / "sessionstore-acme"
# The database of the private server the pages' redis://localhost:6379/0 becomes; flushed
# before each page (the other Redis tests use database 0 and their own namespaces).
DOCS_DB = 15
# Blocks that cannot run here, each marked `<!-- skip: next "why" -->`: keep them few.
MAX_SKIPPED = 3
SKIP = re.compile(r"^[ \t]*<!--\s*skip:\s*(\w+)", re.MULTILINE)


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def page_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, set[tuple[str, int]]]]:
    """The page's working directory and the endpoints it may reach; plugins a page
    registers are unregistered afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SESSIONSTORE_URL", raising=False)
    monkeypatch.syspath_prepend(str(ACME))
    manager = sessionstore.plugin_manager()
    before = set(manager.get_plugins())
    yield tmp_path, set()
    for plugin in set(manager.get_plugins()) - before:
        manager.unregister(plugin)
    for name in [m for m in sys.modules if m.split(".")[0] == "acme_sessionstore"]:
        del sys.modules[name]


def _needs_server(page: Path) -> bool:
    text = page.read_text()
    return bool(DOC_POSTGRES_URL.search(text)) or "redis://localhost:6379" in text


# integration: a page that names a server runs against a private one
RUNNABLE = [
    pytest.param(page, id=_page_id(page), marks=[pytest.mark.integration])
    if _needs_server(page)
    else pytest.param(page, id=_page_id(page))
    for page in PAGES
]


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_runs(
    page: Path,
    page_env: tuple[Path, set[tuple[str, int]]],
    request: pytest.FixtureRequest,
) -> None:
    workdir, endpoints = page_env
    steps = []
    if DOC_POSTGRES_URL.search(page.read_text()):
        server = urlsplit(request.getfixturevalue("postgres_url"))
        assert server.hostname is not None and server.port is not None
        endpoints.add((server.hostname, server.port))
        steps.append(postgres_rewrite(server.geturl()))
    if "redis://localhost:6379" in page.read_text():
        import redis

        server = urlsplit(request.getfixturevalue("redis_url"))
        assert server.hostname is not None and server.port is not None
        url = server._replace(path=f"/{DOCS_DB}").geturl()
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        endpoints.add((server.hostname, server.port))
        steps.append(redis_rewrite(url))
    rewrite = rewrites(*steps)
    before = set(ROOT.iterdir())
    with sandboxed(workdir, endpoints) as fence:
        run = run_page(page, rewrite=rewrite)
    assert not fence.violations, fence.violations
    assert set(ROOT.iterdir()) == before, "a page wrote into the checkout"
    text = page.read_text()
    blocks = [line for line, info in fences(text) if info == "python"]
    invisible = len(INVISIBLE.findall(text))
    assert len(run.ran) + len(run.skipped) == len(blocks) + invisible, (
        f"ran {run.ran}, skipped {run.skipped}, blocks at {blocks}"
    )


def test_pages_are_found() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "guide.md", "manager.md", "backup.md", "architecture.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_fence_names_its_language(page: Path) -> None:
    """A block without a language, or Python spelled other than ``python``, would not be
    run: it is refused here instead."""
    for line, info in fences(page.read_text()):
        where = f"{_page_id(page)}:{line}"
        assert info, f"{where}: a fenced block without a language (```text for plain text)"
        language = info.split()[0]
        assert info == "python" or language not in PYTHON_SPELLINGS, (
            f"{where}: write ```python so that the block is run"
        )


def test_architecture_page_names_real_files() -> None:
    """Every file and module the architecture page names exists: a module moved or
    renamed must take the page along."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    homes = [ROOT, ROOT / "sessionstore", *ROOT.glob("sessionstore/*/"), *ROOT.glob("drivers/*/")]
    named = set(re.findall(r"`([\w/.]+\.py|[\w/]+/)`", text))
    assert len(named) > 40, "the page should say where things live"
    missing = sorted(n for n in named if not any((home / n).exists() for home in homes))
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_few_blocks_are_skipped() -> None:
    actions = [a for p in PAGES for a in SKIP.findall(p.read_text())]
    assert set(actions) <= {"next"}, "skip only single blocks (`skip: next`), each with its reason"
    assert len(actions) <= MAX_SKIPPED, f"{len(actions)} blocks skipped: make them run instead"
