"""Loading data sets through the `drawcli.datasets` entry points, and binarizing them (or keeping a binarized data set's own bits)."""

from __future__ import annotations

from pathlib import Path

import torch

from drawcli import registry
from drawcli.choices import BINARIZE_MODES
from drawcli.contract import Dataset, Labelled
from drawcli.errors import DataError, PluginError

TEST_BINARIZATION_SEED = 20150216  # fixed, so test bounds are comparable between runs


def open_dataset(name: str) -> Dataset:
    """Build a data set by entry-point name."""
    dataset = registry.build("dataset", name)
    if not isinstance(dataset, Dataset):
        raise PluginError(f"dataset {name!r} does not implement drawcli.contract.Dataset")
    return dataset


def load_images(dataset: Dataset, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 images (N, C, H, W) of one split, checked against the model's image shape."""
    images = dataset.load(split, data_dir, image_shape)
    _check_images(images, split, image_shape)
    if dataset.binarized and bool(((images != 0) & (images != 255)).any()):
        raise DataError(f"data set {type(dataset).__name__} sets binarized, but its {split} split has pixels other than 0 and 255")
    return images


def _check_images(images: torch.Tensor, split: str, image_shape: tuple[int, int, int]) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != tuple(image_shape):
        raise DataError(
            f"{split} images have shape {tuple(images.shape)} ({images.dtype}), but the model "
            f"expects (N, {', '.join(map(str, image_shape))}) uint8"
        )
    if len(images) == 0:
        raise DataError(f"the {split} split is empty")


def load_labelled(dataset: Dataset, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
    """Images (checked as load_images does) and int64 labels (N,) within the class list."""
    if not dataset.has_labels:
        raise DataError(f"data set {type(dataset).__name__} has no labels, so a classifier cannot train on it")
    return _checked(dataset, dataset.load_labelled(split, data_dir, image_shape), split, image_shape)


def load_labelled_epoch(dataset: Dataset, epoch: int, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
    """The training split composed afresh for `epoch` (`train --redraw`), checked as load_labelled does."""
    return _checked(dataset, dataset.load_labelled_epoch(epoch, data_dir, image_shape), f"epoch {epoch}'s train", image_shape)


def _checked(dataset: Dataset, labelled: Labelled, split: str, image_shape: tuple[int, int, int]) -> Labelled:
    images, labels, classes, *rest = labelled  # a plain (images, labels, classes) tuple is accepted too
    centres = rest[0] if rest else None
    if dataset.has_centres and centres is None:
        raise DataError(f"data set {type(dataset).__name__} sets has_centres, but its {split} split came without centres")
    _check_images(images, split, image_shape)
    if labels.dtype != torch.int64 or labels.shape != (len(images),):
        raise DataError(f"{split} labels have shape {tuple(labels.shape)} ({labels.dtype}), expected ({len(images)},) int64")
    if not classes or (len(labels) and (labels.min() < 0 or labels.max() >= len(classes))):
        raise DataError(f"{split} labels must lie in 0..{len(classes) - 1}, one for each of its {len(classes)} classes")
    if centres is not None and (centres.dtype != torch.float32 or centres.shape != (len(images), 2)):
        raise DataError(f"{split} object centres have shape {tuple(centres.shape)} ({centres.dtype}), expected ({len(images)}, 2) float32")
    return Labelled(images, labels, tuple(classes), centres)


def binarization(dataset: Dataset, asked: str | None, recorded: str | None = None) -> str:
    """The binarization DRAW uses on `dataset`: `asked` (an explicit --binarize), else the data set's
    own bits when it has them (its `binarized` capability), else `recorded` (a run's own, for
    evaluate), else stochastic. `fixed` is refused for grey levels: there are no bits to keep.

    On a binarized data set every mode gives the same bits (a Bernoulli sample of a 0 or 1 is
    that value), so an explicit stochastic or threshold is harmless there.
    """
    if asked == "fixed" and not dataset.binarized:
        raise DataError(f"--binarize fixed keeps a data set's own bits, and {type(dataset).__name__} has grey levels: "
                        "use stochastic or threshold (or a binarized data set such as binarized-mnist)")  # fmt: skip
    if asked:
        return asked
    if dataset.binarized:
        return "fixed"
    return recorded if recorded in BINARIZE_MODES and recorded != "fixed" else "stochastic"


def describe_binarization(mode: str) -> str:
    """How images were binarized, for a report: 'binarized stochastically once with the fixed seed ...'."""
    if mode == "fixed":
        return "already binary (the data set's fixed binarization, used as it is)"
    if mode == "threshold":
        return "binarized by threshold (pixel > 0.5)"
    return f"binarized stochastically once with the fixed seed {TEST_BINARIZATION_SEED}"


def binarize(images: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 grey levels (B, C, H, W) -> float {0, 1}: a Bernoulli sample, pixel > 0.5, or (fixed)
    the data set's own 0/255 bits as they are."""
    probs = images.float() / 255.0
    if mode == "stochastic":
        return torch.bernoulli(probs, generator=generator)
    if mode == "threshold":
        return (probs > 0.5).float()
    if mode == "fixed":  # a binarized data set's pixels, checked to be 0 or 255 by load_images
        return probs
    raise ValueError(f"unknown binarization {mode!r}; expected one of {BINARIZE_MODES}")


def binarize_fixed(images: torch.Tensor, mode: str) -> torch.Tensor:
    """The test split binarized once with a fixed seed, whatever the training seed."""
    generator = torch.Generator().manual_seed(TEST_BINARIZATION_SEED)
    return binarize(images, mode, generator)
