"""--glimpse-loss: the earlier glimpses' classifications, their mean cross-entropy by hand, the
objective they enter, and the resume refusal (its range and DRAW refusals: test_distill.py)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, invoke

from drawcli import registry
from drawcli.classifier import AttentionClassifier, ClassifierOutput
from drawcli.config import DrawConfig
from drawcli.training.classify import ClassifierFamily
from drawcli.training.settings import TrainSettings

SMALL = dict(kind="classifier", channels=1, height=12, width=12, glimpses=3, enc_size=8, dec_size=8, read_size=3,
             classes=4)  # fmt: skip


def test_earlier_loss_by_hand() -> None:
    """Two earlier glimpses of one image, label 1: softmax (1/4, 3/4) then (1/2, 1/2), so the
    mean of -ln 3/4 and -ln 1/2; without earlier glimpses the term is 0."""
    earlier = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]]])
    out = ClassifierOutput(logits=torch.zeros(1, 2), earlier_logits=earlier)
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    assert out.earlier_loss(torch.tensor([1])).item() == pytest.approx(expected)
    assert out.earlier_loss(torch.tensor([1]), exact=False).item() == pytest.approx(expected)
    none = ClassifierOutput(logits=torch.zeros(2, 2), earlier_logits=torch.zeros(2, 0, 2))
    assert none.earlier_loss(torch.tensor([0, 1])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("reader", [spec.name for spec in registry.find("reader")])
def test_the_earlier_logits_are_those_of_a_shorter_run(reader: str) -> None:
    """Glimpse t's classification is what the same weights give when the run stops after t
    glimpses (the parameters do not depend on T), for every registered reader."""
    torch.manual_seed(0)
    model = AttentionClassifier(DrawConfig(**SMALL, reader=reader))
    x = torch.rand(5, 1, 12, 12)
    out = model(x)
    assert out.earlier_logits is not None and out.earlier_logits.shape == (5, 2, 4)
    for steps in (1, 2):
        shorter = AttentionClassifier(DrawConfig(**{**SMALL, "glimpses": steps}, reader=reader))
        shorter.load_state_dict(model.state_dict())
        torch.testing.assert_close(out.earlier_logits[:, steps - 1], shorter(x).logits)
    one = AttentionClassifier(DrawConfig(**{**SMALL, "glimpses": 1}, reader=reader))
    assert one(x).earlier_logits.shape == (5, 0, 4)


def test_the_objective_adds_the_weighted_earlier_term_not_the_reported_loss(idx_dir: Path) -> None:
    settings = TrainSettings(dataset="mnist", data_dir=str(idx_dir), glimpse_loss=0.25, label_smoothing=0.3)
    torch.manual_seed(0)
    config = DrawConfig(**{**SMALL, "height": 28, "width": 28, "classes": 10}, reader="filterbank")
    model = AttentionClassifier(config)
    family = ClassifierFamily(config, settings, torch.device("cpu"))
    indices = torch.tensor([1, 2, 3])
    batch = family.batch_loss(model, model, indices, step=0)
    out, labels = model(family.images[indices].float() / 255), family.labels[indices]
    log_p = out.logits.log_softmax(-1)
    smoothed = -(0.7 * log_p.gather(1, labels[:, None]).squeeze(1) + 0.3 * log_p.mean(-1))
    earlier = -out.earlier_logits.log_softmax(-1).gather(2, labels[:, None, None].expand(-1, 2, 1)).squeeze(2).mean(1)
    torch.testing.assert_close(batch.objective, smoothed + 0.25 * earlier)
    torch.testing.assert_close(batch.metrics["loss"], -log_p.gather(1, labels[:, None]).sum())
    family.settings = dataclasses.replace(settings, glimpse_loss=0.0)  # off: exactly that term goes
    torch.testing.assert_close(family.batch_loss(model, model, indices, step=0).objective, batch.objective - 0.25 * earlier)


def test_glimpse_loss_is_kept_on_resume(idx_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--steps", "1", "--glimpse-loss", "0.5", "--out", run)
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--steps", "2", "--glimpse-loss", "0.25")
    assert result.exit_code == 2
    assert "--glimpse-loss" in result.output and "0.5" in result.output
