"""Every script in examples/ runs, as a user would run it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# integration: the examples run as scripts
pytestmark = pytest.mark.integration

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_examples_exist() -> None:
    assert EXAMPLES, "examples/ holds no scripts"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SESSIONSTORE_URL"}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "an example should show what it does"
    assert "Traceback" not in result.stderr


def test_quickstart_output() -> None:
    script = next(p for p in EXAMPLES if p.name == "quickstart.py")
    result = subprocess.run(
        [sys.executable, str(script), "memory://"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "refused stale write" in result.stdout
    assert "transaction committed 2 writes" in result.stdout
    assert "sessions now: 2" in result.stdout
