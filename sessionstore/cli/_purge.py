"""``sessionstore purge-expired [URL]``: remove sessions past their expiry."""

from __future__ import annotations

import click
from rich.text import Text

from ._common import open_existing, require_url, run, url_argument
from ._output import console, echo_json, json_option

__all__ = ["purge_expired"]


async def _purge(url: str) -> int:
    async with open_existing(url) as store:
        return await store.cleanup_expired_sessions()


@click.command("purge-expired", short_help="Remove expired sessions.")
@url_argument
@json_option
def purge_expired(url: str | None, json_output: bool) -> None:
    """Remove the sessions of the store at URL (default: $SESSIONSTORE_URL) whose expiry
    has passed, with their events and checkpoints (store.cleanup_expired_sessions()).

    --json prints {"removed": N}.
    """
    removed = run(_purge(require_url(url)))
    if json_output:
        echo_json({"removed": removed})
    else:
        console().print(Text(f"removed {removed} expired session(s)"))
