"""Built-in data sets composed from MNIST digits: `cluttered-mnist`, the classification task of
DRAW's section 4.1 (after Mnih et al. 2014, "Recurrent Models of Visual Attention").

Each image is drawn once from a fixed seed per split, so the test set is the same on every
machine and, by default, the training clutter is the same every epoch; `train --redraw` asks
cluttered-mnist for a new composition of the training digits each epoch, from a seed per epoch.
Train images are built from MNIST's training digits only, test images from its test digits only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from drawcli.contract import Dataset, Labelled
from drawcli_datasets import MNIST

SEEDS = {"train": 20150216, "test": 20150217}  # one stream per split
CHUNK = 4096  # images composed at a time (bounds the index tensors)


def paste(canvas: torch.Tensor, pieces: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> None:
    """Composite pieces (n, h, w) onto canvas (n, H, W) with their top-left corners at (ys, xs), by maximum."""
    n, h, w = pieces.shape
    rows = ys[:, None, None] + torch.arange(h)[None, :, None]  # (n, h, 1)
    cols = xs[:, None, None] + torch.arange(w)[None, None, :]  # (n, 1, w)
    index = torch.arange(n)[:, None, None]
    canvas[index, rows, cols] = torch.maximum(canvas[index, rows, cols], pieces)


def crops(digits: torch.Tensor, source: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """A random size x size crop of each digits[source] (digits (M, 28, 28)) -> (n, size, size)."""
    side = digits.shape[-1]
    cy, cx = (torch.randint(0, side - size + 1, (len(source),), generator=gen) for _ in range(2))
    rows = cy[:, None, None] + torch.arange(size)[None, :, None]
    cols = cx[:, None, None] + torch.arange(size)[None, None, :]
    return digits[source[:, None, None], rows, cols]


def cluttered(digits: torch.Tensor, labels: torch.Tensor, n: int, side: int, pieces: int, piece_size: int,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """n images (n, 1, side, side): one digit at a uniform position and `pieces` crops of other digits;
    with their labels (n,) and the digit boxes' centres (n, 2) as (x, y) in 1-based pixels (contract.Window's)."""
    m, digit = len(digits), digits.shape[-1]
    images = torch.zeros(n, side, side, dtype=torch.uint8)
    chosen = torch.empty(n, dtype=torch.int64)
    corners = torch.empty(n, 2, dtype=torch.int64)  # (x, y) of the digit's top-left pixel, 0-based
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        canvas = images[start : start + k]
        pick = torch.randint(0, m, (k,), generator=gen)
        for _ in range(pieces):
            other = (pick + 1 + torch.randint(0, m - 1, (k,), generator=gen)) % m  # never the digit itself
            at = [torch.randint(0, side - piece_size + 1, (k,), generator=gen) for _ in range(2)]
            paste(canvas, crops(digits, other, piece_size, gen), *at)
        at = [torch.randint(0, side - digit + 1, (k,), generator=gen) for _ in range(2)]
        paste(canvas, digits[pick], *at)
        chosen[start : start + k] = pick
        corners[start : start + k] = torch.stack(at[::-1], dim=1)
    # 0-based pixel i is 1-based i + 1, so the box's centre is corner + 1 + (digit - 1) / 2
    return images[:, None], labels[chosen], corners.float() + (digit + 1) / 2


class ClutteredMNIST(Dataset):
    """100 x 100: one MNIST digit at a random position among 8 random 8 x 8 crops of other digits.

    60,000 train and 10,000 test images, labelled by the digit; built from the MNIST idx files
    the `mnist` data set finds (the same --data-dir).
    """

    image_shape = (1, 100, 100)
    has_labels = True
    redraws = True
    has_centres = True  # the centre of each digit's 28 x 28 box
    side, pieces, piece_size = 100, 8, 8
    sizes = {"train": 60000, "test": 10000}

    def __init__(self) -> None:
        self._sources: dict[tuple[str, Path | None], Labelled] = {}  # MNIST digits, read once per split

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        return self.load_labelled(split, data_dir, image_shape).images

    def load_labelled(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        return self._compose(split, data_dir, torch.Generator().manual_seed(SEEDS[split]))

    def load_labelled_epoch(self, epoch: int, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        """Epoch 0 is the fixed training set; epoch e > 0 is composed from seed SEEDS["train"] * 1000 + e."""
        if epoch == 0:
            return self.load_labelled("train", data_dir, image_shape)
        return self._compose("train", data_dir, torch.Generator().manual_seed(SEEDS["train"] * 1000 + epoch))

    def _compose(self, split: str, data_dir: Path | None, gen: torch.Generator) -> Labelled:
        key = (split, data_dir)
        if key not in self._sources:
            self._sources[key] = MNIST().load_labelled(split, data_dir, MNIST.image_shape)
        source = self._sources[key]
        images, labels, centres = cluttered(source.images[:, 0], source.labels, self.sizes[split], self.side,
                                            self.pieces, self.piece_size, gen)  # fmt: skip
        return Labelled(images, labels, source.classes, centres)


TWO_DIGIT_SEEDS = {"train": 20150602, "test": 20150603}  # streams of their own, not cluttered-mnist's


def two_digit(digits: torch.Tensor, n: int, side: int, gen: torch.Generator) -> torch.Tensor:
    """n images (n, 1, side, side): two digits drawn from digits (M, 28, 28), each at a uniform position, by maximum."""
    m, digit = len(digits), digits.shape[-1]
    images = torch.zeros(n, side, side, dtype=torch.uint8)
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        canvas = images[start : start + k]
        for _ in range(2):  # the two digits are drawn independently (the same one twice is possible)
            pick = torch.randint(0, m, (k,), generator=gen)
            at = [torch.randint(0, side - digit + 1, (k,), generator=gen) for _ in range(2)]
            paste(canvas, digits[pick], *at)
    return images[:, None]


class TwoDigitMNIST(Dataset):
    """60 x 60: two MNIST digits at uniform random positions, composited by maximum where they overlap.

    The generation experiment of DRAW's section 4.2. 60,000 train and 10,000 test images, no
    labels; train images use MNIST's training digits only, test images its test digits only.
    Built from the MNIST idx files the `mnist` data set finds (the same --data-dir).
    """

    image_shape = (1, 60, 60)
    has_labels = False
    side = 60
    sizes = {"train": 60000, "test": 10000}

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        source = MNIST().load_labelled(split, data_dir, MNIST.image_shape)
        gen = torch.Generator().manual_seed(TWO_DIGIT_SEEDS[split])
        return two_digit(source.images[:, 0], self.sizes[split], self.side, gen)
