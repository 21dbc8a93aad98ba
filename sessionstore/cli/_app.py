"""The root ``sessionstore`` click group and its global options.

Commands live one per module (``_drivers.py``, ...) and are listed in :data:`COMMANDS` as
import strings: a command's module is imported only when that command runs (or when
``--help`` lists them all), so a slow import in one command never slows the others.
To add a command: write ``sessionstore/cli/_<name>.py`` defining a ``click.Command``,
add it to :data:`COMMANDS`, document it in ``docs/cli.md``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Final

import click

from sessionstore import __version__

from ._errors import GuardedGroup
from ._output import CliState, supports_json

__all__ = ["COMMANDS", "cli"]

COMMANDS: Final[dict[str, str]] = {
    "backup": "sessionstore.cli._backup:backup",
    "conformance": "sessionstore.cli._conformance:conformance",
    "doctor": "sessionstore.cli._doctor:doctor",
    "drivers": "sessionstore.cli._drivers:drivers",
    "ls": "sessionstore.cli._ls:ls",
    "migrate": "sessionstore.cli._migrate:migrate",
    "purge-expired": "sessionstore.cli._purge:purge_expired",
    "restore": "sessionstore.cli._restore:restore",
    "rm": "sessionstore.cli._rm:rm",
    "show": "sessionstore.cli._show:show",
    "stats": "sessionstore.cli._stats:stats",
    "verify": "sessionstore.cli._verify:verify",
}


class SessionstoreGroup(GuardedGroup):
    """The root group: error handling from :class:`GuardedGroup`, commands loaded lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        module_name, _, attr = COMMANDS[cmd_name].partition(":")
        loaded = getattr(importlib.import_module(module_name), attr)
        if not isinstance(loaded, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
        self.add_command(loaded, cmd_name)
        return loaded


@click.group(
    cls=SessionstoreGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__,
    "--version",
    prog_name="sessionstore",
    message="%(prog)s %(version)s",
    help="Print 'sessionstore <version>' and exit.",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar="SESSIONSTORE_DEBUG",
    help="Show the full traceback of an error, and debug logging. [env: SESSIONSTORE_DEBUG]",
)
@click.option(
    "--json",
    "json_output",
    is_flag=True,
    help="Machine-readable output: the same as --json on a command that supports it.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, json_output: bool) -> None:
    """Inspect and manage sessionstore stores and drivers.

    Errors are reported as one 'error: ...' line on stderr, with an exit code
    from the table in docs/cli.md (0 ok, 1 error, 2 usage, 3 configuration or
    driver not found, 4 store unavailable, ..., 8 no store at the URL).
    """
    ctx.obj = CliState(debug=debug, json=json_output)
    if debug:
        logger = logging.getLogger("sessionstore")
        previous = logger.level
        logger.setLevel(logging.DEBUG)
        ctx.call_on_close(lambda: logger.setLevel(previous))
    if json_output and ctx.invoked_subcommand is not None:
        command = ctx.command
        assert isinstance(command, click.Group)
        sub = command.get_command(ctx, ctx.invoked_subcommand)
        if sub is not None and not supports_json(sub):
            raise click.UsageError(f"'{ctx.invoked_subcommand}' has no --json output", ctx=ctx)
