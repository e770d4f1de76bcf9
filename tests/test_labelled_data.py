"""Labelled data for classifiers: MNIST's label files, class subfolders, cluttered MNIST."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import IDX_NAMES, error_line, invoke, write_idx_dataset
from PIL import Image

from drawcli import data
from drawcli.errors import DataError

# Train digits are solid 28 x 28 squares of grey 200, test digits of grey 90: a composed image
# then shows which split its digits came from, and how much of each digit it holds.
SQUARES = {"train": 200, "test": 90}


def square_digits(folder: Path, n_train: int = 30, n_test: int = 20) -> None:
    write_idx_dataset(folder, n_train=n_train, n_test=n_test)
    for split, n in (("train", n_train), ("test", n_test)):
        images = torch.full((n, 28, 28), SQUARES[split], dtype=torch.uint8)
        header = (0x0803).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
        with gzip.open(folder / f"{IDX_NAMES[split][0]}.gz", "wb") as f:
            f.write(header + images.numpy().tobytes())


def test_mnist_labels_come_from_the_label_files(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n_train=12, n_test=5)
    labelled = data.load_labelled(data.open_dataset("mnist"), "train", tmp_path, (1, 28, 28))
    assert labelled.labels.tolist() == [i % 10 for i in range(12)]
    assert labelled.classes == tuple("0123456789") and labelled.images.shape == (12, 1, 28, 28)


def test_mismatched_label_file_is_one_clear_error(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n_train=12, n_test=5)
    with gzip.open(tmp_path / f"{IDX_NAMES['test'][1]}.gz", "wb") as f:
        f.write((0x0801).to_bytes(4, "big") + (4).to_bytes(4, "big") + bytes(4))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz has 4 labels for 5 images$"):
        data.load_labelled(data.open_dataset("mnist"), "test", tmp_path, (1, 28, 28))


def test_image_folder_labels_from_class_subfolders(tmp_path: Path) -> None:
    """ROOT/{train,test}/CLASS/*.png: labels are the class folders in sorted order."""
    for split, per_class in (("train", 2), ("test", 1)):
        for grey, name in ((10, "cat"), (250, "ant")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("L", (4, 4), grey).save(tmp_path / split / name / f"{i}.png")
    train = data.load_labelled(data.open_dataset("folder"), "train", tmp_path, (1, 4, 4))
    assert train.classes == ("ant", "cat")
    assert train.labels.tolist() == [0, 0, 1, 1]
    assert train.images[:, 0, 0, 0].tolist() == [250, 250, 10, 10]
    (tmp_path / "test" / "loose.png").write_bytes((tmp_path / "test" / "ant" / "0.png").read_bytes())
    with pytest.raises(DataError, match=r"loose.png is not in a class folder"):
        data.load_labelled(data.open_dataset("folder"), "test", tmp_path, (1, 4, 4))


def test_unlabelled_data_set_is_refused_for_a_classifier() -> None:
    from drawcli_datasets import MNIST

    class Unlabelled(MNIST):
        has_labels = False

    with pytest.raises(DataError, match="has no labels, so a classifier cannot train on it"):
        data.load_labelled(Unlabelled(), "train", None, (1, 28, 28))


@pytest.fixture
def small_cluttered(monkeypatch: pytest.MonkeyPatch) -> None:
    from drawcli_synthetic import ClutteredMNIST

    monkeypatch.setattr(ClutteredMNIST, "sizes", {"train": 40, "test": 30})


def test_cluttered_mnist_is_deterministic_and_test_digits_only(tmp_path: Path, small_cluttered: None) -> None:
    square_digits(tmp_path)
    dataset = data.open_dataset("cluttered-mnist")
    first = data.load_labelled(dataset, "test", tmp_path, (1, 100, 100))
    again = data.load_labelled(data.open_dataset("cluttered-mnist"), "test", tmp_path, (1, 100, 100))
    assert first.images.shape == (30, 1, 100, 100) and torch.equal(first.images, again.images)
    assert torch.equal(first.labels, again.labels)
    assert set(first.images.unique().tolist()) == {0, SQUARES["test"]}  # no training digit leaks in
    assert set(first.labels.tolist()) <= set(range(10))
    train = data.load_labelled(dataset, "train", tmp_path, (1, 100, 100))
    assert set(train.images.unique().tolist()) == {0, SQUARES["train"]}
    assert not torch.equal(train.images[:30], first.images)


def test_cluttered_mnist_holds_one_whole_digit_and_eight_pieces(tmp_path: Path, small_cluttered: None) -> None:
    """Solid squares: each image's ink covers the 28 x 28 digit and at most 8 more 8 x 8 pieces."""
    square_digits(tmp_path)
    images = data.load_images(data.open_dataset("cluttered-mnist"), "train", tmp_path, (1, 100, 100))
    ink = (images > 0).flatten(1).sum(dim=1)
    assert (ink >= 28 * 28).all() and (ink <= 28 * 28 + 8 * 64).all()
    # a 28 x 28 block of ink exists in every image: the digit itself
    blocks = torch.nn.functional.avg_pool2d((images > 0).float(), 28, stride=1)
    assert (blocks.flatten(1).max(dim=1).values == 1.0).all()


def test_cluttered_mnist_without_mnist_files_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\[\.gz\] not found \(looked in: .*nowhere"):
        data.load_images(data.open_dataset("cluttered-mnist"), "train", tmp_path / "nowhere", (1, 100, 100))


def test_evaluate_a_classifier_on_a_labelled_folder(idx_dir: Path, tmp_path: Path) -> None:
    """A folder made elsewhere is scored by class name against the classes the model knows."""
    run = tmp_path / "run"
    result = invoke("train", "--model", "classifier", "--glimpses", "2", "--rnn-size", "8", "--read-size", "3",
                    "--batch-size", "16", "--threads", "1", "--quiet", "--data-dir", idx_dir, "--out", run,
                    "--steps", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "mine"
    for name in ("3", "7"):
        (folder / "test" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (28, 28), 40 * i).save(folder / "test" / name / f"{i}.png")
    result = invoke("evaluate", run, "--dataset", "folder", "--data-dir", folder, "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 4
    assert [sum(row) for row in report["confusion"]] == [0, 0, 0, 2, 0, 0, 0, 2, 0, 0]
    (folder / "test" / "zebra").mkdir()
    Image.new("L", (28, 28)).save(folder / "test" / "zebra" / "0.png")
    result = invoke("evaluate", run, "--dataset", "folder", "--data-dir", folder)
    assert result.exit_code == 1 and "has classes the model does not know: zebra" in result.stderr
    shutil.rmtree(folder / "test" / "3")
    shutil.rmtree(folder / "test" / "zebra")  # a test folder of one class is scored too
    result = invoke("evaluate", run, "--dataset", "folder", "--data-dir", folder, "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert [sum(row) for row in json.loads(result.stdout)["confusion"]] == [0, 0, 0, 0, 0, 0, 0, 2, 0, 0]


def test_a_classifier_needs_two_classes_to_train_on(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / split / "cat").mkdir(parents=True)
        for i in range(10):
            Image.new("L", (28, 28), 20 * i).save(tmp_path / split / "cat" / f"{i}.png")
    result = invoke("train", "--model", "classifier", "--glimpses", "2", "--rnn-size", "8", "--read-size", "3", "--threads", "1",
                    "--dataset", "folder", "--data-dir", tmp_path, "--out", tmp_path / "run", "--steps", "1")  # fmt: skip
    assert error_line(result) == "error: the folder training split has 1 class (cat): a classifier needs 2 or more"


def test_cluttered_mnist_redraws_each_epoch_from_training_digits(tmp_path: Path, small_cluttered: None) -> None:
    """Epoch 0 is the fixed set; epoch 1 is a new composition, the same on every call, of training digits only."""
    square_digits(tmp_path)
    dataset = data.open_dataset("cluttered-mnist")
    fixed = data.load_labelled(dataset, "train", tmp_path, (1, 100, 100))
    first = data.load_labelled_epoch(dataset, 0, tmp_path, (1, 100, 100))
    assert torch.equal(first.images, fixed.images) and torch.equal(first.labels, fixed.labels)
    one = data.load_labelled_epoch(dataset, 1, tmp_path, (1, 100, 100))
    again = data.load_labelled_epoch(data.open_dataset("cluttered-mnist"), 1, tmp_path, (1, 100, 100))
    assert one.images.shape == (40, 1, 100, 100) and torch.equal(one.images, again.images)
    assert torch.equal(one.labels, again.labels) and one.classes == fixed.classes
    assert not torch.equal(one.images, fixed.images)
    assert set(one.images.unique().tolist()) == {0, SQUARES["train"]}  # no test digit leaks in
    blocks = torch.nn.functional.avg_pool2d((one.images > 0).float(), 28, stride=1)
    assert (blocks.flatten(1).max(dim=1).values == 1.0).all()  # each image still holds a whole digit


def test_a_data_set_that_draws_once_cannot_redraw(idx_dir: Path) -> None:
    with pytest.raises(DataError, match="MNIST draws its training images once, so --redraw does not apply"):
        data.load_labelled_epoch(data.open_dataset("mnist"), 1, idx_dir, (1, 28, 28))
