"""``sessionstore conformance URL`` runs the suite against a live store, as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionstore import open_store

# integration: the conformance CLI runs in subprocesses
pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionstore.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_conformance_json_summary_per_mixin() -> None:
    result = _cli("conformance", "memory://?namespace=cli", "--json")
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    summary = json.loads(result.stdout)
    assert summary["url"] == "memory://?namespace=cli"
    assert summary["totals"]["failed"] == 0
    assert summary["totals"]["passed"] > 80
    for mixin in ("CrudTests", "QueryTests", "TransactionTests", "StateMachineTests"):
        assert summary["mixins"][mixin]["passed"] >= 1, mixin
    # a private memory:// store cannot share a namespace between store objects: skipped, not failed
    assert summary["mixins"]["ConcurrencyTests"]["skipped"] == 1


def test_conformance_table_and_keyword() -> None:
    result = _cli("conformance", "memory://", "-k", "cursor")
    assert result.returncode == 0, result.stderr
    assert "QueryTests" in result.stdout
    assert "CrudTests" not in result.stdout


def test_conformance_errors() -> None:
    none = _cli("conformance", "memory://", "-k", "no_such_test_anywhere")
    assert none.returncode == 2
    assert "no conformance test matched" in none.stderr
    bad = _cli("conformance", "nosuch://x")
    assert bad.returncode == 3
    assert bad.stderr.startswith("error: no driver for scheme 'nosuch'")
    assert "Traceback" not in bad.stderr


def test_keyword_takes_the_mixin_names_of_the_summary() -> None:
    for keyword in ("CrudTests", "crud"):
        result = _cli("conformance", "memory://", "-k", keyword, "--json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert list(summary["mixins"]) == ["CrudTests"], keyword
        assert summary["mixins"]["CrudTests"]["passed"] >= 10
    both = json.loads(_cli("conformance", "memory://", "-k", "crud or versioning", "--json").stdout)
    assert sorted(both["mixins"]) == ["CrudTests", "VersioningTests"]


def test_only_the_table_unless_verbose() -> None:
    quiet = _cli("conformance", "memory://", "-k", "CrudTests")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("Conformance of memory://"), quiet.stdout[:300]
    assert quiet.stderr == ""
    for pytest_output in ("passed in", "[100%]", "Warning", "...."):
        assert pytest_output not in quiet.stdout, pytest_output
    verbose = _cli("conformance", "memory://", "-k", "CrudTests", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "passed" in verbose.stdout and "[100%]" in verbose.stdout
    assert "Conformance of memory://" in verbose.stdout
    as_json = _cli("conformance", "memory://", "-k", "CrudTests", "--json", "-v")
    assert json.loads(as_json.stdout)["totals"]["failed"] == 0  # pytest's output on stderr
    assert "passed" in as_json.stderr


def test_failures_are_listed_under_the_table(tmp_path: Path) -> None:
    plugin = tmp_path / "conf_failing_plugin.py"
    plugin.write_text(
        "import pytest\n"
        "@pytest.hookimpl(hookwrapper=True)\n"
        "def pytest_runtest_call(item):\n"
        "    if item.name == 'test_create_defaults':\n"
        "        raise AssertionError('planted failure')\n"
        "    yield\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path),
           os.environ.get("PYTHONPATH")])), "PYTEST_PLUGINS": "conf_failing_plugin"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "sessionstore.cli", "conformance", "memory://", "-k", "crud"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED CrudTests.test_create_defaults: " in result.stdout
    assert "planted failure" in result.stdout
    assert "short test summary" not in result.stdout  # pytest's own report stays back


def test_a_file_store_is_left_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "store"

    async def seed() -> None:
        async with open_store(f"file://{root}") as store:
            await store.create_session(id="real-data", data={"keep": True})

    asyncio.run(seed())
    before = _tree(root)
    result = _cli(
        "conformance", f"file://{root}", "-k", "IsolationTests or StateMachineTests or crud",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    summary = json.loads(result.stdout)
    assert summary["mixins"]["StateMachineTests"]["passed"] == 1
    assert summary["mixins"]["IsolationTests"]["passed"] >= 3
    after = _tree(root)
    assert not [p for p in after if "conf-" in p], [p for p in after if "conf-" in p][:5]
    assert after == before


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
