"""Built-in colour data sets of 32x32 images: `svhn` (the cropped digits) and `cifar10`.

Both are read from the files their authors distribute, found in --data-dir (directly or in
the folder their archive or torchvision creates), else in drawcli's cache folder, where a
download goes when no --data-dir is given and a network exists. As in `drawcli_datasets`,
nothing is ever written into a data folder.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import torch

from drawcli.contract import Dataset, Labelled
from drawcli.errors import DataError
from drawcli_datasets import cache_dir, locate_files

SIDE = 32
PIXELS = 3 * SIDE * SIDE  # one image's bytes: the red plane, then green, then blue
CIFAR_RECORD = 1 + PIXELS  # a label byte, then the pixels
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # the one published beside it


class ColourDataset(Dataset):
    """Labelled 3x32x32 images in fixed files; subclasses say which files and how to read them."""

    image_shape = (3, SIDE, SIDE)
    has_labels = True
    title = ""  # the data set's name in messages
    files: dict[str, tuple[str, ...]] = {}  # the files of each split, read in this order
    subfolders: tuple[str, ...] = ()  # where, under a root, the files may also lie
    cache_name = ""  # the folder under the cache
    classes: tuple[str, ...] = ()
    remedy = ""  # what the not-found message tells the user to do

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        return self.load_labelled(split, data_dir, image_shape).images

    def load_labelled(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        if tuple(image_shape) != self.image_shape:
            # Checked before reading anything: the images are never resized.
            native, model = ("x".join(map(str, shape)) for shape in (self.image_shape, image_shape))
            raise DataError(
                f"{self.title} images are {native} (channels x height x width), but the model is {model}: "
                f"train it with --channels 3 --height 32 --width 32"
            )
        if split not in self.files:
            raise DataError(f"unknown split {split!r}; expected one of {sorted(self.files)}")
        self._check_reader()
        parts = [self.read(path) for path in self._locate(split, data_dir)]
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        return Labelled(images, labels, self.classes)

    def _candidates(self, root: Path) -> list[Path]:
        return [root, *(root / sub for sub in self.subfolders)]

    def _locate(self, split: str, data_dir: Path | None) -> list[Path]:
        """Every file of `split` in --data-dir, else in the cache (downloading there first if one is missing)."""
        return locate_files(list(self.files[split]), data_dir, cache_dir() / self.cache_name, self._candidates,
                            lambda root, _: self._download(root, split), self.remedy)  # fmt: skip

    def _check_reader(self) -> None:
        """Raise a DataError when what `read` needs is not installed."""

    @abstractmethod
    def read(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """One file -> uint8 images (n, 3, 32, 32) and int64 labels (n,); DataError naming it when malformed."""

    def _download(self, root: Path, split: str) -> None:
        """Try to download `split`'s files into root; any failure is left to the not-found message."""


class SVHN(ColourDataset):
    """Street View House Numbers, cropped digits: 73,257 train and 26,032 test images.

    Read from `train_32x32.mat` and `test_32x32.mat` (MATLAB v5 files holding X, the images
    as (32, 32, 3, N) uint8, and y, the labels (N, 1) in 1..10, where 10 stands for the digit
    0 and is mapped to 0 here). Reading them needs scipy: `pip install 'drawcli[svhn]'`.
    The `extra` images are not read.
    """

    title = "SVHN"
    files = {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)}
    subfolders = ("svhn", "SVHN")
    cache_name = "svhn"
    classes = tuple(str(d) for d in range(10))
    remedy = "Put train_32x32.mat and test_32x32.mat (the cropped digits) in a folder"

    def _check_reader(self) -> None:
        try:
            import scipy.io  # noqa: F401
        except ImportError:
            raise DataError("reading SVHN's .mat files needs scipy: pip install 'drawcli[svhn]'") from None

    def read(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np
        from scipy.io import loadmat

        try:
            mat = loadmat(path, variable_names=("X", "y"))
        except Exception as exc:  # a damaged file raises anything from IndexError to MatReadError
            raise DataError(f"cannot read {path} as a MATLAB v5 file: {exc}") from None
        x, y = mat.get("X"), mat.get("y")
        if x is None or y is None:
            missing = "X" if x is None else "y"
            raise DataError(f"{path} lacks {missing}: an SVHN .mat file holds X (the images) and y (the labels)")
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (SIDE, SIDE, 3):
            raise DataError(f"{path}: X is {x.dtype} of shape {x.shape}, expected uint8 (32, 32, 3, N)")
        if y.size != x.shape[3]:
            raise DataError(f"{path} has {y.size} labels (y of shape {y.shape}) for {x.shape[3]} images")
        labels = torch.from_numpy(y.reshape(-1).astype(np.int64))
        if len(labels) == 0:
            raise DataError(f"{path} holds no images")
        if labels.min() < 1 or labels.max() > 10:
            found = f"{labels.min().item()}..{labels.max().item()}"
            raise DataError(f"{path}: labels must lie in 1..10 (10 for the digit 0), found {found}")
        images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))  # (H, W, C, N) -> (N, C, H, W)
        return images, labels.masked_fill(labels == 10, 0)

    def _download(self, root: Path, split: str) -> None:
        from torchvision import datasets

        try:
            datasets.SVHN(root=str(root), split=split, download=True)
        except Exception:  # no network, a proxy, a full disk: fall through to the clear message
            return


class CIFAR10(ColourDataset):
    """CIFAR-10 (Krizhevsky 2009): 50,000 train and 10,000 test images in 10 classes.

    Only the binary version is read (`cifar-10-batches-bin/`: data_batch_1.bin ...
    data_batch_5.bin, test_batch.bin), parsed here byte by byte; never the python version,
    whose batches are pickles, and unpickling a downloaded file can run arbitrary code. Each
    record is a label byte then 3072 pixel bytes: the red plane, green, blue, each 32x32 row
    by row. For the same reason the download is the binary tarball, not torchvision's CIFAR10
    (which fetches the pickles).
    """

    title = "CIFAR-10"
    files = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
    subfolders = ("cifar-10-batches-bin",)
    cache_name = "cifar10"
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    remedy = "Unpack the binary version (cifar-10-binary.tar.gz, not the python version) into a folder"

    def read(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        if not data or len(data) % CIFAR_RECORD:
            raise DataError(
                f"{path} is truncated or not a CIFAR-10 binary batch: its {len(data)} bytes are not a "
                f"whole number of {CIFAR_RECORD}-byte records (a label byte, then {PIXELS} pixel bytes)"
            )
        records = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(-1, CIFAR_RECORD)
        labels = records[:, 0].to(torch.int64)
        if labels.max() >= len(self.classes):
            raise DataError(f"{path} has a label {labels.max().item()}, but CIFAR-10's labels are 0..9")
        return records[:, 1:].reshape(-1, 3, SIDE, SIDE).contiguous(), labels

    def _download(self, root: Path, split: str) -> None:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(CIFAR_URL, download_root=str(root), md5=CIFAR_MD5, remove_finished=True)
        except Exception:  # no network, a proxy, a bad checksum, a full disk: fall through to the clear message
            return
