"""``sessionstore show [URL] ID``: one session with its latest events and checkpoints."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from sessionstore import SessionNotFoundError

from ._common import event_json, iso, open_existing, run, session_json, url_and_args
from ._output import console, echo_json, json_option

__all__ = ["show"]


async def _load(url: str, session_id: str, events: int) -> dict[str, Any]:
    async with open_existing(url) as store:
        session = await store.get_session(session_id)
        if session is None:
            raise SessionNotFoundError(session_id)
        latest = await store.get_events(session_id, last=events) if events else []
        checkpoints = await store.list_checkpoints(session_id)
    return {
        "session": session_json(session),
        "events": [event_json(e) for e in latest],
        "checkpoints": [
            {
                "id": cp.id,
                "label": cp.label,
                "created_at": iso(cp.created_at),
                "version": cp.version,
                "event_count": cp.event_count,
            }
            for cp in checkpoints
        ],
    }


@click.command(short_help="Show one session with its latest events.")
@click.argument("args", nargs=-1, metavar="[URL] ID")
@click.option(
    "--events",
    "events",
    type=click.IntRange(0, 100_000),
    default=10,
    show_default=True,
    help="How many of the latest events to show (0: none).",
)
@json_option
def show(args: tuple[str, ...], events: int, json_output: bool) -> None:
    """Show the session ID of the store at URL (default: $SESSIONSTORE_URL).

    Prints its fields, data and metadata, its latest events and its checkpoints. A
    missing (or expired) session exits with code 5. --json prints
    {"session": {...}, "events": [...], "checkpoints": [...]}.
    """
    url, (session_id,) = url_and_args(args, ["ID"])
    shown = run(_load(url, session_id, events))
    if json_output:
        echo_json(shown)
        return
    out = console()
    session = shown["session"]
    table = Table(title=f"Session {session['id']}", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in session.items():
        if key in ("data", "metadata"):
            continue
        shown_value = ", ".join(value) if isinstance(value, list) else value
        table.add_row(Text(key), Text("-" if shown_value in (None, "") else str(shown_value)))
    out.print(table)
    for key in ("data", "metadata"):
        out.print(Text(f"{key}:", style="bold"))
        out.print(Text(json.dumps(session[key], indent=2, ensure_ascii=False)))
    if shown["events"]:
        ev = Table(title=f"Latest {len(shown['events'])} event(s)", title_justify="left")
        for header in ("seq", "type", "at", "data"):
            ev.add_column(header, overflow="fold")
        for e in shown["events"]:
            ev.add_row(str(e["seq"]), Text(e["type"]), Text(e["at"]), Text(json.dumps(e["data"])))
        out.print(ev)
    if shown["checkpoints"]:
        cps = Table(title="Checkpoints", title_justify="left")
        for header in ("id", "label", "created_at", "version", "event_count"):
            cps.add_column(header, overflow="fold")
        for cp in shown["checkpoints"]:
            cps.add_row(
                Text(cp["id"]), Text(cp["label"] or "-"), Text(cp["created_at"]),
                str(cp["version"]), str(cp["event_count"]),
            )  # fmt: skip
        out.print(cps)
