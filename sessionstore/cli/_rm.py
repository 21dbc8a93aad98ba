"""``sessionstore rm [URL] ID``: delete one session."""

from __future__ import annotations

import click
from rich.text import Text

from sessionstore import SessionNotFoundError

from ._common import open_existing, run, url_and_args
from ._output import console, echo_json, json_option

__all__ = ["rm"]


async def _delete(url: str, session_id: str, expected_version: int | None) -> None:
    async with open_existing(url) as store:
        if not await store.delete_session(session_id, expected_version=expected_version):
            raise SessionNotFoundError(session_id)


@click.command(short_help="Delete one session (with its events and checkpoints).")
@click.argument("args", nargs=-1, metavar="[URL] ID")
@click.option(
    "--expected-version",
    type=click.IntRange(1),
    default=None,
    help="Delete only if the session is at this version (else exit 6, nothing deleted).",
)
@json_option
def rm(args: tuple[str, ...], expected_version: int | None, json_output: bool) -> None:
    """Delete the session ID from the store at URL (default: $SESSIONSTORE_URL).

    Its events and checkpoints go with it. A missing session exits with code 5, a
    version other than --expected-version with code 6. --json prints {"deleted": ID}.
    """
    url, (session_id,) = url_and_args(args, ["ID"])
    run(_delete(url, session_id, expected_version))
    if json_output:
        echo_json({"deleted": session_id})
    else:
        console().print(Text(f"deleted {session_id}"))
