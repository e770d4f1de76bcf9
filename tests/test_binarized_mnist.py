"""binarized-mnist: tiny .amat files in the real format read bit for bit, in every layout; clear
errors for missing and malformed files; and DRAW trained and evaluated on the files' own bits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_ARGS, invoke, write_idx_dataset

from drawcli import data
from drawcli.contract import Dataset
from drawcli.errors import DataError

SPLITS = {"train": 32, "valid": 6, "test": 8}  # images per tiny file


def amat_text(bits: torch.Tensor) -> str:
    """(n, 28, 28) of 0/1 -> the .amat format: one image a line, 784 values separated by single spaces."""
    return "".join(" ".join(str(v) for v in image.flatten().tolist()) + "\n" for image in bits)


def write_amat(folder: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """binarized_mnist_{train,valid,test}.amat of random bits in folder; returns each split's bits (n, 28, 28)."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    written = {}
    for split, n in SPLITS.items():
        written[split] = (torch.rand(n, 28, 28, generator=gen) < 0.3).to(torch.uint8)
        (folder / f"binarized_mnist_{split}.amat").write_text(amat_text(written[split]))
    return written


@pytest.fixture(scope="module")
def amat_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("binarized")
    return folder, write_amat(folder)


def test_every_split_loads_bit_for_bit(amat_dir: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """train, valid and test are the files' images exactly, as 0 and 255; -60k trains on train + valid."""
    folder, written = amat_dir
    dataset = data.open_dataset("binarized-mnist")
    assert dataset.binarized and not dataset.has_labels
    for split, n in SPLITS.items():
        images = data.load_images(dataset, split, folder, (1, 28, 28))
        assert images.dtype == torch.uint8 and images.shape == (n, 1, 28, 28)
        assert torch.equal(images[:, 0], written[split] * 255)
    both = data.load_images(data.open_dataset("binarized-mnist-60k"), "train", folder, (1, 28, 28))
    assert torch.equal(both[:, 0], torch.cat([written["train"], written["valid"]]) * 255)
    test = data.load_images(data.open_dataset("binarized-mnist-60k"), "test", folder, (1, 28, 28))
    assert torch.equal(test[:, 0], written["test"] * 255)
    with pytest.raises(DataError, match=r"unknown split 'valid'; expected one of train, test"):
        data.open_dataset("binarized-mnist-60k").load("valid", folder, (1, 28, 28))


def test_pixel_order_is_row_major(tmp_path: Path) -> None:
    """Value k of a line is pixel (k // 28, k % 28): one set value at k = 28 + 3 lights row 1, column 3."""
    line = ["0"] * 784
    line[28 + 3] = "1"
    (tmp_path / "binarized_mnist_test.amat").write_text(" ".join(line) + "\n")
    image = data.open_dataset("binarized-mnist").load("test", tmp_path, (1, 28, 28))[0, 0]
    assert image[1, 3] == 255 and int(image.sum()) == 255


@pytest.mark.parametrize("sub", ["binarized_mnist", "BinarizedMNIST/raw"])
def test_subfolder_layouts_are_found_from_the_root(tmp_path: Path, sub: str) -> None:
    """DIR/binarized_mnist/ and the torchvision-style DIR/BinarizedMNIST/raw/ are found from DIR."""
    written = write_amat(tmp_path / sub)
    images = data.open_dataset("binarized-mnist").load("test", tmp_path, (1, 28, 28))
    assert torch.equal(images[:, 0], written["test"] * 255)


def test_windows_line_ends_other_spacing_and_no_final_newline(tmp_path: Path) -> None:
    """CRLF, tabs, double or trailing spaces and a missing last newline read the same bits."""
    bits = (torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.5).to(torch.uint8)
    rows = [" ".join(str(v) for v in image.flatten().tolist()) for image in bits]
    rows[1] = rows[1].replace(" ", "\t", 5).replace(" ", "  ", 3) + " "
    (tmp_path / "binarized_mnist_test.amat").write_bytes("\r\n".join(rows).encode())
    images = data.open_dataset("binarized-mnist").load("test", tmp_path, (1, 28, 28))
    assert torch.equal(images[:, 0], bits * 255)


def test_missing_files_message_says_which_where_and_how(tmp_path: Path) -> None:
    """--data-dir without the files: one DataError naming the file, the folders looked in and the download."""
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        data.open_dataset("binarized-mnist").load("train", missing, (1, 28, 28))
    message = str(info.value)
    assert "binarized_mnist_train.amat not found" in message
    assert str(missing) in message and str(missing / "BinarizedMNIST" / "raw") in message
    assert "--data-dir" in message and "download" in message and "larocheh" in message
    with pytest.raises(DataError, match="binarized_mnist_train.amat, binarized_mnist_valid.amat not found"):
        data.open_dataset("binarized-mnist-60k").load("train", missing, (1, 28, 28))


def test_no_data_dir_tries_download_into_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --data-dir the cache is searched, then a download of the missing file into it is tried (stubbed here)."""
    monkeypatch.setenv("DRAWCLI_CACHE", str(tmp_path / "cache"))
    calls: list[tuple[Path, list[str]]] = []
    dataset = data.open_dataset("binarized-mnist")
    monkeypatch.setattr(type(dataset), "_download", lambda self, root, names: calls.append((root, names)))
    with pytest.raises(DataError, match="not found"):
        dataset.load("test", None, (1, 28, 28))
    assert calls == [(tmp_path / "cache" / "binarized_mnist", ["binarized_mnist_test.amat"])]
    written = write_amat(tmp_path / "cache" / "binarized_mnist")  # a later run finds the cached files
    assert torch.equal(dataset.load("test", None, (1, 28, 28))[:, 0], written["test"] * 255)


@pytest.mark.parametrize("line, error", [
    (" ".join(["0"] * 783), r"binarized_mnist_test.amat, line 2: 783 values, expected 784"),
    (" ".join(["0"] * 785), r"binarized_mnist_test.amat, line 2: 785 values, expected 784"),
    (" ".join(["0"] * 4 + ["2"] + ["0"] * 779), r"binarized_mnist_test.amat, line 2: value 5 is '2', expected 0 or 1"),
    (" ".join(["0"] * 783 + ["0.5"]), r"line 2: value 784 is '0.5', expected 0 or 1"),
    ("", r"line 2: 0 values, expected 784"),
])  # fmt: skip
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, error: str) -> None:
    """A wrong number of values, a value other than 0/1 or a blank line inside: one DataError with the file and line."""
    good = " ".join(["1"] * 784)
    (tmp_path / "binarized_mnist_test.amat").write_text(f"{good}\n{line}\n{good}\n")
    with pytest.raises(DataError, match=error):
        data.open_dataset("binarized-mnist").load("test", tmp_path, (1, 28, 28))


def test_empty_file_and_wrong_model_shape_are_refused(tmp_path: Path) -> None:
    (tmp_path / "binarized_mnist_test.amat").write_text("\n")
    dataset = data.open_dataset("binarized-mnist")
    with pytest.raises(DataError, match="binarized_mnist_test.amat holds no images"):
        dataset.load("test", tmp_path, (1, 28, 28))
    with pytest.raises(DataError, match="images are 1x28x28 .* the model is 1x14x14: train it with --channels 1 --height 28 --width 28"):
        dataset.load("test", tmp_path, (1, 14, 14))


def test_binarization_defaults_to_the_data_sets_bits() -> None:
    """A binarized data set defaults to fixed; every mode gives its bits back; fixed is refused for grey levels."""
    binarized, mnist = data.open_dataset("binarized-mnist"), data.open_dataset("mnist")
    assert data.binarization(binarized, None) == "fixed"
    assert data.binarization(binarized, None, recorded="stochastic") == "fixed"  # evaluating an mnist run on it
    assert data.binarization(binarized, "stochastic") == "stochastic"  # asked explicitly
    assert data.binarization(mnist, None) == "stochastic"
    assert data.binarization(mnist, None, recorded="threshold") == "threshold"
    assert data.binarization(mnist, None, recorded="fixed") == "stochastic"  # a binarized-mnist run evaluated on mnist
    with pytest.raises(DataError, match="--binarize fixed keeps a data set's own bits, and MNIST has grey levels"):
        data.binarization(mnist, "fixed")
    bits = (torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2)) < 0.5).to(torch.uint8) * 255
    for mode in ("fixed", "threshold", "stochastic"):
        assert torch.equal(data.binarize(bits, mode, torch.Generator().manual_seed(3)), bits.float() / 255)


def test_a_binarized_data_set_with_grey_pixels_is_refused() -> None:
    """The capability is checked: a data set that sets `binarized` must give only 0 and 255."""

    class Greyish(Dataset):
        image_shape = (1, 2, 2)
        binarized = True

        def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
            return torch.tensor([[[[0, 255], [128, 0]]]], dtype=torch.uint8)

    with pytest.raises(DataError, match="Greyish sets binarized, but its test split has pixels other than 0 and 255"):
        data.load_images(Greyish(), "test", None, (1, 2, 2))


def test_train_and_evaluate_on_the_files_own_bits(amat_dir: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """`train --dataset binarized-mnist` records --binarize fixed and trains on the very bits of the train file;
    evaluate reports them as already binary, on test and valid, and repeats exactly."""
    folder, written = amat_dir
    batches: list[tuple[str, torch.Tensor]] = []
    binarize = data.binarize

    def recording(images: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
        x = binarize(images, mode, generator)
        batches.append((mode, x))
        return x

    monkeypatch.setattr(data, "binarize", recording)
    run = tmp_path / "run"
    result = invoke("train", *TINY_ARGS, "--dataset", "binarized-mnist", "--data-dir", folder, "--out", run,
                    "--steps", "2", "--quiet", "--sample-every", "0", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run / "run.json").read_text())["settings"]["binarize"] == "fixed"
    train_rows = {tuple(image.flatten().tolist()) for image in written["train"].float()}
    seen = [x for mode, x in batches if len(x) == 16]  # the training batches (the test set is binarized whole)
    assert len(seen) == 2 and all(mode == "fixed" for mode, _ in batches)
    assert all(tuple(image.flatten().tolist()) in train_rows for x in seen for image in x)

    reports = []
    for split in ("test", "test", "valid"):
        result = invoke("evaluate", run, "--split", split, "--json", "--threads", "1", "--device", "cpu")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert reports[0]["data"] == "binarized-mnist test split, 8 images, already binary (the data set's fixed binarization, used as it is)"
    assert reports[0]["bound"] == reports[1]["bound"]
    assert reports[2]["images"] == SPLITS["valid"]


def test_train_refuses_fixed_for_grey_levels(tmp_path: Path) -> None:
    """`train --binarize fixed` on MNIST's grey levels is one clear line, before any training."""
    write_idx_dataset(tmp_path / "mnist", n_train=16, n_test=4)
    result = invoke("train", *TINY_ARGS, "--data-dir", tmp_path / "mnist", "--out", tmp_path / "run", "--steps", "1",
                    "--quiet", "--binarize", "fixed")  # fmt: skip
    assert result.exit_code == 1
    assert "error: --binarize fixed keeps a data set's own bits, and MNIST has grey levels" in result.output
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_download_renames_only_complete_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download (torchvision's download_url, stubbed: nothing is fetched) lands under a .part name and is
    renamed when complete; a failed one leaves no file, so the not-found message follows."""
    import torchvision.datasets.utils

    fetched: list[str] = []

    def fake(url: str, root: str, filename: str) -> None:
        if (Path(root) / filename).exists():  # as download_url does without a checksum: taken as done
            return
        fetched.append(url)
        if "test" not in url:
            raise OSError("no network")
        (Path(root) / filename).write_text(" ".join(["1"] * 784) + "\n")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", fake)
    monkeypatch.setenv("DRAWCLI_CACHE", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "binarized_mnist"
    cache.mkdir(parents=True)
    (cache / "binarized_mnist_test.amat.part").write_text("0 1\n")  # a stale part from a killed download
    dataset = data.open_dataset("binarized-mnist")
    assert int(dataset.load("test", None, (1, 28, 28)).sum()) == 784 * 255
    with pytest.raises(DataError, match="binarized_mnist_train.amat not found"):
        dataset.load("train", None, (1, 28, 28))
    assert fetched == [f"http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{s}.amat" for s in ("test", "train")]
    assert sorted(p.name for p in cache.iterdir()) == ["binarized_mnist_test.amat"]
