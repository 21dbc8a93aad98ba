"""``sessionstore drivers``: the installed drivers, whether each loads, and broken plugins."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from sessionstore import broken_plugins, check_driver, installed_drivers

from ._output import console, echo_json, json_option

__all__ = ["drivers"]


@click.command(short_help="List installed drivers (and whether they load) and broken plugins.")
@json_option
def drivers(json_output: bool) -> None:
    """List installed drivers: URL scheme, the package (and version) that provides it,
    import target, plugin, extra, and whether it loads -- each driver is imported, so a
    driver whose dependencies are missing (redis:// without the redis package) shows as
    unavailable with the reason and the extra to install. Plugins that failed to load are
    listed below the table. --json prints {"drivers": [{..., "available", "problem"}],
    "broken": {plugin: reason}}.
    """
    found: list[dict[str, Any]] = []
    for info in installed_drivers():
        problem = check_driver(info.scheme)
        found.append({**asdict(info), "available": problem is None, "problem": problem})
    broken = broken_plugins()
    if json_output:
        echo_json({"drivers": found, "broken": broken})
        return
    out = console()
    if found:
        table = Table(title="Installed drivers", title_justify="left")
        for header in ("scheme", "package", "target", "plugin", "extra", "status"):
            table.add_column(header, overflow="fold")
        for d in found:
            package = d["package"] or "-"
            if d["package"] and d["version"]:
                package = f"{d['package']} {d['version']}"
            status = "ok" if d["available"] else f"unavailable: {d['problem']}"
            table.add_row(
                Text(d["scheme"]), Text(package), Text(d["target"]), Text(d["plugin"]),
                Text(d["extra"] or "-"), Text(status, style="" if d["available"] else "red"),
            )  # fmt: skip
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
