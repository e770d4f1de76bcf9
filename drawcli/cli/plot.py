"""`drawcli plot`: learning curves of one or more runs in one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from drawcli.cli.app import app, fail, handles_errors, out
from drawcli.cli.options import check_outputs


@app.command()
@handles_errors
def plot(
    ctx: typer.Context,
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="Run directories (or metrics.jsonl files) to draw together.")],
    png: Annotated[Path, typer.Option(help="Output PNG (1000 x 400 pixels).")] = Path("curves.png"),
    ymax: Annotated[Optional[float], typer.Option(help="Upper limit of the nats axis (the first steps are far above the rest).")] = None,
) -> None:
    """Draw learning curves: training loss and test bound (a classifier's: test loss) against steps and wall time."""
    import math

    from drawcli.atomic import atomic_path
    from drawcli.plot import TEST_KEYS, plot_curves, read_metrics, run_labels

    if ymax is not None and not (math.isfinite(ymax) and ymax > 0):
        fail(f"--ymax must be a positive number of nats, got {ymax:g}", code=2)
    check_outputs(png=png)
    runs = dict(zip(run_labels(run_dirs), (read_metrics(path) for path in run_dirs)))
    floor = min((r[key] for records in runs.values() for r in records for key in ("loss", *TEST_KEYS) if key in r), default=0.0)
    if ymax is not None and ymax <= floor:
        fail(f"--ymax {ymax:g} is at or below every curve (the lowest value drawn is {floor:.2f} nats)", code=2)
    with atomic_path(png) as tmp:
        plot_curves(runs, tmp, (floor * 0.9, ymax) if ymax is not None else None)
    out.print(f"wrote {png}")
