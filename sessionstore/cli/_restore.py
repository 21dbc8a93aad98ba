"""``sessionstore restore [URL] FILE``: restore a backup file into a store."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from sessionstore import SessionFilter, open_store

from ._common import (
    build_filter,
    filter_options,
    progress_option,
    progress_reporter,
    run,
    strategy_option,
    url_and_args,
)
from ._errors import CliError, ExitCode
from ._output import console, echo_json, json_option

__all__ = ["print_counts", "restore"]


async def _restore(
    url: str, path: str, strategy: str, dry_run: bool, flt: SessionFilter | None,
    show: bool | None, json_output: bool,
) -> dict[str, Any]:  # fmt: skip
    from sessionstore.backup import restore_from_backup

    async with open_store(url) as store:
        with progress_reporter(show, json_output) as progress:
            result = await restore_from_backup(
                store, path, merge_strategy=strategy, dry_run=dry_run, filter=flt,
                progress=progress,
            )  # fmt: skip
    return result.to_dict()


def print_counts(title: str, result: dict[str, Any]) -> None:
    """The counts of a restore or migrate as a table."""
    out = console()
    out.print(Text(title))
    table = Table()
    table.add_column("sessions")
    table.add_column("count", justify="right")
    for key in ("restored", "overwritten", "skipped", "conflicts", "filtered_out"):
        table.add_row(Text(key), str(result[key]))
    table.add_row(Text("events"), str(result["events"]))
    table.add_row(Text("checkpoints"), str(result["checkpoints"]))
    out.print(table)


def fail_if_incomplete(result: dict[str, Any]) -> None:
    """Exit 6 when sessions were cut short by a concurrent writer."""
    if result["incomplete"]:
        raise CliError(
            f"{len(result['incomplete'])} session(s) were changed by another writer while "
            f"their events were written, their event logs are incomplete: "
            f"{', '.join(result['incomplete'][:10])}; restore them again with --strategy "
            "overwrite",
            ExitCode.CONFLICT,
        )


@click.command(short_help="Restore a backup file into a store.")
@click.argument("args", nargs=-1, metavar="[URL] FILE")
@filter_options
@strategy_option
@click.option("--dry-run", is_flag=True, help="Verify and report what would happen; write nothing.")
@progress_option
@json_option
def restore(
    args: tuple[str, ...],
    processors: tuple[str, ...],
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    include_expired: bool,
    strategy: str,
    dry_run: bool,
    show_progress: bool | None,
    json_output: bool,
) -> None:
    """Restore the backup FILE into the store at URL (default: $SESSIONSTORE_URL).

    The whole file is verified first; a corrupt or truncated backup exits with code 7
    and nothing is written. Sessions come back exactly (ids, versions, timestamps, events,
    checkpoints). --strategy decides for sessions that exist: skip_existing, overwrite,
    update_newer (newer updated_at, then version, wins) or fail_on_conflict (exit 6,
    nothing written; --dry-run exits 6 too, after printing the counts). Filters restore
    only some of the backup's sessions, as for 'ls'
    (then sessions past their expiry only with --include-expired); without one, every
    session in FILE is restored. --json prints the counts (filtered_out: the sessions
    left out) and the backup's info.
    """
    url, (file_name,) = url_and_args(args, ["FILE"])
    flt = (
        build_filter(processors, statuses, tags, include_expired)
        if processors or statuses or tags
        else None
    )
    result = run(_restore(url, file_name, strategy, dry_run, flt, show_progress, json_output))
    if json_output:
        echo_json(result)
    else:
        what = "Dry run: would restore" if dry_run else "Restored"
        print_counts(f"{what} from {result['source']} ({strategy})", result)
    if dry_run and result["conflicts"]:  # the exit code the real run would end with
        raise CliError(
            f"{result['conflicts']} session(s) of the backup exist already; the real run "
            "would restore nothing (fail_on_conflict)",
            ExitCode.CONFLICT,
        )
    fail_if_incomplete(result)
