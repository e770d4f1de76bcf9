"""`drawcli inspect`, `plugins` and `presets`: what a checkpoint holds and what is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from drawcli import registry
from drawcli.cli.app import app, handles_errors, out


@app.command()
@handles_errors
def inspect(
    ctx: typer.Context,
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file or run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Show what a checkpoint holds: config, components, parameters, tensors, training summary."""
    from drawcli import checkpoint
    from drawcli.report import checkpoint_report, print_report

    report = checkpoint_report(checkpoint.read_info(checkpoint_path))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, out)


@app.command("presets")
def list_presets() -> None:
    """List the named settings `drawcli train --preset` accepts."""
    from drawcli import presets
    from drawcli.cli.options import as_options

    table = Table(title="presets")
    table.add_column("name")
    table.add_column("description")
    table.add_column("options")
    for name, preset in presets.PRESETS.items():
        table.add_row(name, preset.description, presets.command_line(as_options(preset.settings)))
    out.print(table)


@app.command()
@handles_errors
def plugins(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON on stdout.")] = False,
) -> None:
    """List installed readers, writers, samplers and data sets, with aliases and distributions."""
    listing: dict[str, list[dict[str, Any]]] = {
        kind: [{"name": s.name, "aliases": list(s.aliases), "target": s.value, "distribution": s.distribution,
                "version": s.version} for s in registry.find(kind)]  # fmt: skip
        for kind in registry.GROUPS
    }
    if as_json:
        print(json.dumps(listing, indent=2))
        return
    table = Table(title="drawcli components")
    for col in ("kind", "name", "aliases", "provided by", "target"):
        table.add_column(col)
    for kind, specs in listing.items():
        for s in specs:
            table.add_row(kind, s["name"], ", ".join(s["aliases"]), f"{s['distribution']} {s['version']}", s["target"])
    out.print(table)
