"""``sessionstore verify FILE``: check a backup file completely."""

from __future__ import annotations

import click
from rich.text import Text

from ._common import progress_option, progress_reporter, run
from ._output import console, echo_json, json_option

__all__ = ["verify"]


async def _verify(path: str, show: bool | None, json_output: bool) -> dict[str, object]:
    from sessionstore.backup import verify_backup

    with progress_reporter(show, json_output) as progress:
        info = await verify_backup(path, progress=progress)
    return info.to_dict()


@click.command(short_help="Check a backup file (structure, counts, SHA-256).")
@click.argument("file", type=click.Path(dir_okay=False))
@progress_option
@json_option
def verify(file: str, show_progress: bool | None, json_output: bool) -> None:
    """Read the backup FILE completely and check it: its header and format version, every
    line, the order of sessions, events and checkpoints, the checkpoint digests, and the
    trailer's counts and SHA-256.

    A corrupt, truncated or altered file exits with code 7 and names the line. --json
    prints the backup's info ("verified": true).
    """
    info = run(_verify(file, show_progress, json_output))
    if json_output:
        echo_json(info)
        return
    console().print(
        Text(
            f"ok: {info['path']}: {info['sessions']} session(s), {info['events']} event(s), "
            f"{info['checkpoints']} checkpoint(s), created {info['created_at']} from "
            f"{info['source'] or '?'} (format {info['format_version']}, sha256 {info['sha256']})"
        )
    )
