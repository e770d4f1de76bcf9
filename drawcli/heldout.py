"""A run's held-out data and its scores: the split a checkpoint is scored on, found where the run recorded
its data, binarized as `evaluate` does (DRAW) or labelled in the model's class order (a classifier), and
the reports `evaluate` prints (the bounds, or the test error). Used by `evaluate`, `reconstruct`,
`glimpses`, TensorBoard's pictures and the Python API."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Callable, Iterator

EVAL_BATCH_SIZE = 500  # images per batch when a model scores held-out data (training's epoch ends, evaluate)


def data_folder(info: Any, data_dir: Path | None) -> tuple[Path | None, str]:
    """--data-dir, else the folder the run recorded; and what to add to a not-found error when the
    recorded folder is not there from here (older runs recorded --data-dir as typed, relative to where they ran)."""
    recorded = info.training.get("data_dir")
    if data_dir is not None or not recorded:
        return data_dir, ""
    if Path(recorded).is_dir():
        return Path(recorded), ""
    return Path(recorded), f" (the run recorded its data folder as {recorded}, which is not a folder from {Path.cwd()})"


@contextlib.contextmanager
def hinted(hint: str) -> Iterator[None]:
    """Add `hint` to a data error raised inside the block."""
    from drawcli.errors import DataError

    try:
        yield
    except DataError as exc:
        if not hint:
            raise
        raise DataError(f"{exc}{hint}") from exc


def test_images(info: Any, dataset: str | None, data_dir: Path | None, split: str, binarize: str | None,
                limit: int | None = None) -> tuple[Any, str]:  # fmt: skip
    """The split binarized with the fixed test seed, or a binarized data set's own bits (data set and folder
    default to the run's, binarization to the data set's own bits, else the run's), and a sentence saying how."""
    from drawcli import data

    name = dataset or info.training.get("dataset") or "mnist"
    folder, hint = data_folder(info, data_dir)
    source = data.open_dataset(name)
    mode = data.binarization(source, binarize, info.training.get("binarize"))
    with hinted(hint):
        images = data.load_images(source, split, folder, info.config.image_shape)[:limit]
    how = f"{name} {split} split, {len(images)} images, {data.describe_binarization(mode)}"
    return data.binarize_fixed(images, mode), how


def labelled_test(info: Any, dataset: str | None, data_dir: Path | None, split: str, limit: int | None) -> Any:
    """A labelled split for a classifier, its labels renumbered to the model's classes by name.

    So a folder of class subfolders made elsewhere is scored against the classes the model was trained on.
    """
    from drawcli import data
    from drawcli.contract import Labelled
    from drawcli.errors import DataError

    name = dataset or info.training.get("dataset") or "mnist"
    folder, hint = data_folder(info, data_dir)
    with hinted(hint):
        images, labels, classes, _ = data.load_labelled(data.open_dataset(name), split, folder, info.config.image_shape)
    known = info.class_names()
    unknown = sorted(set(classes) - set(known))
    if unknown:
        raise DataError(f"{name} has classes the model does not know: {', '.join(unknown)} (it knows {', '.join(known)})")
    import torch

    renumber = torch.tensor([known.index(c) for c in classes], dtype=torch.int64)
    return Labelled(images[:limit], renumber[labels][:limit], tuple(known))

# Given the number of images a report will score, the callback it advances per batch (a progress bar).
Track = Callable[[int], Callable[[int], None]]


def bound_report(model: Any, info: Any, target: Any, dataset: str | None, data_dir: Path | None, split: str,
                 binarize: str | None, batch_size: int, samples: int, limit: int | None,
                 track: Track | None = None) -> dict[str, Any]:  # fmt: skip
    """A DRAW model's mean bound (with samples = K > 0, the importance-weighted bound too) on a split."""
    from drawcli.bounds import per_image, summarize

    images, how = test_images(info, dataset, data_dir, split, binarize, limit)
    result = per_image(model, images, target, batch_size, samples, track(len(images)) if track else None)
    return {"checkpoint": str(info.path), "data": how, "samples": samples, **summarize(result)}


def classifier_report(models: list[tuple[Any, Any]], target: Any, dataset: str | None, data_dir: Path | None,
                      split: str, batch_size: int, limit: int | None, view_offsets: list[tuple[int, int]],
                      track: Track | None = None) -> dict[str, Any]:  # fmt: skip
    """The first (model, info)'s test error on a split, or with more models or views their ensemble's:
    class probabilities averaged over every model and every view (offsets (dy, dx) in pixels; [(0, 0)]:
    the images as they are)."""
    from drawcli import views
    from drawcli.accuracy import error_report, predict

    info = models[0][1]
    test = labelled_test(info, dataset, data_dir, split, limit)
    for _, other_info in models[1:]:
        other_info.require_classifier_of(test.classes, info.config.image_shape, "--ensemble")
    advance = track(len(test.images) * len(models) * len(view_offsets)) if track else None
    logits = [predict(m, views.shifted(test.images, dy, dx), target, batch_size, advance)
              for m, _ in models for dy, dx in view_offsets]  # fmt: skip
    # An ensemble's prediction is the mean of its members' probabilities; its log is a valid logit.
    mean = logits[0] if len(logits) == 1 else mean_probabilities(logits).log()
    how = f"{dataset or info.training.get('dataset')} {split} split, {len(test.images)} images"
    report = {"checkpoint": str(info.path), "data": how, **error_report(mean, test.labels, test.classes)}
    if len(models) > 1:
        report["ensemble"] = [str(i.path) for _, i in models]
    if len(view_offsets) > 1:
        report["views"] = {"count": len(view_offsets), "shift": max(abs(dy) for dy, _ in view_offsets)}
    return report


def mean_probabilities(logits: list[Any]) -> Any:
    """(N, classes) mean of the softmaxes of several (N, classes) logits, kept above 0 so its log is finite."""
    import torch

    mean = torch.stack([x.softmax(dim=-1) for x in logits]).mean(dim=0)
    return mean.clamp_min(torch.finfo(mean.dtype).tiny)


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None: JSON has no NaN (a standard error of one image is undefined)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value
