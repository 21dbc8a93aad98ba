"""The ``sessionstore`` command (needs the ``cli`` extra: click and rich).

This module imports neither click nor rich at import time: :func:`main` checks for them
first, so that a missing ``cli`` extra ends in one clear line instead of a traceback --
except for ``sessionstore --version``, which needs neither and answers anyway (with a
second line saying what to install for the rest). See ``docs/cli.md`` for the commands,
options and exit codes.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

_CLI_REQUIREMENTS = ("click", "rich")
INSTALL_HINT = "pip install 'sessionstore[cli]'"


class _LevelPrefixFormatter(logging.Formatter):
    """``warning: message`` -- the same shape as the CLI's ``error:`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _configure_logging() -> None:
    # Library warnings (e.g. a plugin that failed to load) go to stderr as one short line.
    # ``--debug`` lowers the "sessionstore" logger to DEBUG (see ``_app``).
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LevelPrefixFormatter())
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``sessionstore`` command line (the console-script entry point).

    Exits the process with the code documented in ``docs/cli.md``.
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    for name in _CLI_REQUIREMENTS:
        try:
            importlib.import_module(name)
        except ImportError:
            if args == ["--version"]:
                from sessionstore import __version__

                print(f"sessionstore {__version__}")
                print(
                    f"note: the other commands need {name!r}, which is not installed; "
                    f"install the cli extra: {INSTALL_HINT}",
                    file=sys.stderr,
                )
                raise SystemExit(0) from None
            print(
                f"error: the sessionstore command needs {name!r}, which is not installed; "
                f"install the cli extra: {INSTALL_HINT}",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
    _configure_logging()
    from ._app import cli

    cli.main(args=args, prog_name="sessionstore")
