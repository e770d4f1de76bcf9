"""The filterbank's window options beyond the paper's: sigma_floor, jitter, a hidden layer, and
the window's precision under bf16 autocast."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import drawcli_filterbank as fb
from drawcli import checkpoint
from drawcli.classifier import AttentionClassifier
from drawcli.config import MAX_HIDDEN, DrawConfig
from drawcli.contract import Window

F64 = torch.float64


def test_a_sigma_floor_keeps_sigma_at_a_share_of_the_stride() -> None:
    """sigma_floor=0.5 on a 9-wide image, N = 3 (delta = 4 exp(log delta~)): exp(log sigma^2) = 0.25
    under (0.5 * 4)^2 = 4 gives 4; exp(1.5) = 4.48 above it stays; at delta 8 the floor is 16.
    The gradient of a floored sigma goes to the stride, of a free one to log sigma^2."""
    raw = torch.tensor([[0.0, 0.0, math.log(0.25), 0.0, 0.0], [0.0, 0.0, 1.5, 0.0, 0.0],
                        [0.0, 0.0, 1.5, math.log(2.0), 0.0]], dtype=F64, requires_grad=True)  # fmt: skip
    window = fb.decode_window(raw, height=9, width=9, size=3, sigma_floor=0.5)
    torch.testing.assert_close(window.delta, torch.tensor([4.0, 4.0, 8.0], dtype=F64))
    torch.testing.assert_close(window.sigma2, torch.tensor([4.0, math.exp(1.5), 16.0], dtype=F64))
    window.sigma2.sum().backward()
    assert raw.grad[0, 2] == 0 and raw.grad[0, 3] == pytest.approx(2 * 0.25 * 16.0)  # d(delta^2/4)/d log delta~ = delta^2/2
    assert raw.grad[1, 2] == pytest.approx(math.exp(1.5)) and raw.grad[1, 3] == 0
    off = fb.decode_window(raw.detach(), height=9, width=9, size=3)
    torch.testing.assert_close(off.sigma2, torch.exp(raw.detach()[:, 2]))
    reader = fb.FilterbankReader(DrawConfig(height=9, width=9, read_size=3), sigma_floor=1)
    assert reader.sigma_floor == 1.0
    for bad in (-0.1, 5, "0.5", True):
        with pytest.raises(ValueError, match="sigma_floor must be a number of strides from 0 \\(off\\) to 4"):
            fb.FilterbankWriter(DrawConfig(), sigma_floor=bad)


def test_a_bf16_autocast_places_the_read_window_in_float32() -> None:
    """Under the classifier's bf16 autocast the window and filters are float32 and equal, bit for
    bit, to the plain float32 ones (bf16 would put a centre near 77 on a multiple of 0.5); only
    the patch products round, so the glimpse stays within bf16's relative error of float32's."""
    torch.manual_seed(0)
    reader = fb.FilterbankReader(DrawConfig(height=100, width=100, read_size=12), init="cover-unscaled")
    with torch.no_grad():
        reader.window.bias.add_(torch.tensor([0.537, -0.2, 0.0, 0.0, 0.0]))
        reader.window.weight.mul_(0.01)  # h moves the window a little: centres x near 77.6
    x, h = torch.rand(3, 1, 100, 100), torch.randn(3, 256)

    def place(h: torch.Tensor) -> tuple[Window, torch.Tensor, torch.Tensor]:
        return fb.place_window(reader.window, h, 100, 100, 12, reader.centre)

    plain_window, plain_fx, plain_fy = place(h)
    plain_glimpse, _ = reader.read_image(x, h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        window, fx, fy = place(h)
        glimpse, read_window = reader.read_image(x, h)
    assert window.gx.dtype == fx.dtype == fy.dtype == read_window.gx.dtype == torch.float32
    assert torch.equal(window.gx, plain_window.gx) and torch.equal(read_window.gy, plain_window.gy)
    assert torch.equal(fx, plain_fx) and torch.equal(fy, plain_fy)
    assert 70 < plain_window.gx[0].item() < 80 and plain_window.gx[0].item() * 2 % 1 != 0
    assert not torch.equal(glimpse, plain_glimpse)  # the products did run in bf16
    torch.testing.assert_close(glimpse.float(), plain_glimpse, rtol=0.02, atol=0.02)


def test_jitter_moves_the_centre_by_noise_of_its_stride_in_training_only() -> None:
    """jitter=0.5: centres move by 0.5 * delta * N(0, 1) per axis and image, drawn from torch's
    RNG (so a resumed run repeats them); eval mode and jitter=0 place the window exactly."""
    config = DrawConfig(height=100, width=100, read_size=12, channels=1)
    reader = fb.FilterbankReader(config, jitter=0.5)
    x, h = torch.rand(4000, 1, 100, 100), torch.zeros(4000, config.dec_size)
    reader.eval()
    _, exact = reader.read_image(x[:2], h[:2])
    reader.train()
    torch.manual_seed(3)
    _, noisy = reader.read_image(x, h)
    torch.manual_seed(3)
    expected = 0.5 * exact.delta[0] * torch.randn(4000)
    torch.testing.assert_close(noisy.gx, exact.gx[0] + expected)
    moved = torch.cat([noisy.gx - exact.gx[0], noisy.gy - exact.gy[0]]) / exact.delta[0]
    assert moved.std().item() == pytest.approx(0.5, rel=0.03)
    torch.testing.assert_close(noisy.delta, exact.delta[:1].expand(4000))  # only the centre moves
    reader.eval()
    _, again = reader.read_image(x[:2], h[:2])
    torch.testing.assert_close(again.gx, exact.gx)
    with pytest.raises(ValueError, match="jitter must be a number of strides from 0 \\(off\\) to 4"):
        fb.FilterbankReader(config, jitter=-1)


def test_jitter_reaches_the_window_under_bf16_autocast_and_is_refused_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --amp bf16 the window is placed in float32 by a second call, which must pass the noise on;
    under torchrun each process would draw the same noise for its own rows, so jitter is refused there."""
    config = DrawConfig(height=100, width=100, read_size=12, channels=1)
    reader = fb.FilterbankReader(config, jitter=0.5).train()
    x, h = torch.rand(8, 1, 100, 100), torch.zeros(8, config.dec_size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, window = reader.read_image(x, h)
    assert window.gx.dtype == torch.float32 and window.gx.std() > 0.5  # equal centres without the noise
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *args: 2)
    with pytest.raises(ValueError, match="^jitter draws its noise in each process, so it is not available under torchrun$"):
        fb.FilterbankReader(config, jitter=0.5)
    assert fb.FilterbankWriter(config).jitter == 0.0  # without jitter, torchrun is fine


def test_jitter_in_a_compiled_glimpse_loop_resumes_bit_for_bit(idx_dir: Path, tmp_path: Path) -> None:
    """Compiled, the noise is drawn by the compiled graph, seeded from torch's generator, so a run
    stopped after 3 steps and resumed ends with the weights of one run of 6 steps; without the
    noise (jitter=0) the weights differ, so the compiled graph does draw it."""
    from helpers import CLASSIFIER, invoke
    from safetensors.torch import load_file

    common = [*CLASSIFIER, "--data-dir", idx_dir, "--compile", "on"]
    for name, steps, jitter in (("straight", "6", "0.5"), ("split", "3", "0.5"), ("exact", "6", "0")):
        result = invoke("train", *common, "--reader-option", f"jitter={jitter}", "--steps", steps, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    assert invoke("train", "--resume", tmp_path / "split", "--steps", "6", "--quiet").exit_code == 0
    straight, split, exact = (load_file(tmp_path / name / "checkpoint.safetensors") for name in ("straight", "split", "exact"))
    assert all(torch.equal(straight[k], split[k]) for k in straight)
    assert not torch.equal(straight["reader.window.weight"], exact["reader.window.weight"])
    assert checkpoint.read_info(tmp_path / "split").training["compiled"] is True  # not an eager fallback


def test_a_hidden_window_layer_places_the_window_from_relu_units_of_the_state() -> None:
    """hidden=2: raw window = W2 relu(W1 h + b1) + b2 (a hand computation), with b2 the same
    starting window as the paper's linear layer; both layers are the window's parameters (the
    ones --window-lr scales); hidden=0 is the paper's one linear layer."""
    config = DrawConfig(height=9, width=9, read_size=3, dec_size=3)
    reader = fb.FilterbankReader(config, init="cover-unscaled", hidden=2).double()
    linear = fb.FilterbankReader(config, init="cover-unscaled")
    assert torch.equal(reader.window[2].bias.float(), linear.window.bias)  # the same starting window
    with torch.no_grad():
        reader.window[0].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.5, 2.0]]))
        reader.window[0].bias.copy_(torch.tensor([0.0, -1.0]))
        reader.window[2].weight.copy_(torch.tensor([[0.1, 0.2], [0.0, -0.3], [0.0, 0.0], [0.0, 0.0], [0.5, 0.0]]))
    h = torch.tensor([[1.0, 0.5, 0.25], [-1.0, 1.0, 1.0]], dtype=F64)
    units = torch.tensor([[0.5, 0.0], [0.0, 1.5]], dtype=F64)  # relu of (0.5, -0.25) and (-2, 1.5)
    raw = units @ reader.window[2].weight.T + reader.window[2].bias
    _, window = reader.read_image(torch.rand(2, 1, 9, 9, dtype=F64), h)
    expected = fb.decode_window(raw, 9, 9, 3)
    torch.testing.assert_close(window.gx, expected.gx)
    torch.testing.assert_close(window.gy, expected.gy)
    torch.testing.assert_close(window.gamma, expected.gamma)
    assert [p.shape for p in reader.window_parameters()] == [(2, 3), (2,), (5, 2), (5,)]
    assert set(linear.state_dict()) == {"window.weight", "window.bias"}  # checkpoints without it still load
    assert type(fb.FilterbankWriter(config, hidden=0).window) is torch.nn.Linear


def test_a_hidden_window_layer_under_bf16_autocast_and_through_a_checkpoint(tmp_path) -> None:
    """The window is still placed in float32 under the classifier's bf16 autocast, and a classifier
    with reader option hidden rebuilds from its checkpoint with the same logits, bit for bit."""
    torch.manual_seed(0)
    config = DrawConfig(kind="classifier", height=12, width=12, glimpses=3, dec_size=8, read_size=3, classes=4,
                        reader_options={"hidden": 5, "centre": "inside"})  # fmt: skip
    model = AttentionClassifier(config).eval()
    h = torch.randn(2, 8)
    plain, _, _ = fb.place_window(model.reader.window, h, 12, 12, 3, "inside")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        window, _, _ = fb.place_window(model.reader.window, h, 12, 12, 3, "inside")
    assert window.gx.dtype == torch.float32
    assert torch.equal(window.gx, plain.gx) and torch.equal(window.delta, plain.delta)  # not bf16 cast back
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save_checkpoint(path, model, {"steps": 0})
    loaded, info = checkpoint.load_model(path)
    assert info.config.reader_options == {"hidden": 5, "centre": "inside"}
    x = torch.rand(3, 1, 12, 12)
    assert torch.equal(model(x).logits, loaded(x).logits)


@pytest.mark.parametrize("bad", [-1, 2.5, "8", True, MAX_HIDDEN + 1])
def test_bad_hidden_window_layer_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^hidden must be a whole number of units from 0 \(off\) to 16384, got "):
        fb.FilterbankWriter(DrawConfig(), hidden=bad)
