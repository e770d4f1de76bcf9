"""experiments/cluttered_mistakes.py: the digit positions it reads are where the digits are."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from helpers import IDX_NAMES, idx_bytes, load_experiment


def test_digit_centres_point_at_each_images_digit(tmp_path: Path) -> None:
    """With every MNIST digit a solid 28 x 28 square (clutter: solid 8 x 8 crops, which cannot fill
    one), each test image must be solid in the 28 x 28 box around its recorded centre."""
    for name, payload in ((IDX_NAMES["test"][0], idx_bytes(torch.full((7, 28, 28), 255, dtype=torch.uint8))),
                          (IDX_NAMES["test"][1], (0x0801).to_bytes(4, "big") + (7).to_bytes(4, "big") + bytes(range(7)))):  # fmt: skip
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(payload)
    script = load_experiment("cluttered_mistakes")
    images, labels, centres = script.digit_centres(tmp_path)
    assert images.shape == (10000, 1, 100, 100) and centres.shape == (10000, 2) and labels.shape == (10000,)
    corners = (centres - 14.5).long()  # 1-based centre of a 28-pixel box -> its 0-based first pixel
    assert corners.min() >= 0 and corners.max() <= 72
    for i in range(0, 10000, 997):
        x, y = corners[i].tolist()
        assert (images[i, 0, y : y + 28, x : x + 28] == 255).all(), i
        assert (images[i, 0] == 255).sum() < 28 * 28 + 8 * 64  # one digit and at most 8 pieces of clutter


def test_ink_from_edge_by_hand() -> None:
    """Ink 2 px from the left edge, ink in the middle (49 px from the right and bottom), no ink."""
    script = load_experiment("cluttered_mistakes")
    images = torch.zeros(3, 1, 100, 100, dtype=torch.uint8)
    images[0, 0, 20, 2] = 255  # box corner (x 0, y 10)
    images[1, 0, 50, 50] = 255  # box corner (36, 36)
    images[1, 0, 10, 1] = 255  # outside its box: clutter, not counted
    digits = torch.tensor([[14.5, 24.5], [50.5, 50.5], [50.5, 50.5]])
    assert script.ink_from_edge(images, digits).tolist() == [2, 49, 99]


def test_rival_ink_by_hand() -> None:
    """A digit box holding 100 grey levels of ink at (10, 10). Image 0: a 2 x 2 blob of 4 x 40 = 160
    far away, ratio 160 / 100. Image 1: the blob inside the digit's box at (20-21, 20-21), so the
    digit's box holds 260; a box 20.5 px away (corner x 15, y 14) holds the blob but not (10, 10)."""
    script = load_experiment("cluttered_mistakes")
    images = torch.zeros(2, 1, 100, 100, dtype=torch.uint8)
    images[:, 0, 10, 10] = 100  # inside the digit box with corner (x 0, y 0), centre (14.5, 14.5)
    images[0, 0, 80:82, 80:82] = 40  # 93 px from the digit
    images[1, 0, 20:22, 20:22] = 40  # inside the digit's own box
    ratio = script.rival_ink(images, torch.tensor([[14.5, 14.5], [14.5, 14.5]]))
    assert ratio[0].item() == pytest.approx(1.6, rel=1e-5)
    assert ratio[1].item() == pytest.approx(160 / 260, rel=1e-5)
