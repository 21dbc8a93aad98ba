"""The docs runner and its fence catch what they are there to catch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .runner import DocExampleError, fences, postgres_rewrite, redis_rewrite, run_page
from .sandbox import SandboxViolation, sandboxed


def _page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_blocks_share_a_namespace_and_a_loop(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "```python\nimport asyncio\nawait asyncio.sleep(0)\n"
        "loop = asyncio.get_running_loop()\n```\n\n"
        "text\n\n<!-- invisible-code-block: python\nseen = [loop]\n-->\n\n"
        "```python\nassert asyncio.get_running_loop() is seen[0]\n"
        "await asyncio.sleep(0)\n```\n\n"
        "```python\nasync def main() -> int:\n    return 7\n\nanswer = asyncio.run(main())\n```\n",
    )
    run = run_page(page)
    assert run.ran == [1, 9, 13, 18]
    assert run.namespace["answer"] == 7


def test_a_failing_block_names_its_page_and_line(tmp_path: Path) -> None:
    page = _page(tmp_path, "# t\n\n```python\nx = 1\n```\n\n```python\nprint(flt)\n```\n")
    with pytest.raises(DocExampleError, match=r"page\.md:7: NameError: name 'flt'"):
        run_page(page)


def test_a_skip_must_say_why(tmp_path: Path) -> None:
    page = _page(tmp_path, "<!-- skip: next -->\n\n```python\nraise SystemExit\n```\n")
    with pytest.raises(DocExampleError, match="must say why"):
        run_page(page)
    reasoned = _page(
        tmp_path, '<!-- skip: next "needs a cluster" -->\n\n```python\nraise SystemExit\n```\n'
    )
    assert run_page(reasoned).skipped == {3: "needs a cluster"}


def test_writes_outside_the_workdir_are_refused(tmp_path: Path) -> None:
    workdir, outside = tmp_path / "work", tmp_path / "outside"
    workdir.mkdir()
    # docs/manager.md's backup example as it was: absolute paths outside any temp dir.
    page = _page(
        tmp_path,
        "```python\nfrom sessionstore import ManagerConfig, SessionPersistenceManager\n\n"
        f'config = ManagerConfig(backup_dir="{outside}/backups", max_backups=24)\n'
        f'async with SessionPersistenceManager("file://{outside}/sessions", '
        "config=config) as manager:\n    info = await manager.create_backup()\n```\n",
    )
    with sandboxed(workdir, set()) as fence, pytest.raises(DocExampleError):
        run_page(page)
    assert fence.violations
    assert not outside.exists(), "the sandbox let the write through"
    inside = _page(tmp_path, '```python\nopen("ok.txt", "w").write("x")\n```\n')
    with sandboxed(workdir, set()) as fence:
        import os

        os.chdir(workdir)
        try:
            run_page(inside)
        finally:
            os.chdir(tmp_path)
    assert not fence.violations
    assert (workdir / "ok.txt").read_text() == "x"


def test_only_the_given_servers_can_be_reached(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with sandboxed(tmp_path, {("127.0.0.1", port)}) as fence:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            with pytest.raises(SandboxViolation):
                socket.create_connection(("127.0.0.1", 6379), timeout=5)
            with pytest.raises(SandboxViolation):
                socket.getaddrinfo("cache.internal", 6380)
    assert len(fence.violations) == 2
    assert "6379" in fence.violations[0]


@pytest.mark.integration
def test_examples_start_no_processes(tmp_path: Path) -> None:
    page = _page(tmp_path, '```python\nimport subprocess\nsubprocess.run(["true"])\n```\n')
    with sandboxed(tmp_path, set()) as fence, pytest.raises(DocExampleError):
        run_page(page)
    assert fence.violations and "subprocess.Popen" in fence.violations[0]


def test_redis_urls_of_the_pages_point_at_the_private_server() -> None:
    rewrite = redis_rewrite("redis://127.0.0.1:7001/15")
    source = (
        'open_store("redis://localhost:6379/0?key_prefix=a:")\nmigrate(x, "redis://localhost:6379")'
    )
    assert rewrite(source) == (
        'open_store("redis://127.0.0.1:7001/15?key_prefix=a:")\nmigrate(x, "redis://127.0.0.1:7001/15")'
    )


def test_postgres_urls_of_the_pages_point_at_the_private_server() -> None:
    rewrite = postgres_rewrite("postgresql://postgres@127.0.0.1:7002/postgres")
    source = (
        'open_store("postgresql://app:secret@localhost:5432/app?max_size=20")\n'
        'open_store("postgres://localhost:5432/other")\n'
        'open_store("postgresql://db.example:5432/app")'
    )
    assert rewrite(source) == (
        'open_store("postgresql://postgres@127.0.0.1:7002/postgres?max_size=20")\n'
        'open_store("postgresql://postgres@127.0.0.1:7002/postgres")\n'
        'open_store("postgresql://db.example:5432/app")'
    )


def test_fences_finds_openers_only() -> None:
    text = "```python\na\n```\n\n````md\n```python\nnot a block\n```\n````\n\n```\nplain\n```\n"
    assert fences(text) == [(1, "python"), (5, "md"), (11, "")]
