"""Every Python block of docs/adapters/langgraph.md runs (the main suite's docs tests
cannot: LangGraph is only in the adapters' environment), with the repository's page
runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import skip_without_event_log

from tests.docs.runner import run_page

PAGE = Path(__file__).resolve().parents[3] / "docs" / "adapters" / "langgraph.md"


def test_the_langgraph_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip_without_event_log(f"file://{tmp_path}")  # the page's examples use file://
    monkeypatch.chdir(tmp_path)
    run = run_page(PAGE)
    assert len(run.ran) == 3 and not run.skipped
    assert (tmp_path / "threads").is_dir()  # the file store of the first example
