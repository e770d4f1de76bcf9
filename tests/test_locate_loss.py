"""--locate-loss: cluttered-mnist's digit centres, the Huber term by hand, the objective it enters,
the windows' centres the compiled unit returns, and the refusals (data sets, readers, DRAW, resume)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, invoke
from safetensors.torch import load_file

from drawcli import data, registry
from drawcli.classifier import AttentionClassifier, ClassifierOutput
from drawcli.config import ClassifierConfig
from drawcli.contract import Dataset, Labelled
from drawcli.errors import ConfigError, DataError
from drawcli.training.classify import ClassifierFamily
from drawcli.training.settings import TrainSettings

SMALL = dict(channels=1, height=100, width=100, glimpses=3, dec_size=8, read_size=3, classes=10)  # fmt: skip


def test_cluttered_centres_are_where_each_digit_was_pasted(cluttered_dir: Path) -> None:
    """Compositing is by maximum, so the 28 x 28 box around each recorded centre holds its digit's
    every pixel or brighter; the box's centre of 1-based pixels a..a+27 is a + 13.5."""
    from drawcli_synthetic import cluttered

    source = data.load_labelled(data.open_dataset("mnist"), "test", cluttered_dir, (1, 28, 28))
    digits = source.images[:, 0]
    images, labels, centres = cluttered(digits, source.labels, 10, 100, 8, 8, torch.Generator().manual_seed(3))
    assert centres.dtype == torch.float32 and centres.shape == (10, 2)
    assert torch.equal(centres.frac(), torch.full((10, 2), 0.5)) and (centres >= 14.5).all() and (centres <= 86.5).all()
    for image, label, (x, y) in zip(images[:, 0], labels, centres):
        left, top = int(x - 14.5), int(y - 14.5)  # 0-based corner
        box = image[top : top + 28, left : left + 28]
        assert any(bool((box >= digit).all()) for digit in digits[source.labels == label])
    loaded = data.load_labelled(data.open_dataset("cluttered-mnist"), "train", cluttered_dir, (1, 100, 100))
    assert loaded.centres is not None and loaded.centres.shape == (40, 2)


def test_locate_loss_by_hand() -> None:
    """Glimpse 1 is left out; glimpse 2 is (5, 0) pixels off, Huber 0.5 x 0.5^2 = 0.125 in 10-pixel
    units; glimpse 3 is (0, 30) off, linear beyond 1 unit: 3 - 0.5 = 2.5. Mean of 0.125 and 2.5."""
    centres = torch.tensor([[[90.0, 90.0], [55.0, 40.0], [50.0, 70.0]]])
    out = ClassifierOutput(logits=torch.zeros(1, 2), centres=centres)
    assert out.locate_loss(torch.tensor([[50.0, 40.0]])).tolist() == [pytest.approx((0.125 + 2.5) / 2)]
    one = ClassifierOutput(logits=torch.zeros(2, 2), centres=torch.zeros(2, 1, 2))
    assert one.locate_loss(torch.zeros(2, 2)).tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="produces no windows"):
        ClassifierOutput(logits=torch.zeros(1, 2)).locate_loss(torch.zeros(1, 2))


@pytest.mark.parametrize("reader", [spec.name for spec in registry.find("reader")])
def test_forward_returns_the_recorded_windows_centres(reader: str) -> None:
    """The training forward's centres (B, T, 2) are the recorded windows' centre(); None without windows."""
    torch.manual_seed(0)
    model = AttentionClassifier(ClassifierConfig(**SMALL, reader=reader))
    x = torch.rand(4, 1, 100, 100)
    out, recorded = model(x), model(x, record=True)
    if recorded.read_windows is None:
        assert out.centres is None and recorded.centres is None
        return
    expected = torch.stack([w.centre() for w in recorded.read_windows], dim=1)
    assert out.centres is not None and out.centres.shape == (4, 3, 2)
    torch.testing.assert_close(out.centres, expected)


def test_the_objective_adds_the_weighted_locate_term_not_the_reported_loss(cluttered_dir: Path) -> None:
    settings = TrainSettings(dataset="cluttered-mnist", data_dir=str(cluttered_dir), locate_loss=0.5)
    torch.manual_seed(0)
    config = ClassifierConfig(**SMALL, reader="filterbank")
    model = AttentionClassifier(config)
    family = ClassifierFamily(config, settings, torch.device("cpu"))
    indices = torch.tensor([4, 0, 7])
    batch = family.batch_loss(model, model, indices, step=0)
    out, labels = model(family.images[indices].float() / 255), family.targets[indices]
    off = (out.centres[:, 1:] - family.centres[indices][:, None]) / 10.0
    huber = torch.where(off.abs() <= 1, 0.5 * off**2, off.abs() - 0.5).sum(dim=2).mean(dim=1)
    ce = torch.nn.functional.cross_entropy(out.logits, labels, reduction="none")
    torch.testing.assert_close(batch.objective, ce + 0.5 * huber)
    torch.testing.assert_close(batch.metrics["loss"], ce.sum())
    family.settings = dataclasses.replace(settings, locate_loss=0.0)  # off: exactly that term goes
    torch.testing.assert_close(family.batch_loss(model, model, indices, step=0).objective, ce)


def test_each_redrawn_epoch_brings_its_own_centres(cluttered_dir: Path) -> None:
    settings = TrainSettings(dataset="cluttered-mnist", data_dir=str(cluttered_dir), redraw=True, locate_loss=0.1)
    family = ClassifierFamily(ClassifierConfig(**SMALL, reader="filterbank"), settings, torch.device("cpu"))
    family.start_epoch(1)
    expected = data.load_labelled_epoch(data.open_dataset("cluttered-mnist"), 1, cluttered_dir, (1, 100, 100))
    assert torch.equal(family.images, expected.images) and torch.equal(family.centres, expected.centres)


def test_locate_loss_trains_resumes_bit_for_bit_and_is_kept(cluttered_dir: Path, tmp_path: Path) -> None:
    """40 images, batch 16, --redraw: 3 steps an epoch. A run stopped after 2 steps and resumed to 5
    ends with the weights of one run of 5 steps, which differ from those of a run without the term."""
    common = [*CLASSIFIER, "--dataset", "cluttered-mnist", "--data-dir", cluttered_dir, "--redraw"]
    runs = {name: tmp_path / name for name in ("straight", "split", "without")}
    for name, extra in (("straight", ["--steps", "5", "--locate-loss", "0.5"]), ("split", ["--steps", "2", "--locate-loss", "0.5"]),
                        ("without", ["--steps", "5"])):  # fmt: skip
        result = invoke("train", *common, *extra, "--out", runs[name])
        assert result.exit_code == 0, result.output
    assert invoke("train", "--resume", runs["split"], "--steps", "5", "--quiet").exit_code == 0
    weights = {name: load_file(run / "checkpoint.safetensors") for name, run in runs.items()}
    assert all(torch.equal(weights["straight"][k], weights["split"][k]) for k in weights["straight"])
    assert not torch.equal(weights["straight"]["reader.window.weight"], weights["without"]["reader.window.weight"])
    result = invoke("train", "--resume", runs["split"], "--steps", "6", "--locate-loss", "0.25")
    assert result.exit_code == 2
    assert "--locate-loss" in result.output and "0.5" in result.output


def test_the_term_of_each_rank_is_its_part_of_the_batch(cluttered_dir: Path) -> None:
    """Under torchrun each rank takes its rows of the images, labels and centres alike: rank 1 of 2
    gets the last rows of the single process's objective, term for term."""
    from drawcli.distributed import Dist

    settings = TrainSettings(dataset="cluttered-mnist", data_dir=str(cluttered_dir), locate_loss=0.5)
    torch.manual_seed(0)
    config = ClassifierConfig(**SMALL, reader="filterbank")
    model = AttentionClassifier(config)
    indices = torch.tensor([4, 0, 7, 9, 2])
    whole = ClassifierFamily(config, settings, torch.device("cpu")).batch_loss(model, model, indices, step=0)
    rank1 = ClassifierFamily(config, settings, torch.device("cpu"), Dist(rank=1, world_size=2)).batch_loss(model, model, indices, step=0)
    torch.testing.assert_close(rank1.objective, whole.objective[3:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-dir", "{mnist}"], "error: the data set 'mnist' does not record where its objects are, so --locate-loss has nothing to aim at"),
        (["--dataset", "cluttered-mnist", "--data-dir", "{mnist}", "--reader", "no-attention"],
         "error: the reader 'no-attention' has no window to place, so --locate-loss does not apply"),
        (["--dataset", "cluttered-mnist", "--data-dir", "{mnist}", "--locate-loss", "-1"],
         "--locate-loss -1.0 must be a weight from 0 to 100, e.g. 0.1 (0 turns it off)"),
        (["--dataset", "cluttered-mnist", "--data-dir", "{mnist}", "--glimpses", "1"],
         "error: --locate-loss places the windows of glimpses 2 and on, and this model has 1 glimpse"),
    ],
)  # fmt: skip
def test_locate_loss_is_refused_where_it_cannot_apply(args: list[str], message: str, cluttered_dir: Path, tmp_path: Path) -> None:
    args = [str(cluttered_dir) if a == "{mnist}" else a for a in args]
    sizeless = [a for a, before in zip(CLASSIFIER, ["", *CLASSIFIER]) if "--read-size" not in (a, before)]  # no-attention refuses one
    result = invoke("train", *sizeless, "--steps", "1", "--locate-loss", "0.5", *args, "--out", tmp_path / "a")
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "a").exists()


def test_draw_refuses_locate_loss(idx_dir: Path, tmp_path: Path) -> None:
    result = invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--steps", "1", "--locate-loss", "0.1", "--out", tmp_path / "b")
    assert result.exit_code == 2
    assert "--locate-loss is for the classifier (--model classifier): DRAW's windows have no object to find" in result.output


class Tiny(Dataset):
    """Three 4 x 4 images of two classes, returned as `self.labelled`."""

    has_labels = True
    labelled: tuple = ()

    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        return self.labelled[0]

    def load_labelled(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        return self.labelled  # type: ignore[return-value]


def test_centres_are_checked_and_older_data_sets_still_load() -> None:
    """A plain (images, labels, classes) tuple, as data sets written before centres returned, still
    loads; centres of the wrong shape, or missing where a data set says it has them, are one clear error."""
    images, labels = torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 0])
    tiny = Tiny()
    tiny.labelled = (images, labels, ("a", "b"))
    loaded = data.load_labelled(tiny, "train", None, (1, 4, 4))
    assert loaded.centres is None and torch.equal(loaded.labels, labels)
    tiny.labelled = Labelled(images, labels, ("a", "b"), torch.zeros(3, 2))
    assert torch.equal(data.load_labelled(tiny, "train", None, (1, 4, 4)).centres, torch.zeros(3, 2))
    tiny.labelled = Labelled(images, labels, ("a", "b"), torch.zeros(3))
    with pytest.raises(DataError, match=r"^train object centres have shape \(3,\) \(torch.float32\), expected \(3, 2\) float32$"):
        data.load_labelled(tiny, "train", None, (1, 4, 4))
    tiny.has_centres, tiny.labelled = True, (images, labels, ("a", "b"))
    with pytest.raises(DataError, match="^data set Tiny sets has_centres, but its test split came without centres$"):
        data.load_labelled(tiny, "test", None, (1, 4, 4))
