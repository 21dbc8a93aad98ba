#!/usr/bin/env python3
"""Set up and run sessionstore on a fresh machine that has only Python 3.11+.

    python3 scripts/dev.py demo           # create .venv, install, run the quickstart on file://./sessions
    python3 scripts/dev.py test           # .venv from the lock, ruff, mypy, docs, pytest -n 2
    python3 scripts/dev.py fast           # ruff + the fast tests (-m "not integration"): no servers
    python3 scripts/dev.py test --lowest  # a second venv at the lowest supported versions, a subset
    python3 scripts/dev.py test --adapters  # the framework adapters (contrib/), from their wheels
    python3 scripts/dev.py test --adapters-lowest  # ... each framework at its range's floor
    python3 scripts/dev.py bench          # run the benchmarks (ratios to same-run floors)
    python3 scripts/dev.py lock           # refresh requirements/*.txt from pyproject.toml
    python3 scripts/dev.py lock adapters  # ... only requirements/adapters.txt (or dev, ...)
    python3 scripts/dev.py docs           # serve the docs site (mkdocs serve) on 127.0.0.1:8000

Extra arguments after ``test`` go to pytest (e.g. ``-k cursor`` or ``-m slow``). ``test``
runs pytest on pytest-xdist workers (``-n 2 --dist loadscope``); ``-n 0`` runs serially.

Every install comes from a lock file in ``requirements/`` with pinned versions and
hashes (``pip install --require-hashes``), including the build backend of the editable
install, so a fresh clone tests exactly the versions that were tested before it. The
virtualenvs live in ``.venv``, ``.venv-lowest``, ``.venv-adapters`` and
``.venv-adapters-lowest`` (override the first with $SESSIONSTORE_VENV); each is
reinstalled only when its lock file or pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
VENV = Path(os.environ.get("SESSIONSTORE_VENV", ROOT / ".venv"))
LOWEST_VENV = ROOT / ".venv-lowest"
ADAPTERS_VENV = ROOT / ".venv-adapters"
# The same adapters with each framework at the floor of its range (requirements/
# adapters-lowest.txt, from adapters.in constrained by adapters-lowest.in).
ADAPTERS_LOWEST_VENV = ROOT / ".venv-adapters-lowest"
# The framework adapters: the extra of the main package -> its distribution's directory
# (contrib/sessionstore-<extra>/, package sessionstore_<extra with _>). One environment
# holds the three frameworks (requirements/adapters.txt, from requirements/adapters.in).
ADAPTERS = ("openai-agents", "langgraph", "adk")
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


def run(
    *cmd: str | Path,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> int:
    say(" ".join(str(c) for c in cmd) + ("" if cwd == ROOT else f"  (in {cwd.relative_to(ROOT)})"))
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, check=False, env=env)
    if check and result.returncode != 0:
        sys.exit(result.returncode)
    return result.returncode


def python_in(env_dir: Path) -> Path:
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    return bin_dir / ("python.exe" if os.name == "nt" else "python")


def ensure_env(lock: str, env_dir: Path = VENV, *, editable: bool = True) -> Path:
    """A virtualenv holding exactly ``requirements/<lock>.txt`` and (``editable``)
    sessionstore, editable."""
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
    if editable:
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
    if "--adapters-lowest" in pytest_args:
        rest = [a for a in pytest_args if a != "--adapters-lowest"]
        test_adapters(rest, "adapters-lowest", ADAPTERS_LOWEST_VENV)
        return
    if "--adapters" in pytest_args:
        test_adapters([a for a in pytest_args if a != "--adapters"], "adapters", ADAPTERS_VENV)
        return
    py = ensure_env("dev")
    run(py, "-m", "ruff", "check", ".")
    run(py, "-m", "ruff", "format", "--check", ".")
    run(py, "-m", "mypy")
    build_site(py)
    # The slowest tests are printed at the end: the main suite has a time budget in CI.
    durations = [] if any(a.startswith("--durations") for a in pytest_args) else ["--durations=15"]
    spread = spread_suite(pytest_args)
    code = run(py, "-m", "pytest", *durations, *spread, *pytest_args, check=False)
    sys.exit(code)


def chose_workers(pytest_args: list[str]) -> bool:
    """The caller chose the pytest-xdist workers (-n / --numprocesses, -p no:xdist)."""
    return any(a.startswith(("-n", "--numprocesses")) or "no:xdist" in a for a in pytest_args)


def spread_suite(pytest_args: list[str]) -> list[str]:
    """The whole suite over pytest-xdist workers (docs/decisions.md, "The main suite runs
    on two workers"): one per core, at least 2 and at most 4, ``--dist loadscope`` (a test
    class, or a module's functions, on one worker, in the order written). Each worker
    starts its own private servers when a test of it first needs one."""
    if chose_workers(pytest_args):
        return []
    workers = min(max(os.cpu_count() or 1, 2), 4)
    dist = [] if any(a.startswith("--dist") for a in pytest_args) else ["--dist", "loadscope"]
    return ["-n", str(workers), *dist]


def fast(pytest_args: list[str]) -> None:
    """The fast set while developing: ruff, then ``pytest -m "not integration"`` (no
    Redis/PostgreSQL server, no subprocess, no soak; tests/integration.py). CI runs both
    sets through ``test``."""
    py = ensure_env("dev")
    run(py, "-m", "ruff", "check", ".")
    # One pytest worker per core (pytest-xdist), unless the caller chose (-n, -p no:xdist).
    spread = [] if chose_workers(pytest_args) else ["-n", "auto"]
    code = run(py, "-m", "pytest", "-m", "not integration", *spread, *pytest_args, check=False)
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
    pytest = (py, "-m", "pytest", "-p", "no:cacheprovider", *spread_suite(pytest_args))
    code = run(*pytest, *LOWEST_TESTS, *pytest_args, check=False)
    sys.exit(code)


def adapter_dir(extra: str) -> Path:
    return ROOT / "contrib" / f"sessionstore-{extra}"


def link_repo_tests(py: Path, env_dir: Path) -> None:
    """Make this repository's ``tests`` package importable in ``env_dir`` (the adapters'
    tests reuse its server fixtures, tests/adapters/plugin.py) without putting the source
    tree on ``sys.path``: sessionstore itself must come from its wheel there."""
    holder = env_dir / "repo-tests"
    link = holder / "tests"
    holder.mkdir(exist_ok=True)
    if not link.is_symlink() or link.resolve() != (ROOT / "tests").resolve():
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT / "tests", target_is_directory=True)
    out = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(out.stdout.strip(), "sessionstore_repo_tests.pth").write_text(f"{holder}\n")


def test_adapters(pytest_args: list[str], lock_name: str, env_dir: Path) -> None:
    """The framework adapters, as their users get them: every ``contrib/sessionstore-<x>``
    adapter and sessionstore are built into wheels, installed into ``.venv-adapters``
    (the three frameworks, requirements/adapters.txt) as extras of sessionstore from those
    wheels only (``--no-index --find-links``), then each adapter's mypy --strict and its
    tests run (in the adapter's directory, its own pytest config). An adapter whose
    directory does not exist yet is skipped. ``--adapters-lowest`` does the same in
    ``.venv-adapters-lowest`` from requirements/adapters-lowest.txt: each framework at the
    floor of its adapter's range."""
    started = time.monotonic()
    present = [extra for extra in ADAPTERS if (adapter_dir(extra) / "pyproject.toml").exists()]
    for extra in ADAPTERS:
        if extra not in present:
            say(f"adapter {extra}: {adapter_dir(extra).relative_to(ROOT)} does not exist, skipped")
    if not present:
        say("no adapter to test")
        return
    py = ensure_env(lock_name, env_dir, editable=False)
    pip = (py, "-m", "pip", "--disable-pip-version-check")
    wheels = Path(tempfile.mkdtemp(prefix="sessionstore-wheels-"))
    try:
        for source in (ROOT, *(adapter_dir(extra) for extra in present)):
            # The build backend comes from the lock too (no build isolation).
            run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheels, source)
        ours = ["sessionstore", *(f"sessionstore-{extra}" for extra in present)]
        run(*pip, "uninstall", "--quiet", "--yes", *ours)
        # Our own packages from the wheels only; every dependency is already installed
        # from the lock, so an extra naming something the lock lacks fails here.
        spec = f"sessionstore[{','.join(present)}]"
        run(*pip, "install", "--quiet", "--no-index", "--find-links", wheels, spec)
        run(*pip, "check")
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    link_repo_tests(py, env_dir)
    failed: list[str] = []
    for extra in present:
        where = adapter_dir(extra)
        say(f"adapter {extra}")
        if run(py, "-m", "mypy", check=False, cwd=where) != 0:
            failed.append(f"{extra} (mypy)")
        pytest = (py, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args)
        if run(*pytest, check=False, cwd=where) != 0:
            failed.append(f"{extra} (pytest)")
    say(f"{lock_name}: {', '.join(present)} in {time.monotonic() - started:.0f} s")
    if failed:
        sys.exit(f"[dev] {lock_name} failed: {', '.join(failed)}")


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
    build = REQUIREMENTS / "build.in"
    locks = {
        "demo": ("pyproject.toml", build, "--extra", "cli"),
        "dev": ("pyproject.toml", build, "--extra", "dev"),
        "lowest": ("pyproject.toml", build, "--extra", "dev", "-c", REQUIREMENTS / "lowest.in"),
        # The three frameworks of the adapters and their test dependencies, with the dev
        # toolchain (the adapters' mypy, pytest, the private servers' fallbacks).
        "adapters": ("pyproject.toml", build, REQUIREMENTS / "adapters.in", "--extra", "dev"),
        # The same, each framework at the floor of its adapter's range (adapters-lowest.in).
        "adapters-lowest": (
            "pyproject.toml",
            build,
            REQUIREMENTS / "adapters.in",
            "--extra",
            "dev",
            "-c",
            REQUIREMENTS / "adapters-lowest.in",
        ),
    }
    # `lock adapters` refreshes that lock only; the other arguments go to uv.
    chosen = [a for a in args if a in locks] or list(locks)
    common += ("--generate-hashes", "--no-header", "--quiet", *(a for a in args if a not in locks))
    for name in chosen:
        out = REQUIREMENTS / f"{name}.txt"
        run(uv, *common, *locks[name], "-o", out)
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
