"""`drawcli plot`: learning curves of one or more runs in one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from drawcli.cli.app import app, handles_errors, out
from drawcli.cli.options import check_outputs


@app.command()
@handles_errors
def plot(
    ctx: typer.Context,
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="Run directories (or metrics.jsonl files) to draw together.")],
    png: Annotated[Path, typer.Option(help="Output PNG (1000 x 400 pixels).")] = Path("curves.png"),
    ymax: Annotated[Optional[float], typer.Option(help="Upper limit of the nats axis (the first steps are far above the rest).")] = None,
) -> None:
    """Draw learning curves: training loss and test bound against steps and wall time."""
    from drawcli.atomic import atomic_path
    from drawcli.plot import plot_curves, read_metrics

    check_outputs(png)
    runs = {path.name if path.is_dir() else path.parent.name: read_metrics(path) for path in run_dirs}
    floor = min(r.get("test_bound", r.get("loss", 0.0)) for records in runs.values() for r in records)
    with atomic_path(png) as tmp:
        plot_curves(runs, tmp, (floor * 0.9, ymax) if ymax else None)
    out.print(f"wrote {png}")
