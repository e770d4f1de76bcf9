"""Adam as train builds it: --beta2 reaches the optimizer and is kept on resume."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers import TINY_ARGS, invoke
from safetensors.torch import load_file

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
