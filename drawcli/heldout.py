"""A run's held-out data: the split a checkpoint is scored on, found where the run recorded its data,
binarized as `evaluate` does (DRAW) or labelled in the model's class order (a classifier). Used by
`evaluate`, `reconstruct`, `glimpses`, TensorBoard's pictures and the Python API."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

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
