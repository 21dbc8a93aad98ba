"""The conformance suite is worth the bugs it catches: every planted bug must fail it."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tests.conformance.broken_variants import CAUGHT_BY, VARIANTS

# integration: runs the conformance suite against every broken variant
pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def test_suite_fails_every_broken_variant(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(HERE / "broken_variants.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "-o",
            "addopts=",
            # a variant's later tests are skipped once it has failed (first_failure.py),
            # each class on one worker so that its worker sees its failures
            "-p",
            "tests.conformance.first_failure",
            # two workers (pytest-xdist): this test waits meanwhile, and the run is the
            # main suite's longest
            "-n",
            "2",
            "--dist",
            "loadscope",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,  # ~120 s on a quiet core; 1,200 s ran out once at load 37
        check=False,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    failures: Counter[str] = Counter()
    failed: set[tuple[str, str]] = set()
    tests: Counter[str] = Counter()
    machine_failures: list[str] = []
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        tests[cls] += 1
        if case.find("failure") is not None:
            failures[cls] += 1
            failed.add((cls, case.get("name", "")))
            if case.get("name") == "test_state_machine":
                machine_failures.append(cls)
        assert case.find("error") is None, f"{cls}::{case.get('name')} errored instead of failing"
    for name in VARIANTS:
        cls = f"TestBroken{name}"
        assert tests[cls] > 50, f"{cls} did not run the suite"
        assert failures[cls] >= 1, f"the conformance suite does not catch {name}"
    for name, test in CAUGHT_BY.items():
        assert (f"TestBroken{name}", test) in failed, f"{test} does not catch {name}"
    # The state machine on its own catches several of the planted bugs.
    assert len(machine_failures) >= 3, machine_failures


def test_enough_variants() -> None:
    assert len(VARIANTS) >= 181
    assert set(CAUGHT_BY) <= set(VARIANTS)
