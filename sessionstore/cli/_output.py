"""Shared output helpers: the per-run state, ``--json``, JSON and rich output.

Conventions for every command:

- Human output goes to stdout through :func:`console` (rich; tables, no markup taken from
  data -- wrap values in :class:`rich.text.Text`).
- A command with a machine-readable form takes :func:`json_option`; with ``--json`` (on
  the command or on the group) it prints exactly one JSON document on stdout with
  :func:`echo_json`, and nothing else.
- Errors never go to stdout: they are raised and reported by ``_errors``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console

__all__ = ["JSON_PARAM", "CliState", "console", "echo_json", "json_option", "supports_json"]

F = TypeVar("F", bound=Callable[..., Any])

JSON_PARAM = "json_output"


@dataclass(frozen=True)
class CliState:
    """Global options, stored as ``ctx.obj`` by the root group."""

    debug: bool = False
    json: bool = False


def _or_global_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    state = ctx.find_object(CliState)
    return value or (state is not None and state.json)


def json_option(f: F) -> F:
    """Give a command ``--json``; it receives ``json_output``.

    ``json_output`` is also true when the group got ``--json`` (``sessionstore --json ls``).
    """
    return click.option(
        "--json",
        JSON_PARAM,
        is_flag=True,
        callback=_or_global_json,
        help="Print one JSON document on stdout instead of tables.",
    )(f)


def supports_json(command: click.Command) -> bool:
    """Whether ``command`` was declared with :func:`json_option`."""
    return any(param.name == JSON_PARAM for param in command.params)


def echo_json(data: Any) -> None:
    """Print ``data`` as one JSON document (indented, UTF-8, key order kept) on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def console() -> Console:
    """A rich console on the current stdout (no syntax highlighting guessed from data)."""
    return Console(highlight=False, soft_wrap=False)
