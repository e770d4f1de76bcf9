"""`drawcli evaluate`: a DRAW model's variational and importance-weighted bounds, or a classifier's
test error with per-class errors and the confusion matrix, on held-out data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from drawcli.cli.app import app, err, handles_errors, out
from drawcli.cli.options import (
    Binarize,
    DataDirOption,
    DatasetOption,
    Device,
    DeviceOption,
    ThreadsOption,
    from_command_line,
)
from drawcli.errors import ConfigError
from drawcli.heldout import bound_report, classifier_report, finite
from drawcli.views import DEFAULT_SHIFT, MAX_VIEWS, offsets


def print_errors(report: dict[str, Any]) -> None:
    """The human-readable form of `evaluate`'s report on a classifier."""
    from rich.table import Table

    out.print(Text.assemble((report["checkpoint"], "bold"), ": ", report["data"]))
    if "ensemble" in report:
        out.print(f"ensemble of {len(report['ensemble'])} (probabilities averaged): {', '.join(report['ensemble'])}")
    if "views" in report:
        views = report["views"]
        out.print(f"each image seen in {views['count']} views, shifted by up to {views['shift']} pixels (probabilities averaged)")
    out.print(f"test error   {report['error']:.2f} ± {report['error_se']:.2f} %  (cross-entropy {report['loss']:.4f} nats)")
    classes = report["classes"]
    table = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left")
    for col in ("class", *classes, "error %"):
        table.add_column(col, justify="right")
    for name, row in zip(classes, report["confusion"]):
        error = report["per_class"][name]["error"]
        table.add_row(name, *map(str, row), "-" if error is None else f"{error:.2f}")
    out.print(table)
    out.print(f"{report['images']} images in {report['seconds']:.1f} s")


def print_bounds(report: dict[str, Any], samples: int) -> None:
    """The human-readable form of `evaluate`'s report."""
    out.print(Text.assemble((report["checkpoint"], "bold"), ": ", report["data"]))
    out.print(f"bound        {report['bound']:.2f} ± {report['bound_se']:.2f} nats  (recon {report['recon']:.2f}, KL {report['kl']:.2f})")
    if samples:
        out.print(f"IW bound     {report['iw_bound']:.2f} ± {report['iw_bound_se']:.2f} nats  ({_iw_note(samples, report['iw_gain'])})")
    out.print("KL per glimpse: " + " ".join(f"{v:.1f}" for v in report["kl_per_glimpse"]))
    out.print(f"{report['images']} images in {report['seconds']:.1f} s")


def _iw_note(samples: int, gain: float) -> str:
    """How the importance-weighted figure compares with the bound: with K = 1 it is the bound's own
    estimator (one posterior sample, other noise), and on average it is never looser."""
    if samples == 1:
        return "K = 1: the same estimator as the bound, from other noise; K > 1 gives a tighter bound"
    if gain < 0:
        return f"K = {samples}; {-gain:.2f} looser, which is sampling noise: on average it is never looser"
    return f"K = {samples}; {gain:.2f} tighter"


def _refuse_unused(ctx: typer.Context, model: Any, info: Any, ensemble: bool, samples: int, binarize: Any, views: int,
                   view_shift: int) -> None:  # fmt: skip
    """One line for an option this model cannot use, before any data is loaded."""
    from drawcli import kinds

    draws = kinds.of(model).draws
    if draws and ensemble:
        raise ConfigError("--ensemble averages classifiers' predictions; a DRAW model's bound has no ensemble")
    if draws and views > 1:
        raise ConfigError("--views averages a classifier's predictions over shifted images; a DRAW model's bound has no views")
    if not draws and samples:
        raise ConfigError("--samples is for DRAW models: the importance-weighted bound is DRAW's")
    if not draws and binarize:
        raise ConfigError("--binarize is for DRAW models: the classifier reads grey levels")
    if views == 1 and from_command_line(ctx, "view_shift"):
        raise ConfigError("--view-shift is the shift of --views K's copies: give --views too")
    if views > 1 and view_shift >= min(info.config.image_shape[1:]):
        raise ConfigError(f"--view-shift must be under the images' {min(info.config.image_shape[1:])} pixels")


@app.command()
@handles_errors
def evaluate(
    ctx: typer.Context,
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file or run directory.")],
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    split: Annotated[str, typer.Option(help="train or test (binarized-mnist also has valid).")] = "test",
    binarize: Annotated[Optional[Binarize], typer.Option(help="Binarization (default: a binarized data set's own bits, else the training run's).")] = None,  # type: ignore[valid-type]
    samples: Annotated[int, typer.Option(min=0, max=100000,
            help="K posterior samples for the importance-weighted bound (tighter for K > 1; K = 1 estimates the bound "
            "itself); 0 skips it.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 250,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N images.")] = None,
    device: DeviceOption = Device("auto"),  # type: ignore[valid-type]
    threads: ThreadsOption = None,
    ensemble: Annotated[Optional[list[Path]], typer.Option("--ensemble", metavar="CHECKPOINT",
            help="Classifiers only: another classifier of the same classes whose probabilities are averaged with this "
            "one's (repeat for more); the error reported is the ensemble's.")] = None,
    views: Annotated[int, typer.Option(min=1, max=MAX_VIEWS,
            help="Classifiers only: average the class probabilities over this many views of each image: the image, "
            f"then copies shifted by --view-shift pixels along the diagonals, then the axes (1 to {MAX_VIEWS}; 1: "
            "the image alone, the paper's measure). One forward pass per view.")] = 1,
    view_shift: Annotated[int, typer.Option(min=1, help="With --views: the shift in pixels.")] = DEFAULT_SHIFT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """The variational bound (and with --samples K the importance-weighted bound) in nats per image;
    for a classifier, the test error in % with its standard error, per-class errors and the confusion matrix."""
    from rich.progress import Progress

    from drawcli import checkpoint, devices, kinds

    target = devices.setup(device.value, threads)
    model, info = checkpoint.load_model(checkpoint_path, target)
    others = [checkpoint.load_model(path, target) for path in ensemble or []]
    _refuse_unused(ctx, model, info, bool(others), samples, binarize, views, view_shift)
    start = time.perf_counter()
    with Progress(console=err, disable=as_json or not err.is_terminal, transient=True) as progress:

        def track(total: int) -> Any:
            task = progress.add_task("evaluating", total=total)
            return lambda n: progress.advance(task, n)

        if kinds.of(model).classifies:  # an error rate, not a bound
            report = classifier_report([(model, info), *others], target, dataset, data_dir, split, batch_size, limit,
                                       offsets(views, view_shift), track)  # fmt: skip
        else:
            report = bound_report(model, info, target, dataset, data_dir, split, binarize.value if binarize else None,
                                  batch_size, samples, limit, track)  # fmt: skip
    report["seconds"] = round(time.perf_counter() - start, 2)
    if as_json:
        print(json.dumps(finite(report), indent=2))
    elif "error" in report:
        print_errors(report)
    else:
        print_bounds(report, samples)
