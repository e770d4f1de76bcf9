"""The learned initial canvas c_0: its start at the data's mean logit, its place in the bound, its gradient, its checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import TINY_ARGS, invoke

from drawcli import checkpoint
from drawcli.config import DrawConfig
from drawcli.errors import ConfigError
from drawcli.model import DRAW


def test_a_learned_canvas_starts_at_the_mean_logit() -> None:
    model = DRAW(DrawConfig(height=2, width=2, glimpses=1, enc_size=4, dec_size=4, z_size=2, read_size=1,
                            write_size=1, canvas="learned"))  # fmt: skip
    images = torch.tensor([[[[0, 255], [51, 0]]], [[[0, 255], [153, 255]]]], dtype=torch.uint8)  # (2, 1, 2, 2)
    model.init_canvas(images)
    # pixel means 0, 1, 0.4, 0.5: the extremes clamped to 1e-3 and 1 - 1e-3
    expected = [[math.log(1e-3 / (1 - 1e-3)), math.log((1 - 1e-3) / 1e-3)], [math.log(0.4 / 0.6), 0.0]]
    torch.testing.assert_close(model.canvas0[0], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_the_canvas_sums_from_c0_and_c0_learns(tiny_config) -> None:
    """c_T = c_0 + the writes (eq. 8): a zero c_0 is the zero-canvas model exactly; from the prior
    (where the writes do not depend on the canvas) c_0 = 1.5 moves every canvas by 1.5 logits."""
    torch.manual_seed(0)
    plain = DRAW(tiny_config(glimpses=2))
    learned = DRAW(tiny_config(glimpses=2, canvas="learned"))
    learned.load_state_dict({**plain.state_dict(), "canvas0": torch.zeros(plain.config.image_shape)})
    x = (torch.rand(3, *plain.config.image_shape, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    noise = plain.noise(3)
    assert torch.equal(learned(x, noise=noise).loss, plain(x, noise=noise).loss)
    with torch.no_grad():
        learned.canvas0.fill_(1.5)
    by_hand = torch.sigmoid(torch.logit(plain.generate(3, noise=noise).canvases.double()) + 1.5)
    torch.testing.assert_close(learned.generate(3, noise=noise).canvases.double(), by_hand, rtol=1e-4, atol=1e-5)
    learned(x, noise=noise).loss.sum().backward()
    assert learned.canvas0.grad is not None and learned.canvas0.grad.abs().sum() > 0


def test_unknown_canvas_start_is_refused() -> None:
    with pytest.raises(ConfigError, match="^unknown canvas start 'noise'; expected one of zero, learned$"):
        DrawConfig(canvas="noise")


def test_train_learned_canvas_round_trips_and_resume_refuses_a_change(idx_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", *TINY_ARGS, "--data-dir", idx_dir, "--sample-every", "0", "--quiet"]
    assert invoke(*args, "--out", run, "--steps", "2", "--canvas", "learned").exit_code == 0
    model, info = checkpoint.load_model(run)
    assert info.config.canvas == "learned" and model.canvas0.shape == (1, 28, 28)
    result = invoke("train", "--resume", run, "--steps", "3", "--canvas", "zero")
    assert result.exit_code == 2
    assert "--canvas zero conflicts with the run being resumed (canvas = learned)" in result.stderr
    assert invoke("train", "--resume", run, "--steps", "3", "--quiet").exit_code == 0
    assert invoke("sample", run, "--gif", tmp_path / "s.gif", "--n", "4").exit_code == 0
