"""The colour data sets from tiny files in their real formats: SVHN's .mat, CIFAR-10's binary batches."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import invoke

from drawcli import data
from drawcli.errors import DataError

SHAPE = (3, 32, 32)
CIFAR_BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)]


def cifar_record(label: int, red: int, green: int, blue: int) -> bytes:
    """One binary CIFAR-10 record: the label byte, then each 32x32 plane filled with one value."""
    return bytes([label]) + bytes([red]) * 1024 + bytes([green]) * 1024 + bytes([blue]) * 1024


def write_cifar(folder: Path) -> None:
    """All six batches; batch i's records have red = 10 * i + their index, the test batch's red = 100 + index."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR_BATCHES, start=1):
        records = [cifar_record(label=(i + k) % 10, red=10 * i + k, green=k, blue=200) for k in range(2)]
        (folder / name).write_bytes(b"".join(records))
    test = [cifar_record(label=9 - k, red=100 + k, green=50, blue=250) for k in range(3)]
    (folder / "test_batch.bin").write_bytes(b"".join(test))


def write_svhn(folder: Path, name: str, labels: list[int], **fields: np.ndarray) -> np.ndarray:
    """A .mat file as SVHN ships it: X (32, 32, 3, N) uint8, y (N, 1); `fields` replace or add variables."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(0)
    x = gen.integers(0, 256, size=(32, 32, 3, len(labels)), dtype=np.uint8)
    savemat(folder / name, {"X": x, "y": np.array(labels, dtype=np.uint8)[:, None], **fields})
    return x


def test_cifar_pixels_labels_and_batch_order(tmp_path: Path) -> None:
    """Planes come back as channels red, green, blue; the train split is data_batch_1 ... _5 in order."""
    write_cifar(tmp_path)
    cifar = data.open_dataset("cifar10")
    train = data.load_labelled(cifar, "train", tmp_path, SHAPE)
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.images[:, 0, 0, 0].tolist() == [10, 11, 20, 21, 30, 31, 40, 41, 50, 51]
    assert (train.images[3, 0] == 21).all() and (train.images[3, 1] == 1).all() and (train.images[3, 2] == 200).all()
    assert train.labels.tolist() == [(i + k) % 10 for i in range(1, 6) for k in range(2)]
    assert train.classes[0] == "airplane" and train.classes[9] == "truck" and len(train.classes) == 10
    test = data.load_images(cifar, "test", tmp_path, SHAPE)
    assert test[:, 0, 31, 31].tolist() == [100, 101, 102] and (test[:, 2] == 250).all()


def test_cifar_found_in_archive_folder(tmp_path: Path) -> None:
    """The folder the binary tarball unpacks to, DIR/cifar-10-batches-bin/, is found from DIR."""
    write_cifar(tmp_path / "cifar-10-batches-bin")
    labelled = data.load_labelled(data.open_dataset("cifar10"), "test", tmp_path, SHAPE)
    assert labelled.labels.tolist() == [9, 8, 7]


def test_cifar_missing_batch_names_it_and_the_places(tmp_path: Path) -> None:
    """A missing batch is named, with every folder looked in and the binary version as the remedy."""
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4.bin").unlink()
    with pytest.raises(DataError) as info:
        data.load_images(data.open_dataset("cifar10"), "train", tmp_path, SHAPE)
    message = str(info.value)
    assert message.startswith("data_batch_4.bin not found")
    assert str(tmp_path / "cifar-10-batches-bin") in message and "binary version" in message and "--data-dir" in message


def test_cifar_truncated_batch(tmp_path: Path) -> None:
    """A batch cut short of a whole record is named, with its size."""
    write_cifar(tmp_path)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError) as info:
        data.load_images(data.open_dataset("cifar10"), "test", tmp_path, SHAPE)
    assert str(info.value).startswith(f"{path} is truncated or not a CIFAR-10 binary batch: its {3 * 3073 - 5} bytes")


def test_wrong_image_shape_is_refused_before_reading(tmp_path: Path) -> None:
    """A model other than 3x32x32 is refused with the data set's shape and the options to use."""
    for name, title in (("cifar10", "CIFAR-10"), ("svhn", "SVHN")):
        with pytest.raises(DataError) as info:
            data.load_images(data.open_dataset(name), "train", tmp_path / "nowhere", (1, 28, 28))
        assert str(info.value) == (
            f"{title} images are 3x32x32 (channels x height x width), but the model is 1x28x28: "
            "train it with --channels 3 --height 32 --width 32"
        )


def test_svhn_pixels_and_ten_is_zero(tmp_path: Path) -> None:
    """X (H, W, C, N) comes back as (N, C, H, W) exactly; the label 10 (the digit 0) becomes 0."""
    x = write_svhn(tmp_path, "train_32x32.mat", [10, 1, 9, 10])
    svhn = data.open_dataset("svhn")
    train = data.load_labelled(svhn, "train", tmp_path, SHAPE)
    assert train.labels.tolist() == [0, 1, 9, 0] and train.classes == tuple("0123456789")
    assert torch.equal(train.images, torch.from_numpy(x).permute(3, 2, 0, 1))
    assert train.images[2, 1, 5, 7] == x[5, 7, 1, 2]  # image 2, green, row 5, column 7


def test_svhn_subfolder_and_plain_load(tmp_path: Path) -> None:
    """The .mat files are found in DIR/SVHN/ too; `load` gives the images alone."""
    x = write_svhn(tmp_path / "SVHN", "test_32x32.mat", [3, 4])
    images = data.load_images(data.open_dataset("svhn"), "test", tmp_path, SHAPE)
    assert torch.equal(images[1, 0], torch.from_numpy(x[:, :, 0, 1]))


def test_svhn_missing_file(tmp_path: Path) -> None:
    """No .mat file: the name, the folders looked in, the remedy."""
    with pytest.raises(DataError) as info:
        data.load_images(data.open_dataset("svhn"), "test", tmp_path, SHAPE)
    message = str(info.value)
    looked = f"{tmp_path}, {tmp_path / 'svhn'}, {tmp_path / 'SVHN'}"
    assert message.startswith(f"test_32x32.mat not found (looked in: {looked})")
    assert "--data-dir" in message


def test_svhn_malformed_files(tmp_path: Path) -> None:
    """A .mat without y, with fewer labels than images, or not a .mat at all is named in one DataError."""
    from scipy.io import savemat

    svhn = data.open_dataset("svhn")
    path = tmp_path / "train_32x32.mat"
    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataError) as info:
        data.load_images(svhn, "train", tmp_path, SHAPE)
    assert str(info.value) == f"{path} lacks y: an SVHN .mat file holds X (the images) and y (the labels)"
    write_svhn(tmp_path, "train_32x32.mat", [1, 2, 3], y=np.array([[1], [2]], np.uint8))
    with pytest.raises(DataError, match=r"has 2 labels \(y of shape \(2, 1\)\) for 3 images"):
        data.load_images(svhn, "train", tmp_path, SHAPE)
    path.write_bytes(b"not a matlab file" * 20)
    with pytest.raises(DataError, match="as a MATLAB v5 file"):
        data.load_images(svhn, "train", tmp_path, SHAPE)


def test_svhn_without_scipy_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without scipy the message gives the extra to install."""
    write_svhn(tmp_path, "test_32x32.mat", [1])
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `import scipy.io` fail
    with pytest.raises(DataError) as info:
        data.load_images(data.open_dataset("svhn"), "test", tmp_path, SHAPE)
    assert str(info.value) == "reading SVHN's .mat files needs scipy: pip install 'drawcli[svhn]'"


def test_no_data_dir_downloads_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --data-dir each data set tries a download into its cache folder, then says where it looked."""
    monkeypatch.setenv("DRAWCLI_CACHE", str(tmp_path / "cache"))
    for name, folder in (("cifar10", "cifar10"), ("svhn", "svhn")):
        calls: list[tuple[Path, str]] = []
        dataset = data.open_dataset(name)
        monkeypatch.setattr(type(dataset), "_download", lambda self, root, split, calls=calls: calls.append((root, split)))
        with pytest.raises(DataError, match=re.escape(f"not found (looked in: {tmp_path / 'cache' / folder}")):
            dataset.load("test", None, SHAPE)
        assert calls == [(tmp_path / "cache" / folder, "test")]


def test_train_cifar10_end_to_end(tmp_path: Path) -> None:
    """`drawcli train --dataset cifar10` on the tiny batches runs two steps and exits 0."""
    write_cifar(tmp_path / "data")
    result = invoke(
        "train", "--dataset", "cifar10", "--data-dir", tmp_path / "data", "--channels", 3, "--height", 32,
        "--width", 32, "--glimpses", 2, "--rnn-size", 8, "--z-size", 2, "--read-size", 2, "--write-size", 2,
        "--batch-size", 4, "--steps", 2, "--threads", 1, "--quiet", "--sample-every", 0, "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()
