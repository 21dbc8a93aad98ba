"""``sessionstore conformance URL`` runs the suite against a live store, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys


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
