"""``sessionstore backup [URL] FILE``: write the store into one backup file."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from sessionstore import SessionFilter

from ._common import (
    build_filter,
    filter_options,
    open_existing,
    progress_option,
    progress_reporter,
    run,
    url_and_args,
)
from ._errors import CliError, ExitCode
from ._output import console, echo_json, json_option

__all__ = ["backup"]


async def _backup(
    url: str, path: Path, flt: SessionFilter, compression: str | None, show: bool | None,
    json_output: bool, force: bool,
) -> dict[str, object]:  # fmt: skip
    from sessionstore.backup import create_backup

    async with open_existing(url) as store:
        with progress_reporter(show, json_output) as progress:
            try:
                info = await create_backup(
                    store, path, filter=flt, compression=compression, progress=progress,
                    overwrite=force,
                )  # fmt: skip
            except FileExistsError as exc:
                raise CliError(
                    f"{exc.filename or path} already exists; use --force to overwrite it",
                    ExitCode.CONFLICT,
                ) from None
    return info.to_dict()


@click.command(short_help="Back up a store into one file.")
@click.argument("args", nargs=-1, metavar="[URL] FILE")
@filter_options
@click.option(
    "--compression",
    type=click.Choice(["none", "gzip", "zstd"]),
    default=None,
    help="Default: from FILE's extension (.gz gzip, .zst zstd, else none).",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@progress_option
@json_option
def backup(
    args: tuple[str, ...],
    processors: tuple[str, ...],
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    include_expired: bool,
    compression: str | None,
    force: bool,
    show_progress: bool | None,
    json_output: bool,
) -> None:
    """Back up the store at URL (default: $SESSIONSTORE_URL) into FILE.

    Sessions with their events and checkpoints, streamed into one JSON Lines file
    (docs/backup.md); FILE may be an existing directory (a time-stamped name is made
    up). The file appears only once complete; an existing FILE is refused (exit 6)
    unless --force is given. Filters select sessions as for 'ls'.
    --json prints the backup's info (path, counts, sha256, ...).
    """
    url, (file_name,) = url_and_args(args, ["FILE"])
    flt = build_filter(processors, statuses, tags, include_expired)
    info = run(_backup(url, Path(file_name), flt, compression, show_progress, json_output, force))
    if json_output:
        echo_json(info)
        return
    console().print(
        Text(
            f"backed up {info['sessions']} session(s), {info['events']} event(s), "
            f"{info['checkpoints']} checkpoint(s) to {info['path']} ({info['size']} bytes, "
            f"sha256 {info['sha256']})"
        )
    )
