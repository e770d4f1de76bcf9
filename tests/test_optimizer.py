"""Adam as train builds it: --beta2 and --window-lr reach the optimizer and are kept on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, invoke
from safetensors import safe_open
from safetensors.torch import load_file

from drawcli import kinds
from drawcli.config import ClassifierConfig
from drawcli.training.step import make_optimizer


def test_beta2_by_hand() -> None:
    """Two Adam steps on gradients 1 then 3 with beta2 0.5 (beta1 0): v2 = 0.5 (0.5 x 1) + 0.5 x 9 = 4.75,
    bias-corrected by 1 - 0.5^2; the second step is lr x 3 / sqrt(4.75 / 0.75)."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer(torch.nn.ParameterList([weight]), 0.1, 0.0, torch.device("cpu"), beta2=0.5)
    for grad in (1.0, 3.0):
        weight.grad = torch.tensor([grad])
        before = weight.detach().clone()
        optimizer.step()
    assert torch.allclose(before - weight.detach(), torch.tensor([0.1 * 3 / (4.75 / 0.75) ** 0.5]), atol=1e-6)


def test_train_beta2_reaches_adam_and_is_kept_on_resume(idx_dir: Path, tmp_path: Path) -> None:
    """After one step, Adam's moments are (1 - beta1) g and (1 - beta2) g^2: their ratio v / m^2 is 0.5 / 0.01 = 50."""
    run = tmp_path / "run"
    args = ["--data-dir", idx_dir, "--sample-every", "0", "--quiet"]
    result = invoke("train", *TINY_ARGS, *args, "--out", run, "--steps", "1", "--beta2", "0.5")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "run.json").read_text())["settings"]["beta2"] == 0.5
    slots = load_file(run / "resume.safetensors")
    m = torch.cat([v.flatten() for k, v in sorted(slots.items()) if k.endswith(".exp_avg")])
    v = torch.cat([v.flatten() for k, v in sorted(slots.items()) if k.endswith(".exp_avg_sq")])
    moving = m.abs() > 1e-4
    torch.testing.assert_close(v[moving] / m[moving].square(), torch.full_like(v[moving], 50.0), rtol=1e-3, atol=0)
    result = invoke("train", "--resume", run, "--steps", "2", "--beta2", "0.9")
    assert result.exit_code != 0 and "--beta2" in result.output
    assert invoke("train", "--resume", run, "--steps", "2", "--quiet").exit_code == 0


def test_window_lr_scales_the_window_layers_first_step() -> None:
    """Adam's first step moves each weight by lr x g / (|g| + eps), about lr: 0.01 for the LSTM,
    0.1 x 0.01 for the filterbank's window layer (reader.window) under window_lr 0.1."""
    torch.manual_seed(0)
    config = ClassifierConfig(height=8, width=8, glimpses=2, dec_size=8, read_size=3, classes=3)
    model = kinds.build(config)
    optimizer = make_optimizer(model, 0.01, 0.9, torch.device("cpu"), window_lr=0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model(torch.rand(4, 1, 8, 8)).loss(torch.tensor([0, 1, 2, 0])).sum().backward()
    optimizer.step()
    moved = {name: (p.detach() - before[name]).abs() for name, p in model.named_parameters()}
    grads = {name: p.grad.abs() for name, p in model.named_parameters()}
    for name, delta in moved.items():
        expected = (0.001 if name.startswith("reader.window.") else 0.01) * grads[name] / (grads[name] + 1e-8)
        torch.testing.assert_close(delta, expected, rtol=1e-3, atol=1e-7, msg=name)
    assert {"reader.window.weight", "reader.window.bias"} <= set(moved)


def _param_groups(run: Path) -> list[dict]:
    with safe_open(run / "resume.safetensors", "pt") as f:
        return json.loads(f.metadata()["param_groups"])


def test_train_window_lr_follows_the_schedule_and_resumes_exactly(idx_dir: Path, tmp_path: Path) -> None:
    """The window group's rate stays S x the rest's, under a cosine schedule too; a run resumed after
    step 2 ends in the same weights and Adam state as one run straight to step 4."""
    common = [*CLASSIFIER, "--data-dir", idx_dir, "--lr", "1e-2", "--window-lr", "0.25"]
    runs = {name: tmp_path / name for name in ("straight", "split", "cosine")}
    for name, extra in (("straight", ["--steps", "4"]), ("split", ["--steps", "2"]),
                        ("cosine", ["--steps", "4", "--lr-schedule", "cosine"])):  # fmt: skip
        result = invoke("train", *common, *extra, "--out", runs[name])
        assert result.exit_code == 0, result.output
    assert invoke("train", "--resume", runs["split"], "--steps", "4", "--quiet").exit_code == 0
    for file in ("checkpoint.safetensors", "resume.safetensors"):
        a, b = load_file(runs["straight"] / file), load_file(runs["split"] / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    assert [(g["lr"], g["lr_scale"]) for g in _param_groups(runs["split"])] == [(1e-2, 1.0), (2.5e-3, 0.25)]
    cosine = _param_groups(runs["cosine"])
    assert cosine[1]["lr"] == pytest.approx(0.25 * cosine[0]["lr"]) and 0 < cosine[0]["lr"] < 1e-2
    assert json.loads((runs["split"] / "run.json").read_text())["settings"]["window_lr"] == 0.25


def test_window_lr_is_refused_without_a_window_and_outside_its_range(idx_dir: Path, tmp_path: Path) -> None:
    sizeless = [a for a, before in zip(CLASSIFIER, ["", *CLASSIFIER]) if "--read-size" not in (a, before)]  # no-attention refuses one
    result = invoke("train", *sizeless, "--data-dir", idx_dir, "--steps", "1", "--reader", "no-attention",
                    "--window-lr", "0.5", "--out", tmp_path / "a")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "a").exists()  # refused before anything was written
    assert ("error: --window-lr 0.5 scales the learning rate of the layers that place attention windows, but no "
            "reader or writer of this model places one; leave it at 1") in result.output
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--steps", "1", "--window-lr", "0", "--out", tmp_path / "b")
    assert result.exit_code != 0
    assert "--window-lr 0.0 must be a factor above 0 (and at most 1000), e.g. 0.1 (1: the same rate as the rest)" in result.output
