"""``sessionstore drivers``: the installed drivers and the plugins that failed to load."""

from __future__ import annotations

from dataclasses import asdict

import click
from rich.table import Table
from rich.text import Text

from sessionstore import broken_plugins, installed_drivers

from ._output import console, echo_json, json_option

__all__ = ["drivers"]


@click.command(short_help="List installed drivers and broken plugins.")
@json_option
def drivers(json_output: bool) -> None:
    """List installed drivers (URL scheme, import target, plugin, extra) and broken plugins.

    A driver is imported only when a store uses it, so a listed driver can still fail to
    load if its extra is not installed. Plugins that failed to load are listed below the
    table with the reason. --json prints {"drivers": [...], "broken": {plugin: reason}}.
    """
    found = installed_drivers()
    broken = broken_plugins()
    if json_output:
        echo_json({"drivers": [asdict(d) for d in found], "broken": broken})
        return
    out = console()
    if found:
        table = Table(title="Installed drivers", title_justify="left")
        for header in ("scheme", "target", "plugin", "extra"):
            table.add_column(header, overflow="fold")
        for d in found:
            table.add_row(Text(d.scheme), Text(d.target), Text(d.plugin), Text(d.extra or "-"))
        out.print(table)
    else:
        out.print("No drivers installed.")
    if broken:
        table = Table(title="Broken plugins", title_justify="left")
        table.add_column("plugin", overflow="fold")
        table.add_column("reason", overflow="fold")
        for name, reason in sorted(broken.items()):
            table.add_row(Text(name), Text(reason))
        out.print(table)
