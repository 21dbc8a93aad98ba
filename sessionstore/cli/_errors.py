"""How the CLI fails: one ``error: ...`` line on stderr and a documented exit code.

Commands just raise. :class:`GuardedGroup` (the class of the root group) catches whatever
escapes a command -- a :class:`~sessionstore.SessionStoreError`, an ``OSError``, a bug --
and hands it to :func:`fail`, which prints one line (plus the traceback with ``--debug``)
and exits with :func:`exit_code_for` the exception. Click's own usage errors (exit 2),
``--help`` and ``--version`` pass through untouched.

A command that decides to fail (``verify`` found corrupt records, ...) raises
:class:`CliError` with the exit code it wants. Keep the table in sync with ``docs/cli.md``.
"""

from __future__ import annotations

import enum
import traceback
from typing import Any, NoReturn

import click

from sessionstore import (
    ConfigurationError,
    IntegrityError,
    InvalidArgumentError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)

__all__ = ["CliError", "ExitCode", "GuardedGroup", "error_line", "exit_code_for", "fail"]


class ExitCode(enum.IntEnum):
    """The exit codes of the ``sessionstore`` command (documented in ``docs/cli.md``)."""

    OK = 0
    ERROR = 1
    """Any other failure (including an unexpected exception and a missing ``cli`` extra)."""
    USAGE = 2
    """Bad command line (click's own), or an argument value the library rejected."""
    CONFIG = 3
    """Bad store URL or option; no driver for the scheme, or it cannot be loaded."""
    UNAVAILABLE = 4
    """The store cannot be reached or failed with an I/O error."""
    NOT_FOUND = 5
    """The session (or other named object) does not exist."""
    CONFLICT = 6
    """Version conflict, or the session already exists."""
    INTEGRITY = 7
    """Corrupt or unreadable stored data."""
    NO_STORE = 8
    """No store at the URL (a missing or foreign location); nothing was created."""
    INTERRUPTED = 130
    """Interrupted with Ctrl-C (128 + SIGINT, as shells report it)."""


# Most specific first: the first matching class wins.
_EXIT_CODES: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (InvalidArgumentError, ExitCode.USAGE),
    (StoreNotFoundError, ExitCode.NO_STORE),
    (ConfigurationError, ExitCode.CONFIG),  # includes DriverNotFoundError
    (StoreUnavailableError, ExitCode.UNAVAILABLE),  # includes OutcomeUnknownError
    (SessionNotFoundError, ExitCode.NOT_FOUND),
    (SessionConflictError, ExitCode.CONFLICT),
    (SessionExistsError, ExitCode.CONFLICT),
    (IntegrityError, ExitCode.INTEGRITY),  # includes UnsupportedFormatError
    (KeyboardInterrupt, ExitCode.INTERRUPTED),
)

# Exceptions whose message speaks for itself; anything else is shown with its type name
# and a hint that ``--debug`` shows where it came from.
_EXPECTED: tuple[type[BaseException], ...] = (SessionStoreError, OSError)


class CliError(Exception):
    """A failure a command reports on purpose, with the exit code it wants."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: BaseException) -> ExitCode:
    """The documented exit code for an exception that escaped a command."""
    if isinstance(exc, CliError):
        return exc.code
    for cls, code in _EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return ExitCode.ERROR


def error_line(exc: BaseException) -> str:
    """``exc`` as one line of text, without the ``error:`` prefix."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    message = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    if isinstance(exc, (CliError, *_EXPECTED)):
        return message or type(exc).__name__
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} (run with --debug for the traceback)"


def fail(exc: BaseException, *, debug: bool = False) -> NoReturn:
    """Report ``exc`` on stderr and exit with its code.

    Prints exactly one ``error: ...`` line; with ``debug`` the full traceback comes first.
    """
    if debug:
        click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
    click.echo(f"error: {error_line(exc)}", err=True)
    raise click.exceptions.Exit(int(exit_code_for(exc)))


# Click's own control flow: usage errors, --help/--version, aborted prompts.
_CLICK_FLOW = (click.ClickException, click.exceptions.Exit, click.exceptions.Abort)


class GuardedGroup(click.Group):
    """A click group that turns any exception from its commands into :func:`fail`.

    Whether to show the traceback is read from the group's own ``debug`` parameter (the
    ``--debug`` option), so a group using this class should declare one.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (*_CLICK_FLOW, BrokenPipeError):
            raise  # click reports these itself (a closed stdout pipe exits quietly)
        except (Exception, KeyboardInterrupt) as exc:
            fail(exc, debug=bool(ctx.params.get("debug")))
