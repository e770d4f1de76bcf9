"""TensorBoard, when it is installed: what a run shows there beside its scalars (metrics.py).

At each sample interval and at the end: DRAW's samples (the final canvases) and a strip of them
glimpse by glimpse, and a reconstruction of test images with the read and write windows drawn;
a classifier's test images with its read windows and predicted labels, and a strip of each
glimpse's window. At the end, the run's config and settings as hyperparameters with the final
held-out bound or error as the metric. The pictures come from the same calls as the `sample`,
`reconstruct` and `glimpses` commands, with a seed of their own inside a forked RNG, so logging
them changes nothing the run computes.

All of a run's writes go to one SummaryWriter per folder (`writer`), so one event file holds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from drawcli.rundir import RunDir
    from drawcli.training.settings import TrainSettings

SCALE = 2  # pixels per image pixel, as in the sample GIFs
SHOWN = 16  # test images DRAW reconstructs
STRIP_ROWS = 8  # samples (DRAW) or test images (classifier) in a strip, one per row; also the test images a classifier reads
STRIP_GLIMPSES = 8  # columns of a strip at most: glimpses evenly spaced from the first to the last

_WRITERS: dict[Path, Any] = {}  # one SummaryWriter per folder in this process


def writer(log_dir: Path) -> Any | None:
    """The SummaryWriter of `log_dir`, made on first use and then shared (metrics log, pictures,
    hyperparameters: one event file); None when tensorboard is not installed."""
    key = Path(log_dir).absolute()
    if key not in _WRITERS:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        _WRITERS[key] = SummaryWriter(log_dir=str(log_dir))
    return _WRITERS[key]


def close(log_dir: Path) -> None:
    """Flush and close the writer of `log_dir`, if one was made; a later `writer` makes a new event file."""
    found = _WRITERS.pop(Path(log_dir).absolute(), None)
    if found is not None:
        found.close()


def strip_glimpses(glimpses: int) -> list[int]:
    """0-based glimpses a strip shows: up to STRIP_GLIMPSES, evenly spaced, the first and the last included."""
    count = min(glimpses, STRIP_GLIMPSES)
    return sorted({round(k * (glimpses - 1) / max(count - 1, 1)) for k in range(count)})


def strip(columns: list[torch.Tensor]) -> np.ndarray:
    """Columns of RGB uint8 images, each (n, 3, h, w) -> one (rows, cols, 3) grid: image i of every column in row i."""
    import torch
    from torchvision.utils import make_grid

    from drawcli.render import GRID_PADDING

    cells = torch.stack(columns, dim=1).flatten(0, 1)  # (n * columns, 3, h, w), row by row
    return make_grid(cells, nrow=len(columns), padding=GRID_PADDING).permute(1, 2, 0).contiguous().numpy()


def draw_pictures(model: Any, images: torch.Tensor, count: int, seed: int) -> dict[str, np.ndarray]:
    """DRAW's pictures, (h, w, 3) uint8 each: `count` samples' final canvases, a strip of the first
    STRIP_ROWS glimpse by glimpse, and binary `images` (n, C, H, W) reconstructed with the read (green)
    and write (red) windows of the last glimpse (the last frame of `drawcli reconstruct`)."""
    import dataclasses

    from drawcli import api, render

    canvases = api.sample(model, count, seed).canvases  # (T, count, C, H, W)
    result = api.reconstruct(model, images, seed)
    assert result.canvases is not None  # recorded: (T, n, C, H, W)
    read, write = result.read_windows, result.write_windows  # T windows each, or None
    last = dataclasses.replace(result, canvases=result.canvases[-1:], read_windows=read[-1:] if read else None,
                               write_windows=write[-1:] if write else None)  # only the last glimpse's frame is drawn
    return {
        "images/samples": render.frame(canvases[-1], SCALE),
        "images/samples_by_glimpse": strip([render.pixels(canvases[t, :STRIP_ROWS], SCALE) for t in strip_glimpses(len(canvases))]),
        "images/reconstruction": render.reconstruction_frames(images, last, SCALE)[0],
    }


def classifier_pictures(model: Any, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A classifier's pictures, (h, w, 3) uint8 each, of grey `images` (n, C, H, W) in [0, 1] with int
    `labels` (n,): each image with the last glimpse's read window, captioned "#T predicted/true" (the
    last frame of `drawcli glimpses`), and a strip of every image's window glimpse by glimpse (readers
    with windows: the others read the same whole image every glimpse)."""
    from drawcli import api, render

    result = api.classify(model, images)
    captions = [(classes[p], classes[t]) for p, t in zip(result.logits.argmax(1).tolist(), labels.tolist())]
    windows = result.read_windows  # T windows, or None for a reader without them
    shown = {"images/glimpses": render.glimpse_frames(images, windows, captions, SCALE)[-1]}
    if windows:
        columns = [render.pixels(images, SCALE, windows[t], render.READ_COLOUR) for t in strip_glimpses(len(windows))]
        shown["images/glimpses_by_glimpse"] = strip(columns)
    return shown


def hparam_value(value: Any) -> int | float | str:
    """A config or settings value as TensorBoard's hyperparameters take it: numbers and strings as
    they are; flags, lists and option objects as JSON text ("true", "[]", "{}")."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return json.dumps(value, sort_keys=True)


def log_hparams(board: Any, kind: str, values: dict[str, Any], last_test: dict[str, float], step: int) -> None:
    """The run's `values` (config and settings; None ones left out) as hyperparameters, judged by the
    final held-out metric of its kind (kinds.ModelKind.metric), logged as the scalar hparams/test_<metric>."""
    from torch.utils.tensorboard.summary import hparams

    from drawcli import kinds

    name = kinds.get(kind).metric
    tag = f"hparams/test_{name}"
    shown = {key: hparam_value(value) for key, value in values.items() if value is not None}
    for summary in hparams(shown, {tag: last_test.get(name)}):  # the experiment, session start and session end
        board.file_writer.add_summary(summary, step)
    if name in last_test:
        board.add_scalar(tag, last_test[name], step)
    board.flush()


class RunBoard:
    """What a run adds to its TensorBoard folder beside the scalars: pictures at each sample interval
    and at the end, then the hyperparameters. Rank 0's alone; without tensorboard it does nothing."""

    def __init__(self, run: RunDir, settings: TrainSettings) -> None:
        self.run, self.settings = run, settings
        self.classifies = False  # the run's model kind classifies (kinds.ModelKind), read with the test images
        self.test: tuple[Any, ...] = ()  # (images, labels or None, class names): the test images every picture shows
        self.pictured: int | None = None  # the step of the last pictures

    def pictures(self, model: Any, step: int) -> None:
        """Log what `model` draws (DRAW) or where it looks (classifier) at `step`, in eval mode (the
        drawing calls fork the RNG), so that training goes on exactly as without them. Call after a save."""
        board = writer(self.run.tensorboard)
        if board is None:
            return
        images, labels, classes = self._test_images()
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            if self.classifies:
                shown = classifier_pictures(model, images.to(device), labels, classes)
            else:
                shown = draw_pictures(model, images.to(device), self.settings.sample_count, self.settings.seed)
        finally:
            model.train(was_training)
        for tag, picture in shown.items():
            board.add_image(tag, picture, step, dataformats="HWC")
        board.flush()
        self.pictured = step

    def _test_images(self) -> tuple[Any, ...]:
        """The test images to picture, read once as `reconstruct` (binarized) and `glimpses` (grey,
        labelled) read them, picked with the run's seed so every interval shows the same ones."""
        import torch

        from drawcli import checkpoint, kinds
        from drawcli.heldout import labelled_test, test_images

        if not self.test:
            info = checkpoint.read_info(self.run.checkpoint)
            self.classifies = kinds.get(info.config.kind).classifies
            pick = torch.Generator().manual_seed(self.settings.seed)
            if self.classifies:
                test = labelled_test(info, None, None, "test", None)
                chosen = torch.randperm(len(test.images), generator=pick)[:STRIP_ROWS]
                self.test = (test.images[chosen].float().div(255), test.labels[chosen], test.classes)
            else:
                images, _ = test_images(info, None, None, "test", None)
                self.test = (images[torch.randperm(len(images), generator=pick)[:SHOWN]], None, ())
        return self.test

    def finish(self, summary: dict[str, Any]) -> None:
        """At the end of a run: the final model's pictures (unless the last interval just logged them),
        then the hyperparameters with the final held-out metric. The caller closes the writer (`close`)."""
        from drawcli import checkpoint

        board = writer(self.run.tensorboard)
        if board is None:
            return
        step = summary["steps"]
        if self.settings.sample_every and self.pictured != step:
            model, _ = checkpoint.load_model(self.run.checkpoint, summary["device"])
            self.pictures(model, step)
        config = checkpoint.read_info(self.run.checkpoint).config
        log_hparams(board, config.kind, {**config.to_dict(), **self.settings.to_dict()}, summary.get("last_test") or {}, step)
