"""The attention classifier of section 4.1: every reader, the loss and error by hand, a tiny run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, invoke
from helpers import SMALL_CLASSIFIER as SMALL
from PIL import Image
from safetensors.torch import load_file

from drawcli import checkpoint, data, registry, render
from drawcli.accuracy import error_report, predict
from drawcli.classifier import AttentionClassifier, ClassifierOutput
from drawcli.config import ClassifierConfig
from drawcli.contract import Window


@pytest.mark.parametrize("reader", [spec.name for spec in registry.find("reader")])
def test_every_reader_classifies(reader: str) -> None:
    """logits (B, classes); one window per glimpse exactly when the reader produces windows; gradients reach the reader."""
    torch.manual_seed(0)
    model = AttentionClassifier(ClassifierConfig(**SMALL, reader=reader))
    x = torch.rand(5, 1, 12, 12)
    r, _ = model.reader.read_image(x, torch.zeros(5, 8))
    assert r.shape == (5, model.reader.image_out_size)
    out = model(x, record=True)
    assert out.logits.shape == (5, 4) and torch.isfinite(out.logits).all()
    assert (out.read_windows is not None) == model.reader.produces_windows
    if out.read_windows is not None:
        assert len(out.read_windows) == 3
    out.loss(torch.tensor([0, 1, 2, 3, 0])).sum().backward()
    assert all(p.grad is not None for p in model.lstm.parameters())


def test_a_fixed_glimpse_is_read_once_and_gives_the_step_by_step_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader with fixed_glimpse (no-attention) is read once, not T times, and its LSTM input
    term reused: logits and gradients those of the glimpse-by-glimpse loop."""
    torch.manual_seed(0)
    model = AttentionClassifier(ClassifierConfig(**SMALL, reader="no-attention"))
    assert model.reader.fixed_glimpse and not registry.build("reader", "filterbank", ClassifierConfig(**SMALL)).fixed_glimpse
    reads = []
    read_image = model.reader.read_image
    monkeypatch.setattr(model.reader, "read_image", lambda x, h: reads.append(1) or read_image(x, h))
    x, labels = torch.rand(5, 1, 12, 12), torch.tensor([0, 1, 2, 3, 0])
    results = {}
    for fixed in (True, False):
        model.reader.fixed_glimpse = fixed
        model.zero_grad()
        reads.clear()
        out = model(x)
        out.loss(labels).sum().backward()
        results[fixed] = (len(reads), out.logits.detach(), [p.grad.clone() for p in model.parameters()])
    assert results[True][0] == 1 and results[False][0] == SMALL["glimpses"]
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-6, atol=1e-7)
    for fast, slow in zip(results[True][2], results[False][2]):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-7)


def test_a_resume_may_repeat_some_reader_options_but_not_change_one(idx_dir: Path, tmp_path: Path) -> None:
    """--reader-option given again on --resume is checked key by key against the run's options; a DRAW
    option is refused by name."""
    run = tmp_path / "run"
    result = invoke("train", *CLASSIFIER, "--reader-option", "centre=inside", "--reader-option", "init=cover-unscaled",
                    "--data-dir", idx_dir, "--out", run, "--steps", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--z-size", "4", "--steps", "2", "--quiet")
    assert result.exit_code == 2 and ("--z-size is for DRAW (--model draw): the classifier has no latents, and the run "
                                      "being resumed is the attention classifier") in result.output  # fmt: skip
    result = invoke("train", "--resume", run, "--rnn-size", "128", "--steps", "2", "--quiet")
    assert result.exit_code == 2 and "--rnn-size 128 conflicts with the run being resumed (dec_size = 8)" in result.output
    result = invoke("train", "--resume", run, "--reader-option", "centre=inside", "--steps", "2", "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--reader-option", "centre=free", "--steps", "3", "--quiet")
    assert result.exit_code == 2
    assert "--reader-option centre=free conflicts with the run being resumed (reader_options = " in result.output


def test_filterbank_reads_the_image_alone() -> None:
    """read_image is the first half of forward(x, x_hat): gamma F_y x F_x^T, without the error image."""
    torch.manual_seed(0)
    reader = registry.build("reader", "filterbank", ClassifierConfig(**SMALL))
    x, x_hat, h = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12), torch.randn(2, 8)
    both, _ = reader(x, x_hat, h)
    alone, _ = reader.read_image(x, h)
    assert reader.image_out_size == 9
    torch.testing.assert_close(alone, both[:, :9], rtol=0, atol=0)


def test_loss_and_error_by_hand() -> None:
    """logits (0, ln 3) for label 1: cross-entropy -ln(3/4); argmax ties nothing away."""
    out = ClassifierOutput(logits=torch.tensor([[0.0, math.log(3.0)], [2.0, 0.0], [0.0, 1.0]]))
    labels = torch.tensor([1, 1, 1])
    assert out.loss(labels)[0].item() == pytest.approx(-math.log(0.75))
    assert out.loss(labels)[1].item() == pytest.approx(math.log(1 + math.exp(2.0)))
    assert out.wrong(labels).tolist() == [0.0, 1.0, 0.0]


def test_the_loss_of_bf16_logits_is_computed_in_float32_unless_asked_not_to() -> None:
    """Under --amp bf16 the logits are bf16; the reported cross-entropy of a confident right answer,
    ln(1 + e^-6.5) = 0.0015, is float32's; in bf16, 1 + e^-6.5 rounds to 1, so loss and gradient are 0."""
    logits = torch.tensor([[6.5, 0.0], [0.0, 6.5]], dtype=torch.bfloat16)
    loss = ClassifierOutput(logits=logits).loss(torch.tensor([0, 0]))
    assert loss.dtype == torch.float32
    assert loss[0].item() == pytest.approx(math.log1p(math.exp(-6.5)), rel=1e-3)  # bf16: exactly 0
    assert loss[1].item() == pytest.approx(6.5 + math.log1p(math.exp(-6.5)), rel=1e-6)
    rounded = ClassifierOutput(logits=logits).loss(torch.tensor([0, 0]), exact=False)  # the training objective's
    assert rounded.dtype == torch.bfloat16 and rounded[0].item() == 0.0


def test_error_report_by_hand() -> None:
    """4 images of classes a, b: one b taken for a. Error 25%, SE sqrt(.25 .75 / 4) = 21.65%."""
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    report = error_report(logits, torch.tensor([0, 0, 1, 1]), ("a", "b"))
    assert report["error"] == pytest.approx(25.0)
    assert report["error_se"] == pytest.approx(100 * math.sqrt(0.25 * 0.75 / 4))
    assert report["confusion"] == [[2, 0], [1, 1]]
    assert report["per_class"] == {"a": {"images": 2, "error": 0.0}, "b": {"images": 2, "error": 50.0}}


def test_tiny_classifier_trains_resumes_exactly_and_evaluates(idx_dir: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    for run, steps in ((straight, "4"), (split, "2")):
        result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", run, "--steps", steps)
        assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", split, "--steps", "4", "--quiet")
    assert result.exit_code == 0, result.output
    a, b = load_file(straight / "checkpoint.safetensors"), load_file(split / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (straight / "samples").exists()  # a classifier draws no samples
    epoch = json.loads((straight / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train_loss", "train_error", "test_loss", "test_error"} <= set(epoch)

    result = invoke("evaluate", straight, "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 20 and sum(map(sum, report["confusion"])) == 20
    assert report["classes"] == [str(d) for d in range(10)]
    wrong = 20 - sum(report["confusion"][k][k] for k in range(10))
    assert report["error"] == pytest.approx(100 * wrong / 20) == pytest.approx(epoch["test_error"])
    inspect = json.loads(invoke("inspect", straight, "--json").stdout)
    assert inspect["config"]["kind"] == "classifier" and inspect["config"]["classes"] == 10
    assert list(inspect["components"]) == ["reader"]
    check_ensemble(straight, tmp_path, idx_dir)


def check_ensemble(run: Path, tmp_path: Path, idx_dir: Path) -> None:
    """evaluate --ensemble: the error of the mean of the members' softmaxes, computed here by hand."""
    other = tmp_path / "other"
    assert invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", other, "--steps", "1", "--seed", "5").exit_code == 0
    result = invoke("evaluate", run, "--ensemble", other, "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ensemble"] == [str(run / "checkpoint.safetensors"), str(other / "checkpoint.safetensors")]
    test = data.load_labelled(data.open_dataset("mnist"), "test", idx_dir, (1, 28, 28))
    probs = [predict(checkpoint.load_model(r)[0], test.images, torch.device("cpu")).softmax(-1) for r in (run, other)]
    mean = (probs[0] + probs[1]) / 2
    assert report["error"] == pytest.approx(100 * (mean.argmax(-1) != test.labels).sum().item() / 20)
    assert report["loss"] == pytest.approx(-mean[torch.arange(20), test.labels].log().mean().item(), rel=1e-5)
    draw = tmp_path / "draw"
    assert invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", draw, "--steps", "1", "--quiet", "--device", "cpu").exit_code == 0
    for a, b, message in ((draw, run, "a DRAW model's bound has no ensemble"),
                          (run, draw, "is not a classifier of the classes 0, 1")):  # fmt: skip
        result = invoke("evaluate", a, "--ensemble", b)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_sample_and_reconstruct_refuse_a_classifier(idx_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", run, "--steps", "1").exit_code == 0
    for command in ("sample", "reconstruct"):
        result = invoke(command, run, "--gif", tmp_path / "x.gif")
        assert result.exit_code == 1
        assert f"holds a classifier model, which does not {command}" in result.stderr and "Traceback" not in result.output
    result = invoke("glimpses", run, "--gif", tmp_path / "g.gif", "--n", "3", "--threads", "1")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "g.gif") as gif:
        assert gif.n_frames == 2  # one per glimpse


def test_glimpse_frame_draws_each_window_at_its_position() -> None:
    """Glimpse 1's window for image 0 (gx 4, gy 4, delta 1, N 3): the green outline spans pixels 2..5 (edges)."""
    windows = [Window(gx=torch.tensor([2.0, 4.0]), gy=torch.tensor([2.0, 4.0]), delta=torch.ones(2),
                      sigma2=torch.ones(2), gamma=torch.ones(2), size=3)] * 2  # fmt: skip
    windows[1] = Window(gx=torch.tensor([4.0, 2.0]), gy=torch.tensor([4.0, 2.0]), delta=torch.ones(2),
                        sigma2=torch.ones(2), gamma=torch.ones(2), size=3)  # fmt: skip
    frames = render.glimpse_frames(torch.zeros(2, 1, 8, 8), windows, [("1", "1"), ("2", "7")], scale=2)
    assert len(frames) == 2
    pad = render.GRID_PADDING
    cell = frames[1][pad : pad + 16, pad : pad + 16]
    green = {tuple(p) for p in np.argwhere((cell == render.READ_COLOUR).all(axis=-1)).tolist()}
    outline = {(y, x) for y in range(4, 11) for x in range(4, 11) if y in (4, 10) or x in (4, 10)}
    assert green == outline
    right = frames[1][pad + 16 : pad + 16 + render.CAPTION_HEIGHT, pad : pad + 16].astype(int)
    wrong = frames[1][pad + 16 : pad + 16 + render.CAPTION_HEIGHT, 2 * pad + 16 : 2 * pad + 32].astype(int)
    assert (right[..., 1] > right[..., 0] + 100).any() and not (right[..., 0] > right[..., 1] + 100).any()  # green
    assert (wrong[..., 0] > wrong[..., 1] + 100).any() and not (wrong[..., 1] > wrong[..., 0] + 100).any()  # red
