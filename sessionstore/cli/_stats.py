"""``sessionstore stats [URL]``: totals by status and by processor."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from sessionstore import QueryOptions, SessionFilter, Status, redact_url

from ._common import open_existing, require_url, run, url_argument
from ._output import console, echo_json, json_option

__all__ = ["stats"]

_PAGE = 1000


async def _stats(url: str) -> dict[str, Any]:
    async with open_existing(url) as store:
        total = await store.count_sessions(SessionFilter())
        everything = await store.count_sessions(SessionFilter(include_expired=True))
        by_status = {
            status.value: await store.count_sessions(SessionFilter(status=status))
            for status in Status
        }
        processors: Counter[str] = Counter()
        events = 0
        cursor: str | None = None
        while True:  # one page at a time: never every session at once
            page = await store.list_sessions(
                SessionFilter(), QueryOptions(sort_by="id", limit=_PAGE, cursor=cursor)
            )
            for session in page:
                processors[session.processor_id or "-"] += 1
                events += session.event_count
            cursor = page.next_cursor
            if cursor is None:
                break
    return {
        "url": redact_url(url),
        "sessions": total,
        "expired_not_purged": everything - total,
        "events": events,
        "by_status": by_status,
        "by_processor": dict(sorted(processors.items())),
    }


@click.command(short_help="Totals by status and by processor.")
@url_argument
@json_option
def stats(url: str | None, json_output: bool) -> None:
    """Show totals for the store at URL (default: $SESSIONSTORE_URL).

    Live sessions by status (counted by the store, indexed where the driver has indexes),
    by processor and their events (one page of sessions at a time), and the expired
    sessions not purged yet. --json prints {"url", "sessions", "expired_not_purged",
    "events", "by_status": {status: n}, "by_processor": {processor: n}} ("-" stands for
    sessions without a processor).
    """
    result = run(_stats(require_url(url)))
    if json_output:
        echo_json(result)
        return
    out = console()
    out.print(
        Text(
            f"{result['sessions']} live session(s), {result['events']} event(s), "
            f"{result['expired_not_purged']} expired not purged ({result['url']})"
        )
    )
    for title, key in (("By status", "by_status"), ("By processor", "by_processor")):
        table = Table(title=title, title_justify="left")
        table.add_column(title.split()[-1], overflow="fold")
        table.add_column("sessions", justify="right")
        for name, count in result[key].items():
            table.add_row(Text(name), str(count))
        out.print(table)
