"""Every Python block of docs/adapters/adk.md runs, in order, as a reader runs it (the
repository's page runner, tests/docs/runner.py; the main suite's docs test does not
collect pages that need ADK)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.runner import fences, run_page

PAGE = Path(__file__).resolve().parents[3] / "docs" / "adapters" / "adk.md"


def test_adk_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SESSIONSTORE_URL", raising=False)
    run = run_page(PAGE)
    blocks = [line for line, info in fences(PAGE.read_text()) if info == "python"]
    assert run.ran == blocks, (run.ran, run.skipped)
