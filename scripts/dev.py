#!/usr/bin/env python3
"""Set up and run sessionstore on a fresh machine that has only Python 3.11+.

    python3 scripts/dev.py demo     # create .venv, install, run the quickstart on file://./sessions
    python3 scripts/dev.py test     # create .venv, install dev extras, ruff + mypy + pytest
    python3 scripts/dev.py bench    # run the benchmarks (ratios to same-run floors)

Extra arguments after ``test`` go to pytest (e.g. ``-k cursor`` or ``-m slow``).
The virtualenv lives in ``.venv`` (override with $SESSIONSTORE_VENV); it is reinstalled
only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("SESSIONSTORE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def run(*cmd: str | Path, check: bool = True) -> int:
    say(" ".join(str(c) for c in cmd))
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, check=False)
    if check and result.returncode != 0:
        sys.exit(result.returncode)
    return result.returncode


def ensure_env(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before any install
        sys.exit(f"sessionstore needs Python 3.11+, this is {sys.version.split()[0]}")
    if not PY.exists():
        say(f"creating virtualenv {VENV}")
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    stamp = VENV / f".sessionstore-{extras}.stamp"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]")
    stamp.write_text(digest)


def demo() -> None:
    ensure_env("cli")
    # file://: the sessions are files in ./sessions and survive the next run
    run(PY, "examples/quickstart.py", "file://./sessions")


def test(pytest_args: list[str]) -> None:
    ensure_env("dev")
    run(PY, "-m", "ruff", "check", ".")
    run(PY, "-m", "ruff", "format", "--check", ".")
    run(PY, "-m", "mypy")
    code = run(PY, "-m", "pytest", *pytest_args, check=False)
    sys.exit(code)


def bench(args: list[str]) -> None:
    ensure_env("dev")
    for module in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        run(PY, "-m", f"benchmarks.{module.stem}", *args)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test", "bench"):
        sys.exit(__doc__)
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "demo":
        demo()
    elif command == "test":
        test(rest)
    else:
        bench(rest)


if __name__ == "__main__":
    main()
