"""The third-party path, end to end, in a throwaway virtualenv.

``contrib/sessionstore-acme`` is what a third party publishes. It is copied to a temp
dir and installed, together with sessionstore itself (a normal, non-editable install of
this checkout), into a fresh virtualenv, where

* ``open_store("acme://")`` finds the driver through its entry point;
* the driver's one-file conformance test passes;
* a second distribution whose plugin module fails to import breaks nothing, and is
  reported by ``broken_plugins()`` and ``sessionstore drivers --json``.

One virtualenv serves the whole module; pip's cache is left on, so reruns take seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessionstore.testing import EventLogTests, StoreConformance

# integration: installs and runs the example third-party driver
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ACME = ROOT / "contrib" / "sessionstore-acme"
BROKEN_REASON = "RuntimeError: broken-plugin refuses to import"


BROKEN_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "broken-plugin"
version = "0.0.1"

[project.entry-points.sessionstore]
broken = "broken_plugin"

[tool.hatch.build.targets.wheel]
packages = ["broken_plugin"]
"""


def _clean_env() -> dict[str, str]:
    """This environment minus what would leak the checkout or the outer venv into the new one."""
    leaks = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_NO_CACHE_DIR")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in leaks and not key.startswith(("SESSIONSTORE_", "PYTEST_"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@dataclass
class Venv:
    """The throwaway virtualenv and the copies installed into it."""

    root: Path
    workdir: Path
    acme: Path

    @property
    def python(self) -> Path:
        return self.root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    def run(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's python (in the work dir, so the checkout is never on sys.path)."""
        result = subprocess.run(
            [str(self.python), *args],
            cwd=cwd or self.workdir,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(args)[:200]} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def pip_install(self, *targets: str | Path) -> None:
        self.run("-m", "pip", "install", "--quiet", *map(str, targets))


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    work = tmp_path_factory.mktemp("third-party")
    acme = work / "sessionstore-acme"
    shutil.copytree(
        ACME,
        acme,
        ignore=shutil.ignore_patterns(
            ".hypothesis", ".pytest_cache", "__pycache__", "*.egg-info", "build", "dist"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "venv", str(work / "venv")],
        check=True,
        env=_clean_env(),
        capture_output=True,
    )
    env = Venv(work / "venv", work, acme)
    # One resolution: the acme distribution's "sessionstore[testing]" is this checkout.
    env.pip_install(f"{ROOT}[testing,cli]", acme)
    yield env
    shutil.rmtree(work, ignore_errors=True)


def test_open_store_finds_the_installed_acme_driver(venv: Venv) -> None:
    code = textwrap.dedent(
        """
        import asyncio
        import sessionstore
        from acme_sessionstore import AcmeStore

        async def main():
            store = sessionstore.open_store("acme://")
            assert type(store) is AcmeStore, type(store)
            async with store:
                s = await store.create_session(processor_id="p", data={"k": [1]}, tags={"t"})
                got = await store.get_session(s.id)
                assert got == s and got.data == {"k": [1]}, got
            assert sessionstore.open_store("acme://?namespace=x").namespace == "x"
            print(sessionstore.__file__)

        asyncio.run(main())
        """
    )
    installed_at = Path(venv.run("-c", code).stdout.strip())
    # A normal install: the package is imported from the venv, not from this checkout.
    assert installed_at.is_relative_to(venv.root), installed_at


def test_acme_conformance_suite_passes_from_its_own_test_file(venv: Venv) -> None:
    result = venv.run(
        "-m", "pytest", "tests/test_acme_conformance.py", "-q", cwd=venv.acme, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = result.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    total = sum(1 for name in dir(StoreConformance) if name.startswith("test_"))
    assert counts.get("passed", 0) + counts.get("skipped", 0) == total, summary
    # acme does not declare event_log: those tests skip (all but the refusal test)
    event_log = sum(
        1
        for name in dir(EventLogTests)
        if name.startswith("test_") and name != "test_event_log_refused_without_capability"
    )
    assert counts["passed"] >= 0.9 * (total - event_log), summary


def test_acme_backs_up_restores_and_migrates_from_its_own_test_file(venv: Venv) -> None:
    """A driver written only against ``sessionstore.driver`` (installed as a third party
    would) is backed up, restored and migrated by ``sessionstore.backup``."""
    result = venv.run("-m", "pytest", "tests/test_acme_backup.py", "-q", cwd=venv.acme, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "4 passed" in result.stdout, output


def test_a_broken_plugin_breaks_nothing_and_is_reported(venv: Venv) -> None:
    broken = venv.workdir / "broken-plugin"
    (broken / "broken_plugin").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (broken / "broken_plugin" / "__init__.py").write_text(
        f"raise RuntimeError({BROKEN_REASON.partition(': ')[2]!r})\n"
    )
    venv.pip_install(broken)

    code = textwrap.dedent(
        """
        import asyncio, json
        import sessionstore

        async def main():
            for url in ("memory://", "acme://"):
                async with sessionstore.open_store(url) as store:
                    s = await store.create_session(data={"url": url})
                    assert await store.get_session(s.id) == s

        asyncio.run(main())
        schemes = [d.scheme for d in sessionstore.installed_drivers()]
        print(json.dumps({"broken": sessionstore.broken_plugins(), "schemes": schemes}))
        """
    )
    result = venv.run("-c", code)
    report = json.loads(result.stdout)
    assert report["broken"] == {"broken": BROKEN_REASON}
    assert {"acme", "memory"} <= set(report["schemes"])
    assert "plugin 'broken' failed to load" in result.stderr  # and it was logged

    cli = venv.run("-m", "sessionstore.cli", "drivers", "--json")
    listed = json.loads(cli.stdout)
    assert listed["broken"] == {"broken": BROKEN_REASON}
    assert {"acme", "memory"} <= {d["scheme"] for d in listed["drivers"]}
