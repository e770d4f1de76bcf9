"""`drawcli sample`, `reconstruct` and `glimpses`: models drawing, and reading, as GIFs and PNGs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from drawcli.cli.app import app, err, fail, handles_errors, out
from drawcli.cli.options import (
    SEED_RANGE,
    DataDirOption,
    DatasetOption,
    Device,
    DeviceOption,
    FpsOption,
    PngOption,
    ScaleOption,
    ThreadsOption,
    check_outputs,
)

CheckpointArg = Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint file or run directory.")]


def require_drawing(model: Any, info: Any, command: str) -> None:
    """Fail cleanly on a model that has no canvas (the attention classifier) for `command`."""
    from drawcli import kinds

    if not kinds.of(model).draws:
        fail(f"{info.path} holds a {info.config.kind} model, which does not {command}: only generative models draw; "
             f"`drawcli glimpses {info.path}` shows where it looks")  # fmt: skip


def draw_samples(model: Any, gif: Path | None, png: Path | None, n: int, seed: int, fps: float, scale: int, boxes: bool) -> None:
    """n images from the prior: a GIF of the canvases glimpse by glimpse and/or a PNG of the final grid."""
    from drawcli import api, render

    generation = api.sample(model, n, seed)
    windows = generation.write_windows if boxes else None
    frames = render.canvas_frames(generation.canvases, scale=scale, windows=windows)
    if gif is not None:
        render.write_gif(gif, frames, fps=fps)
    if png is not None:
        render.write_png(png, render.frame(generation.canvases[-1], scale=scale))


@app.command()
@handles_errors
def sample(
    ctx: typer.Context,
    checkpoint_path: Annotated[Optional[Path], typer.Argument(metavar="[CHECKPOINT]",
            help="Checkpoint file or run directory (default: the newest run under runs/).")] = None,
    gif: Annotated[Optional[Path], typer.Option(
            help="Write the drawing, one frame per glimpse, to this GIF (default samples.gif when --png is not given).")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Write the final grid to this PNG.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=4096, help="Images to draw (laid out in a square grid).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for the prior samples.", **SEED_RANGE)] = 0,
    fps: FpsOption = 8.0,
    scale: ScaleOption = 2,
    boxes: Annotated[bool, typer.Option("--boxes", help="Draw each glimpse's write window (writers that produce windows).")] = False,
    device: DeviceOption = Device("auto"),  # type: ignore[valid-type]
    threads: ThreadsOption = None,
) -> None:
    """Draw images from the prior and write a GIF of the canvases evolving glimpse by glimpse."""
    from drawcli import checkpoint, devices, rundir

    if checkpoint_path is None:
        checkpoint_path = rundir.newest_checkpoint()
        err.print(f"using the newest run: {checkpoint_path}")
    if gif is None and png is None:
        gif = Path("samples.gif")
    check_outputs(gif=gif, png=png)
    model, info = checkpoint.load_model(checkpoint_path, devices.setup(device.value, threads))
    model.eval()
    require_drawing(model, info, "sample")
    if boxes and not model.writer.produces_windows:
        fail(f"--boxes needs a writer that produces windows; this model's writer {model.config.writer!r} has none")
    start = time.perf_counter()
    draw_samples(model, gif, png, n=n, seed=seed, fps=fps, scale=scale, boxes=boxes)
    wrote = " and ".join(str(p) for p in (gif, png) if p is not None)
    out.print(f"wrote {wrote}: {n} samples, {info.config.glimpses} glimpses, {time.perf_counter() - start:.1f} s")


@app.command()
@handles_errors
def reconstruct(
    ctx: typer.Context,
    checkpoint_path: CheckpointArg,
    gif: Annotated[Path, typer.Option(
            help="GIF: originals with the read window (green) beside the canvas with the write window (red).")] = Path("reconstruction.gif"),
    png: PngOption = None,
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="Test images to reconstruct.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed choosing the images and the posterior noise.", **SEED_RANGE)] = 0,
    fps: FpsOption = 8.0,
    scale: ScaleOption = 3,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = Device("auto"),  # type: ignore[valid-type]
    threads: ThreadsOption = None,
) -> None:
    """Reconstruct test images glimpse by glimpse, with the attention windows drawn (the paper's Figure 1)."""
    import torch

    from drawcli import api, checkpoint, devices, render
    from drawcli.heldout import test_images

    check_outputs(gif=gif, png=png)
    target = devices.setup(device.value, threads)
    model, info = checkpoint.load_model(checkpoint_path, target)
    model.eval()
    require_drawing(model, info, "reconstruct")
    images, _ = test_images(info, dataset, data_dir, "test", None)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    x = images[pick].to(target)
    result = api.reconstruct(model, x, seed)
    frames = render.reconstruction_frames(x, result, scale)
    render.write_gif(gif, frames, fps=fps)
    if png is not None:
        render.write_png(png, frames[-1])
    bound = result.loss.mean().item()
    out.print(f"wrote {gif}: {len(x)} test images, {len(frames)} frames, bound {bound:.2f} nats on these images")


@app.command()
@handles_errors
def glimpses(
    ctx: typer.Context,
    checkpoint_path: CheckpointArg,
    gif: Annotated[Path, typer.Option(help="GIF: test images with each glimpse's read window (green), one frame per glimpse; captions give the "
            "glimpse, then the predicted and true labels.")] = Path("glimpses.gif"),
    png: PngOption = None,
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="Test images to show.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed choosing the images.", **SEED_RANGE)] = 0,
    mistakes: Annotated[bool, typer.Option("--mistakes",
            help="Show only test images the model gets wrong (it classifies the whole test split first): where its "
            "attention fails.")] = False,
    fps: FpsOption = 2.0,
    scale: ScaleOption = 1,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = Device("auto"),  # type: ignore[valid-type]
    threads: ThreadsOption = None,
) -> None:
    """Show an attention classifier at work: where each glimpse reads, and what it predicts."""
    import torch

    from drawcli import api, checkpoint, devices, kinds, render
    from drawcli.heldout import labelled_test

    check_outputs(gif=gif, png=png)
    target = devices.setup(device.value, threads)
    model, info = checkpoint.load_model(checkpoint_path, target)
    if not kinds.of(model).classifies:
        fail(f"{info.path} holds a {info.config.kind} model; `drawcli glimpses` shows classifiers (try `drawcli reconstruct`)")
    test = labelled_test(info, dataset, data_dir, "test", None)
    pick = torch.randperm(len(test.images), generator=torch.Generator().manual_seed(seed))
    shown = f"{len(test.images)} test images"
    if mistakes:
        pick = pick[misclassified(model, test, target)[pick]]
        shown = f"{len(pick)} mistakes in {len(test.images)} test images"
        if not len(pick):
            fail(f"{info.path} classifies all {len(test.images)} test images right: no mistakes to show")
    pick = pick[:n]
    x = test.images[pick].float().div(255).to(target)
    model.eval()
    result = api.classify(model, x)
    names = test.classes  # the model's classes, in the order of its outputs
    captions = [(names[p], names[t]) for p, t in zip(result.logits.argmax(1).tolist(), test.labels[pick].tolist())]
    frames = render.glimpse_frames(x, result.read_windows, captions, scale)
    render.write_gif(gif, frames, fps=fps)
    if png is not None:
        render.write_png(png, frames[-1])
    right = sum(p == t for p, t in captions)
    out.print(f"wrote {gif}: {len(x)} of {shown}, {len(frames)} frames, {right} of {len(x)} classified right")


def misclassified(model: Any, test: Any, target: Any) -> Any:
    """(N,) bool: the test images whose most likely class is not their label, classified with a progress bar."""
    from rich.progress import Progress

    from drawcli.accuracy import predict

    with Progress(console=err, disable=not err.is_terminal, transient=True) as progress:
        task = progress.add_task("finding mistakes", total=len(test.images))
        logits = predict(model, test.images, target, on_batch=lambda k: progress.advance(task, k))
    return logits.argmax(1) != test.labels
