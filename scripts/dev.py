#!/usr/bin/env python3
"""Set up and run sessionstore on a fresh machine that has only Python 3.11+.

    python3 scripts/dev.py demo           # create .venv, install, run the quickstart on file://./sessions
    python3 scripts/dev.py test           # create .venv from the lock, ruff, mypy, docs, pytest
    python3 scripts/dev.py fast           # ruff + the fast tests (-m "not integration"): no servers
    python3 scripts/dev.py test --lowest  # a second venv at the lowest supported versions, a subset
    python3 scripts/dev.py bench          # run the benchmarks (ratios to same-run floors)
    python3 scripts/dev.py lock           # refresh requirements/*.txt from pyproject.toml
    python3 scripts/dev.py docs           # serve the docs site (mkdocs serve) on 127.0.0.1:8000

Extra arguments after ``test`` go to pytest (e.g. ``-k cursor`` or ``-m slow``).

Every install comes from a lock file in ``requirements/`` with pinned versions and
hashes (``pip install --require-hashes``), including the build backend of the editable
install, so a fresh clone tests exactly the versions that were tested before it. The
virtualenvs live in ``.venv`` and ``.venv-lowest`` (override the first with
$SESSIONSTORE_VENV); each is reinstalled only when its lock file or pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
VENV = Path(os.environ.get("SESSIONSTORE_VENV", ROOT / ".venv"))
LOWEST_VENV = ROOT / ".venv-lowest"
# The lock tool. Pinned here because it makes the locks; refresh it by hand, on purpose.
UV = "uv==0.13.9"
# The part of the suite that runs against the lowest supported versions: what touches
# the runtime dependencies directly (orjson, pluggy, sortedcontainers, redis-py, asyncpg).
LOWEST_TESTS = [
    "tests/test_codec.py",
    "tests/test_registry.py",
    "tests/test_query.py",
    "tests/redis",
    "tests/postgres",
    "tests/conformance/test_postgres_conformance.py",
]


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def run(*cmd: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    say(" ".join(str(c) for c in cmd))
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, check=False, env=env)
    if check and result.returncode != 0:
        sys.exit(result.returncode)
    return result.returncode


def python_in(env_dir: Path) -> Path:
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    return bin_dir / ("python.exe" if os.name == "nt" else "python")


def ensure_env(lock: str, env_dir: Path = VENV) -> Path:
    """A virtualenv holding exactly ``requirements/<lock>.txt`` and sessionstore, editable."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before any install
        sys.exit(f"sessionstore needs Python 3.11+, this is {sys.version.split()[0]}")
    py = python_in(env_dir)
    if not py.exists():
        say(f"creating virtualenv {env_dir}")
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    lock_file = REQUIREMENTS / f"{lock}.txt"
    stamp = env_dir / f".sessionstore-{lock}.stamp"
    digest = hashlib.sha256()
    for source in (lock_file, ROOT / "pyproject.toml"):
        digest.update(source.read_bytes())
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return py
    for other in env_dir.glob(".sessionstore-*.stamp"):
        other.unlink()
    # --require-hashes: every package pinned and verified; --no-deps: the lock is the whole
    # set, nothing is resolved at install time.
    pip = (py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    run(*pip, "--require-hashes", "--no-deps", "-r", lock_file)
    run(*pip, "--no-deps", "--no-build-isolation", "-e", ".")
    run(py, "-m", "pip", "check")
    stamp.write_text(digest.hexdigest())
    return py


def demo() -> None:
    py = ensure_env("demo")
    # file://: the sessions are files in ./sessions and survive the next run
    run(py, "examples/quickstart.py", "file://./sessions")


def test(pytest_args: list[str]) -> None:
    if "--lowest" in pytest_args:
        pytest_args = [a for a in pytest_args if a != "--lowest"]
        test_lowest(pytest_args)
        return
    py = ensure_env("dev")
    run(py, "-m", "ruff", "check", ".")
    run(py, "-m", "ruff", "format", "--check", ".")
    run(py, "-m", "mypy")
    build_site(py)
    code = run(py, "-m", "pytest", *pytest_args, check=False)
    sys.exit(code)


def fast(pytest_args: list[str]) -> None:
    """The fast set while developing: ruff, then ``pytest -m "not integration"`` (no
    Redis/PostgreSQL server, no subprocess, no soak; tests/integration.py). CI runs both
    sets through ``test``."""
    py = ensure_env("dev")
    run(py, "-m", "ruff", "check", ".")
    code = run(py, "-m", "pytest", "-m", "not integration", *pytest_args, check=False)
    sys.exit(code)


# Pages of the built site and what each must show: the API reference pages an entry that
# mkdocstrings rendered (its anchor), so a reference that silently rendered nothing fails.
SITE_CHECKS = {
    "reference/store/index.html": 'id="sessionstore.registry.open_store"',
    "reference/manager/index.html": 'id="sessionstore.manager.SessionPersistenceManager"',
    "reference/backup/index.html": 'id="sessionstore.backup.create_backup"',
    "reference/testing/index.html": 'id="sessionstore.testing.StoreConformance"',
    "reference/driver/index.html": 'id="sessionstore.driver.StorePrimitives"',
    "reference/errors/index.html": 'id="sessionstore.errors.SessionConflictError"',
    "reference/query/index.html": 'id="sessionstore.query.SessionFilter"',
    "architecture/index.html": "The data flow of one write",
}


def mkdocs_env() -> dict[str, str]:
    # mkdocs-material prints a multi-line notice about its successor on every run.
    return {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build_site(py: Path) -> None:
    """``mkdocs build --strict`` into site/ (a broken link or reference fails), then check
    that the generated pages have content."""
    # Not --quiet: it hides warnings from --strict, which then passes a broken reference.
    run(py, "-m", "mkdocs", "build", "--strict", env=mkdocs_env())
    site = ROOT / "site"
    for page, needle in SITE_CHECKS.items():
        path = site / page
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if needle not in text:
            sys.exit(f"[dev] the built site lacks {needle!r} in {path}")
    say(f"docs site built: {site}")


def docs(args: list[str]) -> None:
    """Serve the docs site, rebuilt on every change (``mkdocs serve``; extra args go to it)."""
    py = ensure_env("dev")
    code = run(py, "-m", "mkdocs", "serve", *args, check=False, env=mkdocs_env())
    sys.exit(code)


def test_lowest(pytest_args: list[str]) -> None:
    """The lowest-versions run: the runtime dependencies at their floors, a subset."""
    py = ensure_env("lowest", LOWEST_VENV)
    run(py, "-c", "import redis, orjson, pluggy; print('redis', redis.__version__)")
    pytest = (py, "-m", "pytest", "-p", "no:cacheprovider")
    code = run(*pytest, *LOWEST_TESTS, *pytest_args, check=False)
    sys.exit(code)


def bench(args: list[str]) -> None:
    py = ensure_env("dev")
    for module in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        run(py, "-m", f"benchmarks.{module.stem}", *args)


def lock(args: list[str]) -> None:
    """Resolve the lock files again (newest versions the ranges in pyproject.toml admit).

    uv resolves for every platform and every Python from 3.11 up (``--universal``) and
    writes pip's requirements format with hashes, which plain pip installs.
    """
    py = ensure_env("dev")
    run(py, "-m", "pip", "install", "--quiet", UV)
    uv = python_in(VENV).parent / "uv"
    common = ("pip", "compile", "--universal", "--python-version", "3.11")
    common += ("--generate-hashes", "--no-header", "--quiet", *args)
    build = REQUIREMENTS / "build.in"
    locks = {
        "demo": ("pyproject.toml", build, "--extra", "cli"),
        "dev": ("pyproject.toml", build, "--extra", "dev"),
        "lowest": ("pyproject.toml", build, "--extra", "dev", "-c", REQUIREMENTS / "lowest.in"),
    }
    for name, sources in locks.items():
        out = REQUIREMENTS / f"{name}.txt"
        run(uv, *common, *sources, "-o", out)
    say("locks refreshed: run `python3 scripts/dev.py test` and commit requirements/")


def main() -> None:
    commands = {"demo", "test", "fast", "bench", "lock", "docs"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "demo":
        demo()
    elif command == "test":
        test(rest)
    elif command == "fast":
        fast(rest)
    elif command == "lock":
        lock(rest)
    elif command == "docs":
        docs(rest)
    else:
        bench(rest)


if __name__ == "__main__":
    main()
