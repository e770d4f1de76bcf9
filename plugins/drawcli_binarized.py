"""Built-in `binarized-mnist`: MNIST as binarized once by Salakhutdinov and Murray (2008).

The files distributed with Larochelle and Murray's NADE paper, on which the DRAW paper
measured its 80.97 and 87.40 nats: binarized_mnist_{train,valid,test}.amat, plain text, one
image a line, 784 values "0" or "1" separated by single spaces, row-major 28x28, no labels.
They are found in --data-dir (directly, in DIR/binarized_mnist/, or in the torchvision-style
DIR/BinarizedMNIST/raw/), else in drawcli's cache folder, where a download goes when no
--data-dir is given and a network exists. Nothing is ever written into a data folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from drawcli.contract import Dataset
from drawcli.errors import DataError
from drawcli_datasets import cache_dir, locate_files

SIDE = 28
VALUES = SIDE * SIDE  # values on one line: one image
SEPARATORS = b" " * (VALUES - 1)  # what lies between them on a line in the files' own form
URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
FILES = {part: f"binarized_mnist_{part}.amat" for part in ("train", "valid", "test")}


class BinarizedMNIST(Dataset):
    """The fixed binarization of MNIST: 50,000 train, 10,000 validation and 10,000 test images.

    The splits: `train` is the 50,000 of the train file, `test` the 10,000 of the test file,
    and `valid` the 10,000 of the validation file, which training never sees and `drawcli
    evaluate RUN --split valid` measures (drawcli picks no model on held-out data, so the
    validation images have no other use here). `binarized-mnist-60k` trains on train and
    valid together, as many papers do. The images come as 0 and 255 and set `binarized`, so
    DRAW trains and is evaluated on these very bits (`--binarize fixed`, the default here).
    """

    image_shape = (1, SIDE, SIDE)
    binarized = True
    # The files each split reads, in order.
    splits: dict[str, tuple[str, ...]] = {"train": ("train",), "valid": ("valid",), "test": ("test",)}

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        if tuple(image_shape) != self.image_shape:
            # Checked before reading anything: the images are never resized.
            model = "x".join(map(str, image_shape))
            raise DataError(f"binarized MNIST images are 1x28x28 (channels x height x width), but the model is {model}: "
                            "train it with --channels 1 --height 28 --width 28")  # fmt: skip
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(self.splits)}")
        return torch.cat([read_amat(path) for path in self._locate(self.splits[split], data_dir)])

    @staticmethod
    def _candidates(root: Path) -> list[Path]:
        return [root, root / "binarized_mnist", root / "BinarizedMNIST" / "raw"]

    def _locate(self, parts: tuple[str, ...], data_dir: Path | None) -> list[Path]:
        """The files of `parts` in --data-dir, else in the cache (downloading there first if one is missing)."""
        remedy = f"Put the binarized MNIST files ({', '.join(FILES.values())}, from {URL}) in a folder"
        return locate_files([FILES[part] for part in parts], data_dir, cache_dir() / "binarized_mnist",
                            self._candidates, self._download, remedy)  # fmt: skip

    def _download(self, root: Path, names: list[str]) -> None:
        """Fetch `names` into root, each under a temporary name renamed once complete, so an
        interrupted download never leaves a short file behind; any failure is left to the not-found message."""
        from torchvision.datasets.utils import download_url

        for name in names:
            part = root / f"{name}.part"
            try:
                part.unlink(missing_ok=True)  # a part left by a killed process: download_url would take it as done
                download_url(URL + name, str(root), filename=part.name)
                os.replace(part, root / name)
            except Exception:  # no network, a proxy, a full disk: fall through to the clear message
                part.unlink(missing_ok=True)
                return


class BinarizedMNIST60k(BinarizedMNIST):
    """The same files, trained on train and validation together (60,000 images); tested on the 10,000 test images."""

    splits = {"train": ("train", "valid"), "test": ("test",)}


def read_amat(path: Path) -> torch.Tensor:
    """One .amat file -> uint8 images (n, 1, 28, 28), 0 or 255; a DataError naming the file and line when malformed.

    Lines in the files' own form (a value every other byte, single spaces between) are sliced
    as bytes, with no per-value Python objects: the training file's 39 million values read in
    well under a second. Any other line (other whitespace, a stray character) is split into
    words, so a well-formed but differently spaced file still reads and a bad one is pinned down.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    lines = data.split(b"\n")
    while lines and not lines[-1].strip():  # the newline after the last image, or trailing blank lines
        lines.pop()
    if not lines:
        raise DataError(f"{path} holds no images (expected one image of {VALUES} values 0 or 1 a line)")
    bits = bytearray(len(lines) * VALUES)
    for number, line in enumerate(lines, start=1):
        line = line.rstrip()  # "\r\n" line ends, trailing spaces
        values = line[0::2]
        if len(line) != 2 * VALUES - 1 or line[1::2] != SEPARATORS or values.translate(None, b"01"):
            values = _values(path, number, line)
        bits[(number - 1) * VALUES : number * VALUES] = values
    pixels = (np.frombuffer(bits, dtype=np.uint8) - ord("0")) * np.uint8(255)  # "0" -> 0, "1" -> 255
    return torch.from_numpy(pixels).view(len(lines), 1, SIDE, SIDE)


def _values(path: Path, number: int, line: bytes) -> bytes:
    """A line not in the files' own form: its values as the characters "0"/"1", or the error that says what is wrong."""
    words = line.split()
    if len(words) != VALUES:
        raise DataError(f"{path}, line {number}: {len(words)} values, expected {VALUES} (one 28x28 image of 0s and 1s a line)")
    for column, word in enumerate(words, start=1):
        if word not in (b"0", b"1"):
            shown = word[:20].decode("ascii", "replace")
            raise DataError(f"{path}, line {number}: value {column} is {shown!r}, expected 0 or 1 (the images are binary)")
    return b"".join(words)
