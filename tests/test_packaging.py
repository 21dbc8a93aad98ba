"""What a user expects of the package: license, changelog, contributing map, project URLs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHANGELOG_SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_license_file_matches_the_metadata() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "MIT"
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 sessionstore developers" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    sdist = PYPROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert {"LICENSE", "CHANGELOG.md", "CONTRIBUTING.md"} <= set(sdist)


def test_project_urls_are_consistent() -> None:
    urls = PYPROJECT["project"]["urls"]
    assert set(urls) == {"Documentation", "Changelog", "Source", "Issues"}
    source = urls["Source"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/sessionstore", source), source
    for name, url in urls.items():
        assert url.startswith(source), (name, url)
        assert not re.search(r"example|your|todo|xxx|<|>", url, re.IGNORECASE), url
    assert urls["Issues"] == f"{source}/issues"
    # the files the URLs point at exist in the repository
    assert urls["Changelog"] == f"{source}/blob/main/CHANGELOG.md"
    assert urls["Documentation"] == f"{source}/tree/main/docs"
    assert (ROOT / "CHANGELOG.md").is_file() and (ROOT / "docs").is_dir()


def test_installed_metadata_carries_the_urls() -> None:
    meta = metadata("sessionstore")
    shown = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert shown == PYPROJECT["project"]["urls"]  # (scripts/dev.py reinstalls on a change)


def test_changelog_follows_keep_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    releases = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert releases and releases[0] == "Unreleased"
    sections = re.findall(r"^### (.+)$", text, re.MULTILINE)
    assert sections and set(sections) <= CHANGELOG_SECTIONS, sections
    # every entry is a bullet under a section
    body = text.split("## [Unreleased]", 1)[1]
    assert re.search(r"^### Added\n\n- ", body, re.MULTILINE)


@pytest.mark.integration
def test_contributing_map_names_only_what_exists() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for command in ("demo", "test", "test --lowest", "bench", "lock"):
        assert f"python3 scripts/dev.py {command}" in text, command
    block = text.split("## Where things live", 1)[1].split("```", 2)[1]
    top = ""
    checked = 0
    for line in block.splitlines():
        if not line.strip() or line.startswith(" " * 20):
            continue  # a continued description
        first = line.split()[0]
        if not line.startswith(" "):
            top = first if first.endswith("/") else ""
            names = [first]
        else:
            names = [top + name.strip(",") for name in line.strip().split("  ")[0].split()]
        for name in names:
            assert (ROOT / name).exists(), name
            checked += 1
    assert checked >= 30, checked
    commands = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dev.py")], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    for command in ("demo", "test", "test --lowest", "bench", "lock"):
        assert f"dev.py {command}" in commands.stderr, command  # the map matches the script
