"""``sessionstore migrate [SRC] DST``: copy sessions from one store to another."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from sessionstore import SessionFilter, redact_url

from ._common import (
    build_filter,
    filter_options,
    open_existing,
    progress_option,
    progress_reporter,
    run,
    strategy_option,
    url_and_args,
)
from ._output import console, echo_json, json_option
from ._restore import fail_if_incomplete, print_counts

__all__ = ["migrate"]


def default_state_file(src: str, dst: str, flt: SessionFilter) -> Path:
    """``./.sessionstore-migrate-<digest>.json``: the same command resumes the same run."""
    key = "\n".join((redact_url(src), redact_url(dst), flt.fingerprint()))
    return Path(f".sessionstore-migrate-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json")


async def _migrate(
    src: str, dst: str, flt: SessionFilter, strategy: str, state: Path | None,
    show: bool | None, json_output: bool,
) -> dict[str, Any]:  # fmt: skip
    from sessionstore.backup import migrate as run_migrate

    async with open_existing(src) as source:  # the source is never created
        with progress_reporter(show, json_output) as progress:
            result = await run_migrate(
                source, dst, filter=flt, strategy=strategy, checkpoint_file=state,
                progress=progress,
            )  # fmt: skip
    return result.to_dict()


@click.command(short_help="Copy sessions from one store to another (resumable).")
@click.argument("args", nargs=-1, metavar="[SRC] DST")
@filter_options
@strategy_option
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Progress file for resuming (default: ./.sessionstore-migrate-<digest>.json).",
)
@click.option("--no-resume", is_flag=True, help="Keep no progress file (not resumable).")
@progress_option
@json_option
def migrate(
    args: tuple[str, ...],
    processors: tuple[str, ...],
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    include_expired: bool,
    strategy: str,
    state: Path | None,
    no_resume: bool,
    show_progress: bool | None,
    json_output: bool,
) -> None:
    """Copy the sessions of the store at SRC (default: $SESSIONSTORE_URL) into the store
    at DST, with their events and checkpoints, exactly; no temporary file.

    Progress is saved after every page in a state file; if the run is interrupted, the
    same command continues where it stopped (the file is removed when the run completes).
    --strategy decides for sessions that exist in DST (as for 'restore'). Filters select
    sessions as for 'ls'. --json prints the counts.
    """
    src, (dst,) = url_and_args(args, ["DST"])
    flt = build_filter(processors, statuses, tags, include_expired)
    if no_resume:
        state = None
    elif state is None:
        state = default_state_file(src, dst, flt)
    result = run(_migrate(src, dst, flt, strategy, state, show_progress, json_output))
    if json_output:
        echo_json(result)
    else:
        if result["resumed_after"]:
            console().print(Text(f"resumed after session {result['resumed_after']}"))
        print_counts(f"Migrated {redact_url(src)} -> {redact_url(dst)} ({strategy})", result)
    fail_if_incomplete(result)
