"""Data sets: idx files in both layouts, image folders, binarization, clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from helpers import IDX_NAMES, idx_bytes, write_idx_dataset
from PIL import Image

from drawcli import data, registry
from drawcli.errors import DataError


def test_idx_gz_folder_loads_bit_for_bit(tmp_path: Path) -> None:
    """A folder holding the .gz files directly gives exactly the images written."""
    written = write_idx_dataset(tmp_path, n_train=10, n_test=4)
    mnist = data.open_dataset("mnist")
    for split in ("train", "test"):
        images = data.load_images(mnist, split, tmp_path, (1, 28, 28))
        assert images.dtype == torch.uint8
        assert torch.equal(images[:, 0], written[split])


def test_torchvision_layout_uncompressed(tmp_path: Path) -> None:
    """torchvision's root/MNIST/raw layout with uncompressed files is found from the root."""
    written = write_idx_dataset(tmp_path / "MNIST" / "raw", n_train=6, n_test=3, gz=False)
    images = data.load_images(data.open_dataset("mnist"), "test", tmp_path, (1, 28, 28))
    assert torch.equal(images[:, 0], written["test"])


def test_missing_folder_message_says_where_and_how(tmp_path: Path) -> None:
    """An explicit --data-dir without the files fails with the places looked and the remedy."""
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        data.open_dataset("mnist").load("train", missing, (1, 28, 28))
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and str(missing) in message and "--data-dir" in message


def test_no_data_dir_tries_download_into_cache_not_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --data-dir the cache is searched, then a download into the cache is tried."""
    monkeypatch.setenv("DRAWCLI_CACHE", str(tmp_path / "cache"))
    calls: list[Path] = []
    mnist = data.open_dataset("mnist")
    monkeypatch.setattr(type(mnist), "_download", lambda self, root: calls.append(root))
    with pytest.raises(DataError, match="not found"):
        mnist.load("train", None, (1, 28, 28))
    assert calls == [tmp_path / "cache" / "mnist"]


def test_fashion_mnist_found_in_system_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fashion-MNIST is found in its system folder (Debian's package) without --data-dir."""
    written = write_idx_dataset(tmp_path, n_train=5, n_test=2)
    fashion = data.open_dataset("fashion-mnist")
    monkeypatch.setattr(type(fashion), "system_dirs", (tmp_path,))
    assert torch.equal(fashion.load("test", None, (1, 28, 28))[:, 0], written["test"])


def test_another_idx_data_sets_files_are_refused_by_their_first_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MNIST and Fashion-MNIST share file names: a folder of one given to the other is named for what
    it holds (here the synthetic files stand in for MNIST's, by their first image's fingerprint)."""
    import hashlib

    import drawcli_datasets

    written = write_idx_dataset(tmp_path, n_train=12, n_test=4)
    digest = {split: hashlib.sha256(written[split][0].numpy().tobytes()).hexdigest()[:16] for split in ("train", "test")}
    monkeypatch.setitem(drawcli_datasets.FIRST_IMAGES, "MNIST", digest)
    assert torch.equal(data.open_dataset("mnist").load("train", tmp_path, (1, 28, 28))[:, 0], written["train"])
    for split, name in (("train", "train-images-idx3-ubyte.gz"), ("test", "t10k-images-idx3-ubyte.gz")):
        with pytest.raises(DataError) as info:
            data.open_dataset("fashion-mnist").load_labelled(split, tmp_path, (1, 28, 28))
        assert str(info.value) == (f"{tmp_path / name} holds MNIST's images, not FashionMNIST's: point --data-dir at "
                                   "FashionMNIST's files, or choose the --dataset they belong to")  # fmt: skip


def test_truncated_and_wrong_idx_files(tmp_path: Path) -> None:
    """A truncated idx file and a file with the wrong magic number are named in the error."""
    images = torch.zeros(4, 28, 28, dtype=torch.uint8)
    name = IDX_NAMES["train"][0]
    with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
        f.write(idx_bytes(images)[:-10])
    with pytest.raises(DataError, match="truncated"):
        data.open_dataset("mnist").load("train", tmp_path, (1, 28, 28))
    (tmp_path / f"{name}.gz").unlink()
    (tmp_path / name).write_bytes(b"\x00\x00\x08\x01" + bytes(20))
    with pytest.raises(DataError, match="bad magic"):
        data.open_dataset("mnist").load("train", tmp_path, (1, 28, 28))


def test_shape_mismatch_with_model(tmp_path: Path) -> None:
    """MNIST's 28x28 images against a 16x16 model is a clear error, not a crash later."""
    write_idx_dataset(tmp_path, n_train=3, n_test=2)
    with pytest.raises(DataError, match=r"model expects \(N, 1, 16, 16\)"):
        data.load_images(data.open_dataset("mnist"), "train", tmp_path, (1, 16, 16))


def _write_pngs(folder: Path, count: int, size: tuple[int, int] = (12, 10)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, (i * 20 % 256, 100, 200)).save(folder / f"img{i:02d}.png")


def test_image_folder_resizes_and_holds_out_every_tenth(tmp_path: Path) -> None:
    """20 images: 18 train, 2 test (every tenth in sorted order), resized, grey or colour."""
    _write_pngs(tmp_path / "a", 20)
    folder = data.open_dataset("folder")
    train = folder.load("train", tmp_path, (3, 8, 6))
    test = folder.load("test", tmp_path, (1, 8, 6))
    assert train.shape == (18, 3, 8, 6) and test.shape == (2, 1, 8, 6)
    assert train[0, :, 0, 0].tolist() == [0, 100, 200]  # colour kept exactly (flat image)
    # grey = ITU-R 601-2 luma of (180, 100, 200) for img09, the first held-out image
    assert test[0, 0, 0, 0].item() == round(180 * 299 / 1000 + 100 * 587 / 1000 + 200 * 114 / 1000)


def test_image_folder_with_split_subfolders(tmp_path: Path) -> None:
    """train/ and test/ subfolders are used as the splits when both exist."""
    _write_pngs(tmp_path / "train", 3)
    _write_pngs(tmp_path / "test", 2)
    folder = data.open_dataset("folder")
    assert len(folder.load("train", tmp_path, (1, 4, 4))) == 3
    assert len(folder.load("test", tmp_path, (1, 4, 4))) == 2


def test_image_folder_errors(tmp_path: Path) -> None:
    """Empty folders, missing folders and unreadable images give DataErrors that say which."""
    folder = data.open_dataset("folder")
    with pytest.raises(DataError, match="no images"):
        folder.load("train", tmp_path, (1, 4, 4))
    with pytest.raises(DataError, match="does not exist"):
        folder.load("train", tmp_path / "missing", (1, 4, 4))
    _write_pngs(tmp_path, 9)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        folder.load("train", tmp_path, (1, 4, 4))


def test_image_folder_too_small_to_split_or_with_a_test_folder_alone(tmp_path: Path) -> None:
    """Fewer than 10 loose images cannot give a tenth to testing; a test/ folder without train/ would
    otherwise have its images trained on (the whole folder is the training split): both refused, saying why.
    A test/ folder alone is still a test split (for evaluate on images made elsewhere)."""
    folder = data.open_dataset("folder")
    _write_pngs(tmp_path, 5)
    with pytest.raises(DataError, match=r"^5 images under .*: without train/ and test/ folders the test split is every tenth image, so it needs 10 or more$"):
        folder.load("test", tmp_path, (1, 4, 4))
    _write_pngs(tmp_path / "test", 2)
    with pytest.raises(DataError, match=r"has a test/ folder but no train/ one: put the training images in .*train \(without test/"):
        folder.load("train", tmp_path, (1, 4, 4))
    assert len(folder.load("test", tmp_path, (1, 4, 4))) == 2


def test_binarize_threshold_and_stochastic() -> None:
    """threshold is pixel > 0.5 exactly; stochastic is a seeded Bernoulli sample of the grey level."""
    images = torch.tensor([[[[0, 127, 128, 255]]]], dtype=torch.uint8)
    assert data.binarize(images, "threshold").flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    grey = torch.full((1, 1, 100, 100), 64, dtype=torch.uint8)
    sample = data.binarize(grey, "stochastic", torch.Generator().manual_seed(0))
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    assert abs(sample.mean().item() - 64 / 255) < 0.02
    again = data.binarize(grey, "stochastic", torch.Generator().manual_seed(0))
    assert torch.equal(sample, again)
    with pytest.raises(ValueError, match="unknown binarization"):
        data.binarize(images, "random")


def test_fixed_test_set_is_independent_of_global_seed() -> None:
    """The test split's binarization is the same whatever the torch seed."""
    images = torch.randint(0, 256, (8, 1, 5, 5), dtype=torch.uint8)
    torch.manual_seed(1)
    a = data.binarize_fixed(images, "stochastic")
    torch.manual_seed(2)
    b = data.binarize_fixed(images, "stochastic")
    assert torch.equal(a, b)


@pytest.mark.parametrize("spec", registry.find("dataset"), ids=lambda s: s.name)
def test_every_dataset_fails_cleanly_on_missing_folder(spec: registry.PluginSpec, tmp_path: Path) -> None:
    """Every registered data set declares a shape (or None) and raises DataError for a missing folder."""
    dataset = data.open_dataset(spec.name)
    assert dataset.image_shape is None or len(dataset.image_shape) == 3
    with pytest.raises(DataError):
        dataset.load("train", tmp_path / "missing", dataset.image_shape or (1, 8, 8))


SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the shared MNIST copy is not on this machine")
def test_real_mnist_test_split() -> None:
    """The real MNIST test split: 10,000 images of 28x28 with the known mean grey level."""
    images = data.open_dataset("mnist").load("test", SHARED_MNIST, (1, 28, 28))
    assert images.shape == (10000, 1, 28, 28)
    assert abs(images.float().mean().item() / 255 - 0.1325) < 0.001


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the shared MNIST copy is not on this machine")
def test_real_mnist_files_are_not_taken_for_fashion_mnist() -> None:
    """The fingerprints of the real files: MNIST's loads as mnist and is refused as fashion-mnist."""
    assert data.open_dataset("mnist").load("test", SHARED_MNIST, (1, 28, 28)).shape == (10000, 1, 28, 28)
    with pytest.raises(DataError, match="holds MNIST's images, not FashionMNIST's"):
        data.open_dataset("fashion-mnist").load("test", SHARED_MNIST, (1, 28, 28))


FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's Fashion-MNIST package is not installed")
def test_real_fashion_mnist_files_are_not_taken_for_mnist() -> None:
    """The other direction: Fashion-MNIST's files load as fashion-mnist and are refused as mnist."""
    assert data.open_dataset("fashion-mnist").load("test", FASHION, (1, 28, 28)).shape == (10000, 1, 28, 28)
    with pytest.raises(DataError, match="holds FashionMNIST's images, not MNIST's"):
        data.open_dataset("mnist").load("train", FASHION, (1, 28, 28))
