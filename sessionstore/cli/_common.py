"""Helpers shared by the store commands: URL arguments, filters, JSON shapes, progress.

* ``[URL] X`` arguments: the store URL may be left out when ``$SESSIONSTORE_URL`` is set
  (:func:`url_and_args`); a lone ``URL`` argument takes the variable as its default.
* :func:`filter_options` adds ``--processor/--status/--tag/--include-expired`` and
  :func:`build_filter` turns them into a :class:`~sessionstore.SessionFilter`.
* :func:`open_existing` opens a store without creating it (the commands that only read or
  change what exists: every command but ``restore`` and ``migrate``'s destination).
* :func:`progress_reporter` shows a rich progress bar (rate and ETA) on stderr when it is
  a terminal, and nothing otherwise or with ``--json``; ``--progress`` on a redirected
  stderr writes plain lines instead (no colours, no cursor control codes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sessionstore import Event, Session, SessionFilter, get_driver, open_store
from sessionstore.codec import dumps_record, event_to_record, session_to_record

if TYPE_CHECKING:
    from rich.progress import Task
    from rich.text import Text

    from sessionstore.backup import ProgressCallback
    from sessionstore.base import BaseSessionStore

__all__ = [
    "ENV_URL",
    "build_filter",
    "event_json",
    "filter_options",
    "iso",
    "open_existing",
    "progress_option",
    "progress_reporter",
    "run",
    "session_json",
    "strategy_option",
    "url_and_args",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
ENV_URL = "SESSIONSTORE_URL"
STRATEGIES = ("skip_existing", "overwrite", "update_newer", "fail_on_conflict")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion (each command is one ``asyncio.run``)."""
    return asyncio.run(coro)


def url_and_args(args: Sequence[str], names: Sequence[str]) -> tuple[str, list[str]]:
    """Split ``[URL] NAME...``: the URL comes from ``$SESSIONSTORE_URL`` when left out."""
    wanted = len(names)
    if len(args) == wanted + 1:
        return args[0], list(args[1:])
    if len(args) == wanted:
        if args and "://" in args[0]:
            missing = " ".join(names)
            raise click.UsageError(f"missing argument: {missing}")
        url = os.environ.get(ENV_URL)
        if not url:
            raise click.UsageError(f"give a store URL or set {ENV_URL}")
        return url, list(args)
    raise click.UsageError(f"expected [URL] {' '.join(names)}, got {len(args)} argument(s)")


def open_existing(url: str) -> BaseSessionStore:
    """The store at ``url``, opened "existing only": nothing is created.

    A driver whose opening creates a store offers a boolean ``create`` option (the
    ``file://`` driver does); it is passed as ``create=False``, so a missing store, or a
    location holding something else (an ordinary folder), is a ``StoreNotFoundError``
    (exit 8) instead of a new, empty store. Other drivers create nothing on open.
    """
    if "://" in url:
        options = get_driver(url.split("://", 1)[0]).Options
        if any(f.name == "create" for f in dataclasses.fields(options)):
            return open_store(url, create=False)
    return open_store(url)


def require_url(url: str | None) -> str:
    """The URL argument (filled from ``$SESSIONSTORE_URL`` by click), or a usage error."""
    if not url:
        raise click.UsageError(f"give a store URL or set {ENV_URL}")
    return url


def url_argument(f: F) -> F:
    """A single optional ``URL`` argument defaulting to ``$SESSIONSTORE_URL``."""
    return click.argument("url", required=False, envvar=ENV_URL)(f)


def filter_options(f: F) -> F:
    """``--processor``, ``--status``, ``--tag`` (repeatable) and ``--include-expired``."""
    options = [
        click.option(
            "--processor", "processors", multiple=True, help="Only this processor (repeatable)."
        ),
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice(["active", "paused", "completed", "failed", "expired", "timeout"]),
            help="Only this status (repeatable: any of them).",
        ),
        click.option("--tag", "tags", multiple=True, help="Only sessions with this tag (all)."),
        click.option("--include-expired", is_flag=True, help="Include sessions past their expiry."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_filter(
    processors: Sequence[str], statuses: Sequence[str], tags: Sequence[str], include_expired: bool
) -> SessionFilter:
    """The filter the options describe."""
    return SessionFilter(
        processor_id=list(processors) or None,
        status=list(statuses) or None,
        tags_all=list(tags) or None,
        include_expired=include_expired,
    )


def strategy_option(f: F) -> F:
    """``--strategy`` (a merge strategy; default ``skip_existing``)."""
    return click.option(
        "--strategy",
        type=click.Choice(STRATEGIES),
        default="skip_existing",
        show_default=True,
        help="What to do with sessions that exist in the destination.",
    )(f)


def progress_option(f: F) -> F:
    """``--progress/--no-progress`` (default: a bar when stderr is a terminal)."""
    return click.option(
        "--progress/--no-progress",
        "show_progress",
        default=None,
        help="Show a progress bar on stderr (default: when stderr is a terminal; never "
        "with --json).",
    )(f)


def iso(value: datetime) -> str:
    """A timestamp as ISO-8601 UTC with milliseconds (``...T12:00:00.123Z``)."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_json(session: Session) -> dict[str, Any]:
    """A session as JSON data (timestamps as ISO-8601 UTC strings)."""
    import orjson

    rec: dict[str, Any] = orjson.loads(dumps_record(session_to_record(session)))
    rec.pop("v", None)
    rec["created_at"] = iso(session.created_at)
    rec["updated_at"] = iso(session.updated_at)
    rec["expires_at"] = None if session.expires_at is None else iso(session.expires_at)
    return rec


def event_json(event: Event) -> dict[str, Any]:
    """An event as JSON data."""
    import orjson

    rec: dict[str, Any] = orjson.loads(dumps_record(event_to_record(event)))
    rec.pop("v", None)
    rec["at"] = iso(event.at)
    return rec


def _rate_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """``1,234 sessions/s``."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} sessions/s")

    return RateColumn()


#: Seconds between two plain progress lines of one phase (a redirected ``--progress``).
PLAIN_INTERVAL = 1.0


@contextmanager
def _plain_progress() -> Iterator[ProgressCallback]:
    """Progress as plain lines on stderr, for a log file: at most one a second per phase,
    and each phase's last state at the end (``backup: 1,200/5,000 sessions, 3.1 s``)."""
    start = time.monotonic()
    shown: dict[str, float] = {}
    latest: dict[str, tuple[int, int | None, bool]] = {}

    def line(phase: str, done: int, total: int | None) -> None:
        of = "" if total is None else f"/{total:,}"
        click.echo(f"{phase}: {done:,}{of} sessions, {time.monotonic() - start:.1f} s", err=True)

    def update(phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        due = now - shown.get(phase, -PLAIN_INTERVAL) >= PLAIN_INTERVAL or done == total
        if due:
            shown[phase] = now
            line(phase, done, total)
        latest[phase] = (done, total, due)

    yield update
    for phase, (done, total, printed) in latest.items():
        if not printed:
            line(phase, done, total)


@contextmanager
def progress_reporter(show: bool | None, json_output: bool) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing a bar on stderr, or ``None`` when there is none to draw.

    The bar is drawn on a terminal only; ``--progress`` on a redirected stderr (a file, a
    pipe) gets plain lines, so a log never holds colour or cursor control codes.
    """
    enabled = (sys.stderr.isatty() if show is None else show) and not json_output
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        with _plain_progress() as plain:
            yield plain
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        _rate_column(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update
