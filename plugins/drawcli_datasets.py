"""Built-in data sets: `mnist`, `fashion-mnist` (idx files) and `folder` (any folder of images).

Data folders may be read-only: nothing here writes into them. A download, when a network
exists, goes to drawcli's cache folder instead.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import torch

from drawcli.contract import Dataset
from drawcli.errors import DataError

IDX_UBYTE_MAGIC = 0x0803  # unsigned bytes, 3 dimensions (LeCun's idx format)


def cache_dir() -> Path:
    """Where downloads go: $DRAWCLI_CACHE, else $XDG_CACHE_HOME/drawcli, else ~/.cache/drawcli."""
    if os.environ.get("DRAWCLI_CACHE"):
        return Path(os.environ["DRAWCLI_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "drawcli"


def read_idx_images(path: Path) -> torch.Tensor:
    """An idx3-ubyte file (optionally .gz) -> uint8 tensor (N, 1, rows, cols)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(data) < 16 or int.from_bytes(data[0:4], "big") != IDX_UBYTE_MAGIC:
        raise DataError(f"{path} is not an idx image file (bad magic number)")
    n, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    if len(data) != 16 + n * rows * cols:
        raise DataError(f"{path} is truncated: header says {n}x{rows}x{cols}, file has {len(data) - 16} bytes")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=16).view(n, 1, rows, cols)


class IdxDataset(Dataset):
    """MNIST-format data: four idx files, found directly in a folder or in torchvision's layout."""

    image_shape = (1, 28, 28)
    files = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
    folder_name = ""  # torchvision's folder name, e.g. "MNIST"
    system_dirs: tuple[Path, ...] = ()

    def _candidates(self, root: Path) -> list[Path]:
        return [root, root / self.folder_name / "raw", root / "raw"]

    def _find(self, split: str, roots: list[Path]) -> Path | None:
        for root in roots:
            for folder in self._candidates(root):
                for suffix in ("", ".gz"):
                    path = folder / (self.files[split] + suffix)
                    if path.is_file():
                        return path
        return None

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        if split not in self.files:
            raise DataError(f"unknown split {split!r}; expected one of {sorted(self.files)}")
        roots = [data_dir] if data_dir is not None else [*self.system_dirs, cache_dir() / self.folder_name.lower()]
        path = self._find(split, roots)
        if path is None and data_dir is None:
            self._download(roots[-1])
            path = self._find(split, roots)
        if path is None:
            looked = ", ".join(str(p) for r in roots for p in self._candidates(r))
            raise DataError(
                f"{self.files[split]}[.gz] not found (looked in: {looked}). Put the four idx files "
                f"of {self.folder_name} in a folder and pass it with --data-dir, or run without "
                f"--data-dir on a machine with a network to download them."
            )
        return read_idx_images(path)

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


class ImageFolder(Dataset):
    """Every image under a folder (recursively), resized to the model's size, grey or colour.

    With `train/` and `test/` subfolders those are the splits; otherwise every tenth image
    (in sorted path order) is held out as the test split.
    """

    image_shape = None

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError
        from torchvision.datasets.folder import IMG_EXTENSIONS

        if data_dir is None:
            raise DataError("the folder data set needs --data-dir pointing at a folder of images")
        if not data_dir.is_dir():
            raise DataError(f"image folder {data_dir} does not exist or is not a folder")
        if split not in ("train", "test"):
            raise DataError(f"unknown split {split!r}; expected 'train' or 'test'")
        split_dir = data_dir / split
        has_splits = (data_dir / "train").is_dir() and (data_dir / "test").is_dir()
        root = split_dir if has_splits else data_dir
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not has_splits:
            paths = [p for i, p in enumerate(paths) if (i % 10 == 9) == (split == "test")]
        if not paths:
            raise DataError(f"no images ({', '.join(IMG_EXTENSIONS)}) for split {split!r} under {root}")
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
