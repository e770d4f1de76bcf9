"""The `two-digit-mnist` data set (section 4.2): shape, determinism, split hygiene, two digits an image, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import IDX_NAMES, idx_bytes, invoke

from drawcli import data
from drawcli.errors import DataError
from drawcli_synthetic import TwoDigitMNIST

SIZES = {"train": 24, "test": 10}
TRAIN_INK, TEST_INK = 255, 77  # every training digit is drawn in 255, every test digit in 77


def write_digits(folder: Path, train: torch.Tensor, test: torch.Tensor) -> Path:
    """Write the given uint8 digits (N, 28, 28) as uncompressed MNIST idx files (labels all 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, images in (("train", train), ("test", test)):
        image_name, label_name = IDX_NAMES[split]
        (folder / image_name).write_bytes(idx_bytes(images))
        n = len(images)
        (folder / label_name).write_bytes((0x0801).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(n))
    return folder


def blobs(n: int, ink: int, seed: int) -> torch.Tensor:
    """n digits whose ink is one value: random strokes of `ink` on black."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 28, 28, generator=gen) < 0.3).to(torch.uint8) * ink


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TwoDigitMNIST, "sizes", SIZES)


@pytest.mark.usefixtures("small")
def test_shape_and_registration(tmp_path: Path) -> None:
    """Found by name; each split is (N, 1, 60, 60) uint8 with the sizes asked for, and passes the model check."""
    folder = write_digits(tmp_path, blobs(8, TRAIN_INK, 0), blobs(6, TEST_INK, 1))
    dataset = data.open_dataset("two-digit-mnist")
    assert isinstance(dataset, TwoDigitMNIST) and dataset.image_shape == (1, 60, 60)
    for split, n in SIZES.items():
        images = data.load_images(dataset, split, folder, (1, 60, 60))
        assert images.shape == (n, 1, 60, 60) and images.dtype == torch.uint8
        assert images.max() > 0


def test_full_sizes_are_the_papers() -> None:
    """Without the patch: 60,000 train and 10,000 test images."""
    assert TwoDigitMNIST.sizes == {"train": 60000, "test": 10000}


@pytest.mark.usefixtures("small")
def test_same_images_on_every_load(tmp_path: Path) -> None:
    """Two loads (two instances) give exactly the same images; train and test are different images."""
    folder = write_digits(tmp_path, blobs(8, TRAIN_INK, 0), blobs(8, TRAIN_INK, 0))
    first = {s: TwoDigitMNIST().load(s, folder, (1, 60, 60)) for s in SIZES}
    second = {s: TwoDigitMNIST().load(s, folder, (1, 60, 60)) for s in SIZES}
    for split in SIZES:
        assert torch.equal(first[split], second[split])
    # The same digits in both splits: only the per-split seed can make the first images differ.
    assert not torch.equal(first["train"][: SIZES["test"]], first["test"])


@pytest.mark.usefixtures("small")
def test_each_split_uses_its_own_digits(tmp_path: Path) -> None:
    """Test images hold only test digits' ink (77) and train images only training digits' (255)."""
    folder = write_digits(tmp_path, blobs(8, TRAIN_INK, 0), blobs(6, TEST_INK, 1))
    test = TwoDigitMNIST().load("test", folder, (1, 60, 60))
    train = TwoDigitMNIST().load("train", folder, (1, 60, 60))
    assert set(test.unique().tolist()) == {0, TEST_INK}
    assert set(train.unique().tolist()) == {0, TRAIN_INK}


@pytest.mark.usefixtures("small")
def test_two_digits_in_every_image(tmp_path: Path) -> None:
    """With solid 28 x 28 squares for digits, every image's ink covers one square at least and two at most,
    lies inside the frame, and the squares land at more than one position."""
    square = torch.full((4, 28, 28), 200, dtype=torch.uint8)
    folder = write_digits(tmp_path, square, square)
    for split in SIZES:
        images = TwoDigitMNIST().load(split, folder, (1, 60, 60))[:, 0]
        ink = (images > 0).flatten(1).sum(1)
        assert bool(((ink >= 28 * 28) & (ink <= 2 * 28 * 28)).all()), ink.tolist()
        assert bool((ink > 28 * 28).any())  # not every pair lands on the same spot
        assert set(images.unique().tolist()) == {0, 200}  # overlaps composite by maximum, never summed
        corners = images[:, :28, :28].flatten(1).sum(1) + images[:, -28:, -28:].flatten(1).sum(1)
        assert len(set(corners.tolist())) > 1  # positions vary across images


def test_missing_folder_is_one_clear_line(tmp_path: Path) -> None:
    """A --data-dir without the MNIST files: one DataError line naming the file, the folder and --data-dir."""
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        TwoDigitMNIST().load("train", missing, (1, 60, 60))
    message = str(info.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte" in message and str(missing) in message and "--data-dir" in message
    result = invoke("train", "--dataset", "two-digit-mnist", "--data-dir", missing, "--steps", "1",
                    "--threads", "1", "--out", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "train-images-idx3-ubyte" in lines[0]


@pytest.mark.usefixtures("small")
def test_preset_trains_a_60x60_model(tmp_path: Path) -> None:
    """`--preset paper-two-digit-mnist` (shrunk by explicit options) trains on the 60 x 60 images at Adam 5e-4."""
    import json

    folder = write_digits(tmp_path / "mnist", blobs(8, TRAIN_INK, 0), blobs(6, TEST_INK, 1))
    run = tmp_path / "run"
    result = invoke("train", "--preset", "paper-two-digit-mnist", "--data-dir", folder, "--glimpses", "2",
                    "--rnn-size", "8", "--z-size", "2", "--batch-size", "8", "--steps", "1", "--sample-every", "0",
                    "--threads", "1", "--quiet", "--out", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "run.json").read_text())
    assert (saved["config"]["height"], saved["config"]["width"], saved["config"]["read_size"]) == (60, 60, 2)
    assert saved["settings"]["dataset"] == "two-digit-mnist" and saved["settings"]["lr"] == 5e-4
