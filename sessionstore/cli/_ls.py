"""``sessionstore ls [URL]``: one page of sessions, filtered."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from sessionstore import Page, QueryOptions, SessionFilter

from ._common import (
    build_filter,
    filter_options,
    open_existing,
    require_url,
    run,
    session_json,
    url_argument,
)
from ._output import console, echo_json, json_option

__all__ = ["ls"]


async def _page(
    url: str,
    flt: SessionFilter,
    sort: str,
    desc: bool,
    limit: int,
    cursor: str | None,
) -> Page:
    async with open_existing(url) as store:
        return await store.list_sessions(
            flt,
            QueryOptions(
                sort_by=sort,  # type: ignore[arg-type]
                order="desc" if desc else "asc",
                limit=limit,
                cursor=cursor,
            ),
        )


@click.command(short_help="List sessions (one page, filtered).")
@url_argument
@filter_options
@click.option(
    "--sort",
    type=click.Choice(["created_at", "updated_at", "expires_at", "id"]),
    default="created_at",
    show_default=True,
    help="Order of the listing.",
)
@click.option("--desc", is_flag=True, help="Newest (largest) first.")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Page size."
)
@click.option("--cursor", default=None, help="Continue after the page that printed it.")
@json_option
def ls(
    url: str | None,
    processors: tuple[str, ...],
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    include_expired: bool,
    sort: str,
    desc: bool,
    limit: int,
    cursor: str | None,
    json_output: bool,
) -> None:
    """List one page of the sessions in the store at URL (default: $SESSIONSTORE_URL).

    Filters combine (AND); a repeated --processor or --status matches any of them, a
    repeated --tag needs every tag. When more sessions follow, the next page's --cursor
    is printed (in --json: "next_cursor"). --json prints {"items": [...], "next_cursor"}.
    """
    page = run(
        _page(
            require_url(url), build_filter(processors, statuses, tags, include_expired), sort,
            desc, limit, cursor,
        )
    )  # fmt: skip
    if json_output:
        echo_json({"items": [session_json(s) for s in page], "next_cursor": page.next_cursor})
        return
    out = console()
    table = Table(title=f"{len(page)} session(s)", title_justify="left")
    for header in ("id", "processor", "status", "version", "events", "tags", "updated", "expires"):
        table.add_column(header, overflow="fold")
    for s in page:
        row = session_json(s)
        table.add_row(
            Text(s.id),
            Text(s.processor_id or "-"),
            Text(s.status.value),
            str(s.version),
            str(s.event_count),
            Text(", ".join(sorted(s.tags)) or "-"),
            Text(row["updated_at"]),
            Text(row["expires_at"] or "-"),
        )
    out.print(table)
    if page.next_cursor:
        out.print(Text(f"more: --cursor {page.next_cursor}"))
