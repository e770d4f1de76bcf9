"""Built-in data sets: `mnist`, `fashion-mnist` (idx files) and `folder` (any folder of images).

Data folders may be read-only: nothing here writes into them. A download, when a network
exists, goes to drawcli's cache folder instead.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Callable

import torch

from drawcli.contract import Dataset, Labelled
from drawcli.errors import DataError

IDX_UBYTE_MAGIC = 0x0803  # unsigned bytes, 3 dimensions (LeCun's idx format)
IDX_LABEL_MAGIC = 0x0801  # unsigned bytes, 1 dimension
# The first 16 hex digits of SHA-256 over each split's first image (784 bytes), per idx data set:
# MNIST and Fashion-MNIST share their file names, so only the contents tell them apart.
FIRST_IMAGES = {
    "MNIST": {"train": "23ceaef5eb61f0e7", "test": "8f6a418c9a639f9e"},
    "FashionMNIST": {"train": "5bd44e331a6d6998", "test": "ffc7351ed0f8bae5"},
}


def cache_dir() -> Path:
    """Where downloads go: $DRAWCLI_CACHE, else $XDG_CACHE_HOME/drawcli, else ~/.cache/drawcli."""
    if os.environ.get("DRAWCLI_CACHE"):
        return Path(os.environ["DRAWCLI_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "drawcli"


def locate_files(names: list[str], data_dir: Path | None, cache: Path, candidates: Callable[[Path], list[Path]],
                 download: Callable[[Path, list[str]], None], remedy: str) -> list[Path]:
    """Each of `names` in one of `candidates(root)`, root being --data-dir, else the cache folder, into which
    `download` first fetches the missing ones; else a DataError naming what is missing, where it looked,
    and `remedy` (what to do, as the start of a sentence ending "and pass the folder with --data-dir")."""
    roots = [data_dir] if data_dir is not None else [cache]

    def find() -> list[Path | None]:
        return [next((f / name for r in roots for f in candidates(r) if (f / name).is_file()), None) for name in names]

    paths = find()
    if None in paths and data_dir is None:
        download(cache, [name for name, path in zip(names, paths) if path is None])
        paths = find()
    missing = [name for name, path in zip(names, paths) if path is None]
    if missing:
        looked = ", ".join(str(p) for r in roots for p in candidates(r))
        raise DataError(f"{', '.join(missing)} not found (looked in: {looked}). {remedy} and pass the folder with "
                        "--data-dir, or run without --data-dir on a machine with a network to download them.")  # fmt: skip
    return [p for p in paths if p is not None]


def _read_idx(path: Path, magic: int, what: str) -> tuple[bytes, list[int]]:
    """The bytes of an idx file (optionally .gz) and its dimensions, checked against its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or int.from_bytes(data[0:4], "big") != magic:
        raise DataError(f"{path} is not an idx {what} file (bad magic number)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = 1
    for d in dims:
        size *= d
    if len(data) != 4 + 4 * ndim + size:
        shape = "x".join(map(str, dims))
        raise DataError(f"{path} is truncated: header says {shape}, file has {len(data) - 4 - 4 * ndim} bytes")
    return data, dims


def read_idx_images(path: Path) -> torch.Tensor:
    """An idx3-ubyte file (optionally .gz) -> uint8 tensor (N, 1, rows, cols)."""
    data, (n, rows, cols) = _read_idx(path, IDX_UBYTE_MAGIC, "image")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=16).view(n, 1, rows, cols)


def read_idx_labels(path: Path) -> torch.Tensor:
    """An idx1-ubyte file (optionally .gz) -> int64 labels (N,)."""
    data, _ = _read_idx(path, IDX_LABEL_MAGIC, "label")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=8).to(torch.int64)


class IdxDataset(Dataset):
    """MNIST-format data: four idx files, found directly in a folder or in torchvision's layout."""

    image_shape = (1, 28, 28)
    has_labels = True
    files = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
    label_files = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))
    folder_name = ""  # torchvision's folder name, e.g. "MNIST"
    system_dirs: tuple[Path, ...] = ()

    def _candidates(self, root: Path) -> list[Path]:
        return [root, root / self.folder_name / "raw", root / "raw"]

    def _find(self, name: str, roots: list[Path]) -> Path | None:
        for root in roots:
            for folder in self._candidates(root):
                for suffix in ("", ".gz"):
                    path = folder / (name + suffix)
                    if path.is_file():
                        return path
        return None

    def _locate(self, split: str, data_dir: Path | None, names: dict[str, str]) -> Path:
        """The file `names[split]` in --data-dir, else the system folders and the cache (downloading there)."""
        if split not in names:
            raise DataError(f"unknown split {split!r}; expected one of {sorted(names)}")
        roots = [data_dir] if data_dir is not None else [*self.system_dirs, cache_dir() / self.folder_name.lower()]
        path = self._find(names[split], roots)
        if path is None and data_dir is None:
            self._download(roots[-1])
            path = self._find(names[split], roots)
        if path is None:
            looked = ", ".join(str(p) for r in roots for p in self._candidates(r))
            raise DataError(
                f"{names[split]}[.gz] not found (looked in: {looked}). Put the four idx files "
                f"of {self.folder_name} in a folder and pass it with --data-dir, or run without "
                f"--data-dir on a machine with a network to download them."
            )
        return path

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        path = self._locate(split, data_dir, self.files)
        images = read_idx_images(path)
        self._check_not_another(path, split, images)
        return images

    def _check_not_another(self, path: Path, split: str, images: torch.Tensor) -> None:
        """Refuse another known idx data set's files found under this one's names (a wrong --data-dir)."""
        if not len(images):
            return
        digest = hashlib.sha256(images[0].numpy().tobytes()).hexdigest()[:16]
        for name, firsts in FIRST_IMAGES.items():
            if name != self.folder_name and firsts.get(split) == digest:
                raise DataError(f"{path} holds {name}'s images, not {self.folder_name}'s: "
                                f"point --data-dir at {self.folder_name}'s files, or choose the --dataset they belong to")  # fmt: skip

    def load_labelled(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        images = self.load(split, data_dir, image_shape)
        path = self._locate(split, data_dir, self.label_files)
        labels = read_idx_labels(path)
        if len(labels) != len(images):
            raise DataError(f"{path} has {len(labels)} labels for {len(images)} images")
        return Labelled(images, labels, self.classes)

    def _download(self, root: Path) -> None:
        from torchvision import datasets

        try:
            getattr(datasets, self.folder_name)(root=str(root), train=True, download=True)
            getattr(datasets, self.folder_name)(root=str(root), train=False, download=True)
        except Exception:  # no network, a proxy, a full disk: fall through to the clear message
            return


class MNIST(IdxDataset):
    """LeCun's handwritten digits, 60,000 train and 10,000 test images of 28x28."""

    folder_name = "MNIST"


class FashionMNIST(IdxDataset):
    """Zalando's Fashion-MNIST; Debian's `dataset-fashion-mnist` package is found automatically."""

    folder_name = "FashionMNIST"
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class ImageFolder(Dataset):
    """Every image under a folder (recursively), resized to the model's size, grey or colour.

    With `train/` and `test/` subfolders those are the splits; otherwise every tenth image
    (in sorted path order) is held out as the test split. Labels (for classifiers) come from
    class subfolders, torchvision's ImageFolder layout: ROOT/{train,test}/CLASS/*.png, the
    classes in sorted order of their folder names.
    """

    image_shape = None
    has_labels = True

    def _root(self, split: str, data_dir: Path | None) -> tuple[Path, bool]:
        """The folder holding `split`'s images, and whether the folder has train/ and test/ splits."""
        if data_dir is None:
            raise DataError("the folder data set needs --data-dir pointing at a folder of images")
        if not data_dir.is_dir():
            raise DataError(f"image folder {data_dir} does not exist or is not a folder")
        if split not in ("train", "test"):
            raise DataError(f"unknown split {split!r}; expected 'train' or 'test'")
        has_splits = (data_dir / "train").is_dir() and (data_dir / "test").is_dir()
        only_test = split == "test" and (data_dir / "test").is_dir()  # a test set made elsewhere
        if split == "train" and (data_dir / "test").is_dir() and not has_splits:
            raise DataError(f"{data_dir} has a test/ folder but no train/ one: put the training images in "
                            f"{data_dir / 'train'} (without test/, every tenth image is held out instead)")  # fmt: skip
        return (data_dir / split if has_splits or only_test else data_dir), has_splits or only_test

    def _paths(self, split: str, data_dir: Path | None) -> tuple[Path, list[Path]]:
        from torchvision.datasets.folder import IMG_EXTENSIONS

        root, has_splits = self._root(split, data_dir)
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not has_splits:
            if 0 < len(paths) < 10:
                raise DataError(f"{len(paths)} images under {root}: without train/ and test/ folders the test split "
                                "is every tenth image, so it needs 10 or more")  # fmt: skip
            paths = [p for i, p in enumerate(paths) if (i % 10 == 9) == (split == "test")]
        if not paths:
            raise DataError(f"no images ({', '.join(IMG_EXTENSIONS)}) for split {split!r} under {root}")
        return root, paths

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        return _read_images(self._paths(split, data_dir)[1], image_shape)

    def load_labelled(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        root, paths = self._paths(split, data_dir)
        folders = [p.relative_to(root).parts for p in paths]
        loose = [p for p, parts in zip(paths, folders) if len(parts) < 2]
        if loose:
            raise DataError(f"{loose[0]} is not in a class folder: labelled images go in {root}/CLASS/*.png")
        classes = tuple(sorted({parts[0] for parts in folders}))
        labels = torch.tensor([classes.index(parts[0]) for parts in folders], dtype=torch.int64)
        return Labelled(_read_images(paths, image_shape), labels, classes)


def _read_images(paths: list[Path], image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Image files -> uint8 (N, C, H, W), converted to grey or RGB and resized (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = image_shape
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"the folder data set loads grey (1) or colour (3) images, not {channels} channels")
    images = torch.empty(len(paths), channels, height, width, dtype=torch.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        images[i] = pixels.view(height, width, channels).permute(2, 0, 1)
    return images
