"""The attention classifier of section 4.1: every reader, the loss and error by hand, a tiny run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, FailingBackward, invoke
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from drawcli import checkpoint, data, registry, render
from drawcli.classifier import AttentionClassifier, ClassifierOutput
from drawcli.config import DrawConfig
from drawcli.contract import Window
from drawcli.training.classify import error_report, predict

SMALL = dict(kind="classifier", channels=1, height=12, width=12, glimpses=3, enc_size=8, dec_size=8, read_size=3,
             classes=4)  # fmt: skip


@pytest.mark.parametrize("reader", [spec.name for spec in registry.find("reader")])
def test_every_reader_classifies(reader: str) -> None:
    """logits (B, classes); one window per glimpse exactly when the reader produces windows; gradients reach the reader."""
    torch.manual_seed(0)
    model = AttentionClassifier(DrawConfig(**SMALL, reader=reader))
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


@pytest.mark.parametrize("glimpse_hidden", [0, 6])
def test_a_fixed_glimpse_is_read_once_and_gives_the_step_by_step_result(monkeypatch: pytest.MonkeyPatch,
                                                                        glimpse_hidden: int) -> None:  # fmt: skip
    """A reader with fixed_glimpse (no-attention) is read once, not T times, and its LSTM input
    term reused: logits and gradients those of the glimpse-by-glimpse loop."""
    torch.manual_seed(0)
    model = AttentionClassifier(DrawConfig(**SMALL, reader="no-attention", glimpse_hidden=glimpse_hidden))
    assert model.reader.fixed_glimpse and not registry.build("reader", "filterbank", DrawConfig(**SMALL)).fixed_glimpse
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


def test_a_glimpse_layer_feeds_the_lstm_relu_units(idx_dir: Path, tmp_path: Path) -> None:
    """--glimpse-hidden 6: the LSTM reads relu(W r + b) (6 wide), checked on a hand-set layer;
    the size is in the checkpoint's config and a resume may not change it."""
    model = AttentionClassifier(DrawConfig(**SMALL, glimpse_hidden=6))
    assert model.lstm.weight_ih.shape == (4 * 8, 6) and model.parameter_counts()["glimpse"] == 9 * 6 + 6
    with torch.no_grad():
        model.glimpse[0].weight.copy_(torch.eye(6, 9))
        model.glimpse[0].bias.fill_(-0.5)
    r = torch.tensor([[0.0, 0.2, 0.7, 1.0, 2.0, -1.0, 5.0, 5.0, 5.0]])
    torch.testing.assert_close(model._features(r), torch.tensor([[0.0, 0.0, 0.2, 0.5, 1.5, 0.0]]))

    run = tmp_path / "run"
    result = invoke("train", *CLASSIFIER, "--glimpse-hidden", "6", "--data-dir", idx_dir, "--out", run, "--steps", "1")
    assert result.exit_code == 0, result.output
    assert checkpoint.read_info(run / "checkpoint.safetensors").config.glimpse_hidden == 6
    result = invoke("train", "--resume", run, "--glimpse-hidden", "7", "--steps", "2", "--quiet")
    assert result.exit_code == 2 and "--glimpse-hidden 7 conflicts with the run being resumed (glimpse_hidden = 6)" in result.output


def test_glimpse_convolutions_by_hand_and_their_width() -> None:
    """--glimpse-conv 1 on a 4x4 glimpse of ones: a 3x3 box filter (zero padding) gives 4 in the
    corners, 6 on the edges, 9 inside; a centre-tap conv with stride 2 keeps rows/columns 0 and 2;
    the LSTM reads those beside the glimpse itself."""
    model = AttentionClassifier(DrawConfig(**{**SMALL, "height": 4, "width": 4, "write_size": 2}, reader="no-attention", glimpse_conv=1))
    box, tap = model.conv[1], model.conv[3]
    with torch.no_grad():
        box.weight.fill_(1.0), box.bias.zero_(), tap.weight.zero_(), tap.bias.zero_()
        tap.weight[0, 0, 1, 1] = 1.0
    torch.testing.assert_close(model._features(torch.ones(2, 16)), torch.tensor([[1.0] * 16 + [4.0, 6.0, 6.0, 9.0]] * 2))
    assert model.lstm.weight_ih.shape == (4 * 8, 16 + 1 * 2 * 2)
    wide = AttentionClassifier(DrawConfig(**SMALL, glimpse_conv=5, glimpse_hidden=6))  # 3x3 glimpse -> 9 + 5 x 2 x 2, then 6
    assert wide.glimpse[0].weight.shape == (6, 9 + 5 * 2 * 2) and wide(torch.rand(3, 1, 12, 12)).logits.shape == (3, 4)


def test_glimpse_convolutions_need_an_image_shaped_glimpse() -> None:
    """A reader that does not say its glimpse is an image (the contract's default) is refused in one line."""

    from drawcli.classifier import glimpse_convolutions
    from drawcli.contract import Reader
    from drawcli.errors import ConfigError

    class FlatReader(Reader):
        out_size = 7

        def forward(self, x, x_hat, h_dec):  # noqa: ANN001, ANN202
            return x.flatten(1)[:, :7], None

    config = DrawConfig(**SMALL, reader="flat", glimpse_conv=2)
    with pytest.raises(ConfigError, match="reader 'flat' does not read an image-shaped glimpse, so --glimpse-conv cannot convolve it"):
        glimpse_convolutions(FlatReader(config), config)


def test_glimpse_convolutions_train_are_saved_and_may_not_change_on_resume(idx_dir: Path, tmp_path: Path) -> None:
    """--glimpse-conv 2 trains, is in the checkpoint's config, is rebuilt by evaluate, and a resume may not change it."""
    run = tmp_path / "run"
    result = invoke("train", *CLASSIFIER, "--glimpse-conv", "2", "--data-dir", idx_dir, "--out", run, "--steps", "1")
    assert result.exit_code == 0, result.output
    assert checkpoint.read_info(run / "checkpoint.safetensors").config.glimpse_conv == 2
    result = invoke("evaluate", run, "--data-dir", idx_dir, "--json")
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--glimpse-conv", "3", "--steps", "2", "--quiet")
    assert result.exit_code == 2 and "--glimpse-conv 3 conflicts with the run being resumed (glimpse_conv = 2)" in result.output


def test_a_resume_may_repeat_some_reader_options_but_not_change_one(idx_dir: Path, tmp_path: Path) -> None:
    """--reader-option given again on --resume is checked key by key against the run's options."""
    run = tmp_path / "run"
    result = invoke("train", *CLASSIFIER, "--reader-option", "centre=inside", "--reader-option", "init=cover-unscaled",
                    "--data-dir", idx_dir, "--out", run, "--steps", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--reader-option", "centre=inside", "--steps", "2", "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("train", "--resume", run, "--reader-option", "centre=free", "--steps", "3", "--quiet")
    assert result.exit_code == 2
    assert "--reader-option centre=free conflicts with the run being resumed (reader_options = " in result.output


def test_filterbank_reads_the_image_alone() -> None:
    """read_image is the first half of forward(x, x_hat): gamma F_y x F_x^T, without the error image."""
    torch.manual_seed(0)
    reader = registry.build("reader", "filterbank", DrawConfig(**SMALL))
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


@pytest.mark.parametrize("changes", [{}, {"reader": "no-attention", "glimpse_hidden": 6}, {"glimpse_conv": 2}])  # fixed glimpse, ReLU layer, convolutions
def test_the_compiled_classifier_matches_eager(changes: dict) -> None:
    """--compile compiles the whole glimpse loop: the same logits, windows' centres and gradients
    (through the labels' and --locate-loss's terms); evaluation and recording stay eager."""
    torch.manual_seed(0)
    model = AttentionClassifier(DrawConfig(**SMALL, **changes))
    x, labels, where = torch.rand(5, 1, 12, 12), torch.tensor([0, 1, 2, 3, 0]), torch.rand(5, 2) * 12

    def objective(out: ClassifierOutput) -> torch.Tensor:
        return out.loss(labels).sum() + (out.locate_loss(where).sum() if out.centres is not None else 0.0)

    eager = model(x)
    objective(eager).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.compile_glimpses()
    compiled = model(x)
    objective(compiled).backward()
    assert model.compile_failure is None
    torch.testing.assert_close(compiled.logits, eager.logits, rtol=1e-5, atol=1e-6)
    assert (compiled.centres is None) == (eager.centres is None) == (changes.get("reader") == "no-attention")
    if eager.centres is not None:
        torch.testing.assert_close(compiled.centres, eager.centres, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert model.eval().training_unit() == model._logits  # evaluation runs eagerly


def test_recording_windows_runs_the_eager_loop() -> None:
    """record=True (the glimpse GIF) never calls the compiled unit, which returns tensors alone (final and
    earlier logits, the windows' centres)."""
    model = AttentionClassifier(DrawConfig(**SMALL))
    calls = []
    model._compiled = lambda x: calls.append(x) or (torch.zeros(2, 4), torch.zeros(2, 2, 4), torch.zeros(2, 3, 2))
    out = model(torch.rand(2, 1, 12, 12), record=True)
    assert calls == [] and out.read_windows is not None and len(out.read_windows) == 3
    model(torch.rand(2, 1, 12, 12))
    assert len(calls) == 1


def test_a_failing_compiler_leaves_the_classifier_eager(idx_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """--compile on with a compiler that fails: one warning, the eager run's weights bit for bit, compiled False."""
    def broken(self: AttentionClassifier, mode: str = "default") -> None:
        def compiled(x: torch.Tensor) -> None:
            raise RuntimeError("inductor: no compiler\nmore detail")
        self._compiled = compiled

    monkeypatch.setattr(AttentionClassifier, "compile_glimpses", broken)
    runs = {mode: tmp_path / mode for mode in ("on", "off")}
    results = {mode: invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", run, "--steps", "2", "--compile", mode)
               for mode, run in runs.items()}  # fmt: skip
    assert all(result.exit_code == 0 for result in results.values()), results["on"].output
    header = next(line for line in results["on"].stderr.splitlines() if line.startswith("training for 2 steps"))
    assert header.endswith("; glimpse loop compiled (--compile on), float32 LSTM matmuls")
    warnings = [line for line in results["on"].stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: torch.compile failed, so eager: RuntimeError: inductor: no compiler; training continues"]
    on, off = (load_file(run / "checkpoint.safetensors") for run in runs.values())
    assert all(torch.equal(on[k], off[k]) for k in off)
    assert checkpoint.read_info(runs["on"] / "checkpoint.safetensors").training["compiled"] is False


def test_a_compiler_failure_in_the_classifiers_backward_redoes_the_step_eagerly() -> None:
    """train_step redoes the step without the compiled loop: the eager step's weights, the failure recorded."""
    from drawcli.training.family import BatchLoss
    from drawcli.training.step import train_step

    torch.manual_seed(0)
    models = [AttentionClassifier(DrawConfig(**SMALL)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    def failing(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        logits, earlier, centres = models[1]._logits(x)
        return FailingBackward.apply(logits, "BackendCompilerFailed: backward boom"), earlier, centres

    models[1]._compiled = failing
    x, labels = torch.rand(4, 1, 12, 12), torch.tensor([0, 1, 2, 3])
    for model in models:
        optimizer = torch.optim.Adam(model.parameters())
        train_step(model, optimizer, lambda: BatchLoss(model(x).loss(labels), {}), clip=10.0)  # noqa: B023
    assert models[1].compile_failure == "RuntimeError: BackendCompilerFailed: backward boom"
    assert models[1]._compiled is None
    eager, redone = (model.state_dict() for model in models)
    assert all(torch.equal(eager[k], redone[k]) for k in eager)


def test_compile_auto_leaves_a_long_glimpse_loop_eager(idx_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The loop compiles unrolled: past 16 glimpses --compile auto stays eager even for a long run."""
    from drawcli.training import execution

    monkeypatch.setattr(execution, "COMPILE_PAYS_AT", 1)  # every run "long enough"
    args = ["--model", "classifier", "--glimpses", "17", "--rnn-size", "8", "--read-size", "3", "--batch-size", "16",
            "--threads", "1", "--quiet", "--steps", "1", "--compile", "auto"]  # fmt: skip
    result = invoke("train", *args, "--data-dir", idx_dir, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stderr.splitlines() if line.startswith("training for 1 steps"))
    assert header.endswith("; glimpse loop eager (auto: 17 glimpses > 16, too many to compile as one loop), float32 LSTM matmuls")


def test_redraw_gives_each_epoch_new_images_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 cluttered images, batch 16: 3 steps an epoch; a run split mid-epoch 1 must redraw epoch 1 identically."""
    from drawcli_synthetic import ClutteredMNIST
    from helpers import write_idx_dataset

    monkeypatch.setattr(ClutteredMNIST, "sizes", {"train": 40, "test": 10})
    write_idx_dataset(tmp_path / "mnist", n_train=30, n_test=20)
    common = [*CLASSIFIER, "--dataset", "cluttered-mnist", "--data-dir", tmp_path / "mnist"]
    runs = {name: tmp_path / name for name in ("straight", "split", "fixed")}
    for name, extra in (("straight", ["--redraw", "--steps", "5"]), ("split", ["--redraw", "--steps", "4"]),
                        ("fixed", ["--steps", "5"])):  # fmt: skip
        result = invoke("train", *common, "--out", runs[name], *extra)
        assert result.exit_code == 0, result.output
    assert invoke("train", "--resume", runs["split"], "--steps", "5", "--quiet").exit_code == 0
    weights = {name: load_file(run / "checkpoint.safetensors") for name, run in runs.items()}
    assert all(torch.equal(weights["straight"][k], weights["split"][k]) for k in weights["straight"])
    assert not all(torch.equal(weights["straight"][k], weights["fixed"][k]) for k in weights["straight"])
    assert json.loads((runs["straight"] / "run.json").read_text())["settings"]["redraw"] is True


def test_redraw_time_counts_as_training_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Composing epoch 1's images (made to take 2 s here; the 4 steps take about 0.1 s) is logged training time."""
    import time

    from drawcli_synthetic import ClutteredMNIST
    from helpers import write_idx_dataset

    compose = ClutteredMNIST.load_labelled_epoch

    def slow(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(2.0)
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(ClutteredMNIST, "sizes", {"train": 40, "test": 10})
    monkeypatch.setattr(ClutteredMNIST, "load_labelled_epoch", slow)
    write_idx_dataset(tmp_path / "mnist", n_train=30, n_test=20)
    result = invoke("train", *CLASSIFIER, "--dataset", "cluttered-mnist", "--data-dir", tmp_path / "mnist",
                    "--out", tmp_path / "run", "--redraw", "--steps", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["wall_time_s"] for r in records if "wall_time_s" in r) >= 2.0


def test_redraw_is_refused_where_it_cannot_apply(idx_dir: Path, tmp_path: Path) -> None:
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", tmp_path / "a", "--steps", "1", "--redraw")
    assert result.exit_code == 2
    assert "error: the data set 'mnist' draws its training images once, so --redraw does not apply" in result.stderr
    result = invoke("train", "--glimpses", "2", "--rnn-size", "8", "--data-dir", idx_dir, "--out", tmp_path / "b",
                    "--steps", "1", "--redraw", "--quiet")  # fmt: skip
    assert result.exit_code == 2
    assert "error: --redraw is for the classifier (--model classifier): DRAW trains on fixed images" in result.stderr


def straight_and_resumed(common: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Train `common` straight, and again stopped after step 2 (as by Ctrl-C) then resumed: the two run folders."""
    import signal

    from drawcli.training import loop

    class StopAtSecondStep(loop.StopFlag):
        reads = 0

        @property
        def signal(self) -> int | None:
            StopAtSecondStep.reads += 1
            return signal.SIGINT if StopAtSecondStep.reads == 2 else None

        @signal.setter
        def signal(self, value: int | None) -> None:
            pass

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert invoke("train", *common, "--out", straight).exit_code == 0
    with monkeypatch.context() as patch:
        patch.setattr(loop, "StopFlag", StopAtSecondStep)
        result = invoke("train", *common, "--out", split)
    assert result.exit_code == 130 and "interrupted at step 2" in result.stderr
    assert invoke("train", "--resume", split, "--quiet").exit_code == 0
    return straight, split


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(a / "checkpoint.safetensors"), load_file(b / "checkpoint.safetensors")
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_cosine_schedule_steps_the_learning_rate_and_resumes_exactly(idx_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A 4-step cosine run stopped after step 2 (as by Ctrl-C) and resumed ends bit for bit as one straight run."""
    common = [*CLASSIFIER, "--data-dir", idx_dir, "--lr-schedule", "cosine", "--lr", "1e-2", "--steps", "4"]
    straight, split = straight_and_resumed(common, tmp_path, monkeypatch)
    assert same_weights(straight, split)
    with safe_open(str(straight / "resume.safetensors"), "pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    assert groups[0]["lr"] == pytest.approx(1e-2 * (1 + math.cos(math.pi * 3 / 4)) / 2)  # step 3 of 0..3


def test_window_jitter_changes_training_and_resumes_exactly(idx_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The filterbank's jitter draws from torch's generator: a resumed run repeats its noise bit for
    bit, and the noise does change the weights against the same run without it."""
    common = [*CLASSIFIER, "--data-dir", idx_dir, "--lr", "1e-2", "--steps", "4"]
    straight, split = straight_and_resumed([*common, "--reader-option", "jitter=0.5"], tmp_path, monkeypatch)
    assert same_weights(straight, split)
    assert invoke("train", *common, "--out", tmp_path / "plain").exit_code == 0
    assert not same_weights(straight, tmp_path / "plain")


def test_preset_flags_read_as_a_command_line() -> None:
    from drawcli import presets

    assert presets.command_line({"reader_option": ["init=cover", "sigma=2"], "redraw": True, "binarize": False,
                                 "lr": 3e-4}) == "--reader-option init=cover --reader-option sigma=2 --redraw --no-binarize --lr 0.0003"  # fmt: skip


def _tiny_preset_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> dict:
    """One step of `train --preset paper-cluttered-mnist` shrunk to a tiny model and data set -> its run.json."""
    from drawcli_synthetic import ClutteredMNIST
    from helpers import write_idx_dataset

    monkeypatch.setattr(ClutteredMNIST, "sizes", {"train": 16, "test": 8})
    write_idx_dataset(tmp_path / "mnist", n_train=20, n_test=10)
    result = invoke("train", "--preset", "paper-cluttered-mnist", "--rnn-size", "8", "--glimpses", "2", "--read-size", "3",
                    *extra, "--data-dir", tmp_path / "mnist", "--out", tmp_path / "run", "--steps", "1", "--threads", "1",
                    "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "run" / "run.json").read_text())


def test_cluttered_preset_reaches_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured setting (docs/reproducing.md): the window at gain 1 with its centre on the
    image and Adam 6e-4, through `train --preset`."""
    from drawcli import presets

    assert presets.command_line(presets.PRESETS["paper-cluttered-mnist"].options) == (
        "--model classifier --dataset cluttered-mnist --reader filterbank --glimpses 8 --rnn-size 256 --read-size 12 "
        "--reader-option init=cover-unscaled --reader-option centre=inside --lr 0.0006 --redraw --lr-schedule cosine "
        "--epochs 75")  # fmt: skip
    run = _tiny_preset_run(tmp_path, monkeypatch)
    assert run["config"]["reader_options"] == {"init": "cover-unscaled", "centre": "inside"}
    assert run["settings"]["lr"] == 6e-4


@pytest.mark.parametrize(("given", "expected"), [(["--reader-option", "init=cover"], {"init": "cover", "centre": "inside"}),
                                                 (["--reader-option", "sigma=2"],
                                                  {"init": "cover-unscaled", "centre": "inside", "sigma": 2}),
                                                 (["--reader-option", "centre=free"], {"init": "cover-unscaled", "centre": "free"}),
                                                 (["--reader", "attn"], {"init": "cover-unscaled", "centre": "inside"}),  # an alias
                                                 (["--reader", "no-attention"], {})])  # fmt: skip
def test_reader_options_merge_with_the_presets_for_the_same_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          given: list[str], expected: dict) -> None:  # fmt: skip
    assert _tiny_preset_run(tmp_path, monkeypatch, *given)["config"]["reader_options"] == expected


def test_the_bf16_cross_entropy_benchmark_counts_the_zero_gradients_by_hand() -> None:
    """benchmarks/bf16_cross_entropy.py: margin 6.5 right (no gradient in bf16), margin 3 right (a
    gradient), one wrong: half the right answers had none; float32 gives the first -e^-6.5 / (1 + e^-6.5)."""
    from helpers import load_benchmark

    script = load_benchmark("bf16_cross_entropy")
    logits, labels = torch.tensor([[6.5, 0.0], [3.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0, 0])
    low, high = script.logit_gradients(logits, labels)
    assert low[0, 0].item() == 0.0 and high[0, 0].item() == pytest.approx(-1 / (1 + math.exp(6.5)), rel=1e-3)
    assert low[1, 0].item() != 0.0
    out = script.report(logits, labels)
    assert out["right"] == pytest.approx(2 / 3) and out["right_with_zero_gradient"] == 0.5
