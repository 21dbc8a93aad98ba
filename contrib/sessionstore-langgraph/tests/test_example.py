"""The example runs as its docstring says: it pauses, and a second process resumes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _support import skip_without_event_log

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "review_agent.py"


def _run(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_example_pauses_and_resumes_across_processes(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'threads'}"
    skip_without_event_log(url)
    assert _run(url, cwd=tmp_path) == "paused: publish the release notes?\n"
    out = _run(url, "--resume", "yes", cwd=tmp_path)
    assert out.splitlines() == [
        "log: ['drafted the release notes', \"reviewer said 'yes'\", 'published']",
        "checkpoints: 5",
    ]
