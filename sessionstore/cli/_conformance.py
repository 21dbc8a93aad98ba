"""``sessionstore conformance URL``: the whole conformance suite against a live store."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from sessionstore import open_store, redact_url

from ._errors import CliError, ExitCode
from ._output import console, echo_json, json_option

__all__ = ["conformance", "mixin_of", "summarize"]


def mixin_of() -> dict[str, str]:
    """Test name -> the mixin that defines it (for the per-mixin summary)."""
    from sessionstore.testing import MIXINS

    owners: dict[str, str] = {}
    for mixin in MIXINS:
        for name in vars(mixin):
            if name.startswith("test_"):
                owners.setdefault(name, mixin.__name__)
    return owners


def summarize(report: Path) -> dict[str, Any]:
    """Per-mixin counts and failure messages from a pytest JUnit XML report."""
    owners = mixin_of()
    mixins: dict[str, dict[str, Any]] = {}
    root = ET.parse(report).getroot()  # noqa: S314 - the report pytest just wrote for us
    for case in root.iter("testcase"):
        name = case.get("name", "")
        mixin = owners.get(name.split("[", 1)[0], "Other")
        row = mixins.setdefault(mixin, {"passed": 0, "failed": 0, "skipped": 0, "failures": []})
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            row["failed"] += 1
            message = (problem.get("message") or "").strip().splitlines()
            row["failures"].append({"test": name, "message": message[0][:300] if message else ""})
        elif case.find("skipped") is not None:
            row["skipped"] += 1
        else:
            row["passed"] += 1
    totals = {k: sum(m[k] for m in mixins.values()) for k in ("passed", "failed", "skipped")}
    return {"mixins": dict(sorted(mixins.items())), "totals": totals}


@click.command(short_help="Run the conformance suite against a live store.")
@click.argument("url", required=False, envvar="SESSIONSTORE_URL")
@click.option("-k", "keyword", default=None, help="Only tests matching this pytest -k expression.")
@click.option("--long", "long_run", is_flag=True, help="Also run the long state-machine budget.")
@click.option("-x", "--exitfirst", is_flag=True, help="Stop at the first failure.")
@json_option
def conformance(
    url: str | None, keyword: str | None, long_run: bool, exitfirst: bool, json_output: bool
) -> None:
    """Run the conformance suite against the store at URL (default: $SESSIONSTORE_URL).

    Every test runs in a fresh namespace that is emptied afterwards, so the store may hold
    real data in other namespaces. Prints a summary per mixin; exits 1 if any test fails.
    Needs the testing extra: pip install 'sessionstore[testing]'.
    """
    if not url:
        raise click.UsageError("give a store URL or set SESSIONSTORE_URL")
    open_store(url)  # validate the URL and find the driver before starting pytest
    try:
        import hypothesis  # noqa: F401
        import pytest  # noqa: F401
    except ImportError as exc:
        raise CliError(
            f"the conformance suite needs {exc.name!r}: pip install 'sessionstore[testing]'",
            ExitCode.CONFIG,
        ) from None
    with tempfile.TemporaryDirectory(prefix="sessionstore-conformance-") as tmp:
        report = Path(tmp) / "report.xml"
        (Path(tmp) / "pytest.ini").write_text("[pytest]\n")
        cmd = [
            sys.executable, "-m", "pytest", "--pyargs", "sessionstore.testing.live",
            "-p", "sessionstore.testing.plugin", "--sessionstore-url", url,
            "-p", "no:cacheprovider", f"--junitxml={report}", "-q", "--rootdir", tmp,
        ]  # fmt: skip
        if keyword:
            cmd += ["-k", keyword]
        if long_run:
            cmd.append("--sessionstore-long")
        if exitfirst:
            cmd.append("-x")
        env = dict(os.environ)
        env.pop("SESSIONSTORE_CONFORMANCE_URL", None)
        result = subprocess.run(
            cmd,
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE if json_output else None,
            stderr=subprocess.STDOUT if json_output else None,
            text=True,
            check=False,
        )
        if result.returncode == 5:
            raise CliError(f"no conformance test matched -k {keyword!r}", ExitCode.USAGE)
        if not report.exists():
            raise CliError(f"pytest did not run (exit code {result.returncode})")
        summary = summarize(report)
    summary["url"] = redact_url(url)
    if json_output:
        echo_json(summary)
    else:
        _print(summary)
    if summary["totals"]["failed"] or result.returncode != 0:
        raise SystemExit(int(ExitCode.ERROR))


def _print(summary: dict[str, Any]) -> None:
    out = console()
    table = Table(title=f"Conformance of {summary['url']}", title_justify="left")
    for header in ("mixin", "passed", "failed", "skipped"):
        table.add_column(header, justify="left" if header == "mixin" else "right")
    for name, row in summary["mixins"].items():
        failed = Text(str(row["failed"]), style="bold red" if row["failed"] else "")
        table.add_row(Text(name), str(row["passed"]), failed, str(row["skipped"]))
    totals = summary["totals"]
    table.add_row(
        Text("total", style="bold"),
        str(totals["passed"]),
        str(totals["failed"]),
        str(totals["skipped"]),
    )
    out.print(table)
    for name, row in summary["mixins"].items():
        for failure in row["failures"]:
            out.print(Text(f"FAILED {name}.{failure['test']}: {failure['message']}", style="red"))
