"""`drawcli evaluate`: the variational and importance-weighted bounds of a checkpoint on held-out data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from drawcli.cli.app import app, err, handles_errors, out
from drawcli.cli.options import Binarize, Device, DeviceOption, ThreadsOption


def test_images(info: Any, dataset: str | None, data_dir: Path | None, split: str, binarize: str | None,
                limit: int | None = None) -> tuple[Any, str]:  # fmt: skip
    """The split binarized with the fixed test seed (data set and folder default to the run's), and a sentence saying how."""
    from drawcli import data

    name = dataset or info.training.get("dataset") or "mnist"
    folder = data_dir or (Path(info.training["data_dir"]) if info.training.get("data_dir") else None)
    mode = binarize or info.training.get("binarize") or "stochastic"
    images = data.load_images(data.open_dataset(name), split, folder, info.config.image_shape)[:limit]
    how = (
        f"{name} {split} split, {len(images)} images, binarized "
        + (f"stochastically once with the fixed seed {data.TEST_BINARIZATION_SEED}" if mode == "stochastic" else "by threshold (pixel > 0.5)")
    )
    return data.binarize_fixed(images, mode), how


def print_bounds(report: dict[str, Any], samples: int) -> None:
    """The human-readable form of `evaluate`'s report."""
    out.print(f"[bold]{report['checkpoint']}[/bold]: {report['data']}")
    out.print(f"bound        {report['bound']:.2f} ± {report['bound_se']:.2f} nats  (recon {report['recon']:.2f}, KL {report['kl']:.2f})")
    if samples:
        out.print(f"IW bound K={samples:<4d}{report['iw_bound']:.2f} ± {report['iw_bound_se']:.2f} nats  ({report['iw_gain']:.2f} tighter)")
    out.print("KL per glimpse: " + " ".join(f"{v:.1f}" for v in report["kl_per_glimpse"]))
    out.print(f"{report['images']} images in {report['seconds']:.1f} s")


@app.command()
@handles_errors
def evaluate(
    ctx: typer.Context,
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file or run directory.")],
    dataset: Annotated[Optional[str], typer.Option(help="Data set (default: the one it was trained on).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data folder (default: the one it was trained with).")] = None,
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    binarize: Annotated[Optional[Binarize], typer.Option(help="Binarization (default: the training run's).")] = None,  # type: ignore[valid-type]
    samples: Annotated[int, typer.Option(min=0, max=100000, help="K posterior samples for the importance-weighted bound; 0 skips it.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 250,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N images.")] = None,
    device: DeviceOption = Device("auto"),  # type: ignore[valid-type]
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """The variational bound (and with --samples K the importance-weighted bound) in nats per image."""
    from rich.progress import Progress

    from drawcli import checkpoint, devices
    from drawcli import evaluate as evaluation

    target = devices.setup(device.value, threads)
    model, info = checkpoint.load_model(checkpoint_path, target)
    images, how = test_images(info, dataset, data_dir, split, binarize.value if binarize else None, limit)
    start = time.perf_counter()
    with Progress(console=err, disable=as_json or not err.is_terminal, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(images))
        result = evaluation.per_image(model, images, target, batch_size, samples, lambda n: progress.advance(task, n))
    report = {"checkpoint": str(info.path), "data": how, "samples": samples, **evaluation.summarize(result),
              "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_bounds(report, samples)
