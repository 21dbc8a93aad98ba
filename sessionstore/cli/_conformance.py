"""``sessionstore conformance URL``: the whole conformance suite against a live store.

pytest runs in a subprocess; its own output (progress dots, summary line, warnings) is
kept back unless ``--verbose``: the command prints its per-mixin table and the failures,
read from pytest's JUnit XML report.
"""

from __future__ import annotations

import importlib.util
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
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show pytest's own output: progress, summary line, warnings (on stderr with --json).",
)
@json_option
def conformance(
    url: str | None,
    keyword: str | None,
    long_run: bool,
    exitfirst: bool,
    verbose: bool,
    json_output: bool,
) -> None:
    """Run the conformance suite against the store at URL (default: $SESSIONSTORE_URL).

    Every test runs in a fresh namespace that is emptied and removed afterwards, so the
    store may hold real data in other namespaces and is left as it was. Prints a summary
    per mixin and the failures; exits 1 if any test fails. -k takes a pytest -k
    expression over test names and the mixin names of the summary (-k CrudTests, -k
    crud). Needs the testing extra: pip install 'sessionstore[testing]'.
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
        ini = "[pytest]\n"
        if importlib.util.find_spec("pytest_asyncio") is not None:
            # the suite runs its own event loops; this only silences pytest-asyncio's
            # deprecation warning about the unset option
            ini += "asyncio_default_fixture_loop_scope = function\n"
        (Path(tmp) / "pytest.ini").write_text(ini)
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
        live = verbose and not json_output  # pytest writes straight to our stdout
        result = subprocess.run(
            cmd,
            cwd=tmp,
            env=env,
            stdout=None if live else subprocess.PIPE,
            stderr=None if live else subprocess.STDOUT,
            text=True,
            check=False,
        )
        if verbose and not live:
            click.echo(result.stdout, err=True, nl=False)  # --json keeps stdout for JSON
        if result.returncode == 5:
            raise CliError(f"no conformance test matched -k {keyword!r}", ExitCode.USAGE)
        if not report.exists():
            if not verbose and result.stdout:
                click.echo(result.stdout, err=True, nl=False)  # why pytest did not run
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
