"""``sessionstore doctor URL``: check every stored record and repair what can be repaired.

The command is generic: it opens the store and calls its ``doctor(dry_run=...)``
coroutine, which a driver may provide (the file driver does). The report it returns
must offer ``to_dict()`` (or be a dataclass) with at least a ``corrupt`` list.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from sessionstore import redact_url

from ._common import open_existing
from ._errors import CliError, ExitCode
from ._output import console, echo_json, json_option

__all__ = ["doctor"]


async def _run_doctor(url: str, dry_run: bool) -> dict[str, Any]:
    async with open_existing(url) as store:
        run = getattr(store, "doctor", None)
        if not callable(run):
            scheme = url.split("://", 1)[0]
            raise CliError(
                f"the {scheme}:// driver ({type(store).__name__}) has no doctor operation",
                ExitCode.ERROR,
            )
        report = await run(dry_run=dry_run)
    if hasattr(report, "to_dict"):
        data: dict[str, Any] = report.to_dict()
    elif dataclasses.is_dataclass(report) and not isinstance(report, type):
        data = dataclasses.asdict(report)
    else:
        data = dict(report)
    data["url"] = redact_url(url)
    return data


def _show(data: dict[str, Any]) -> None:
    out = console()
    verb = "would be" if data.get("dry_run") else "were"
    table = Table(title=f"doctor: {data['url']}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in data.items():
        if isinstance(value, bool | int) and key != "dry_run":
            table.add_row(Text(key.replace("_", " ")), Text(str(value)))
    out.print(table)
    sections = (
        ("Corrupt records", "corrupt"),
        (f"Quarantined ({verb} moved)", "quarantined"),
        (f"Leftovers ({verb} removed)", "removed"),
    )
    for title, key in sections:
        items = data.get(key) or []
        if not items:
            continue
        listing = Table(title=title, title_justify="left")
        if key == "corrupt":
            listing.add_column("record", overflow="fold")
            listing.add_column("problem", overflow="fold")
            for item in items:
                listing.add_row(Text(str(item.get("record"))), Text(str(item.get("problem"))))
        else:
            listing.add_column("path", overflow="fold")
            for item in items:
                listing.add_row(Text(str(item)))
        out.print(listing)
    out.print("healthy" if not data.get("corrupt") else "corrupt records found")


@click.command(short_help="Check every record of a store; repair what can be repaired.")
@click.argument("url", required=False, envvar="SESSIONSTORE_URL")
@click.option("--dry-run", is_flag=True, help="Only report what would be done; change nothing.")
@json_option
def doctor(url: str | None, dry_run: bool, json_output: bool) -> None:
    """Check the store at URL (default: $SESSIONSTORE_URL) and repair it.

    Verifies every record's checksum, moves corrupt records to quarantine, completes or
    removes interrupted transactions, removes leftover temp files and rebuilds the query
    index. --dry-run changes nothing and reports what would be done. Exits 7 when corrupt
    records were found (even if they were quarantined), 0 when the store is healthy.
    --json prints the report as one JSON object.
    """
    if not url:
        raise click.UsageError("give a store URL or set SESSIONSTORE_URL")
    data = asyncio.run(_run_doctor(url, dry_run))
    if json_output:
        echo_json(data)
    else:
        _show(data)
    if data.get("corrupt"):
        raise CliError(
            f"{len(data['corrupt'])} corrupt record(s) found"
            + ("" if dry_run else " and moved to quarantine"),
            ExitCode.INTEGRITY,
        )
