"""The `stn` reader and writer (spatial transformers, Jaderberg et al. 2015) against hand computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, invoke
from PIL import Image

import drawcli_stn as stn
from drawcli import render
from drawcli.config import DrawConfig
from drawcli.contract import AttentionWindow

F64 = torch.float64


def component(kind: type, side: int, size: int, params: list[float], **options: object) -> torch.nn.Module:
    """A reader or writer of N = size on side x side images, float64, its transform fixed at raw `params`
    (log s, tx, ty[, angle]) for every state: zero weights, params as the bias."""
    config = DrawConfig(height=side, width=side, read_size=size, write_size=size, dec_size=3)
    module = kind(config, **options).to(F64)
    with torch.no_grad():
        module.transform.bias.copy_(torch.tensor(params, dtype=F64))
    return module


def bilinear(image: torch.Tensor, x: float, y: float) -> float:
    """image (H, W) at the 1-based pixel position (x, y): the four pixels around it weighted by the
    opposite areas, a pixel outside the image counting as zero."""

    def at(col: int, row: int) -> float:
        inside = 1 <= row <= image.shape[0] and 1 <= col <= image.shape[1]
        return image[row - 1, col - 1].item() if inside else 0.0

    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * at(x0, y0) + fx * (1 - fy) * at(x0 + 1, y0)
            + (1 - fx) * fy * at(x0, y0 + 1) + fx * fy * at(x0 + 1, y0 + 1))  # fmt: skip


@pytest.mark.parametrize("side", [8, 7])
def test_the_starting_window_reads_the_whole_image_exactly(side: int) -> None:
    """Zero weights and bias: the identity, so at N = H = W the read is [x, x_hat] (forward) and x
    (read_image), pixel for pixel: bit for bit at 8 (its grid points are dyadic), to 1e-12 at 7."""
    config = DrawConfig(channels=2, height=side, width=side, read_size=side, dec_size=3)
    reader = stn.StnReader(config).to(F64)
    x, x_hat, h = torch.rand(3, 2, side, side, dtype=F64), torch.randn(3, 2, side, side, dtype=F64), torch.randn(3, 3, dtype=F64)
    r, window = reader(x, x_hat, h)
    image, _ = reader.read_image(x, h)
    atol = 0.0 if side == 8 else 1e-12
    torch.testing.assert_close(r, torch.cat([x, x_hat], dim=1).flatten(1), rtol=0, atol=atol)
    torch.testing.assert_close(image, x.flatten(1), rtol=0, atol=atol)
    assert window.theta.tolist() == [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]] * 3


def test_a_half_scale_shifted_window_reads_between_pixels() -> None:
    """s = 0.5, tx = 0.25, ty = -0.125, N = 4 on 8 x 8: the patch's pixel centres v = -0.75, -0.25, 0.25, 0.75
    land at u = 0.5 v + t, i.e. 1-based pixels 4u + 4.5: x = 4, 5, 6, 7 and y = 2.5, 3.5, 4.5, 5.5. On the
    ramp 10 row + col (1-based) bilinear interpolation is exact: the read is 10 y + x."""
    reader = component(stn.StnReader, 8, 4, [math.log(0.5), 0.25, -0.125])
    ramp = torch.tensor([[10.0 * row + col for col in range(1, 9)] for row in range(1, 9)], dtype=F64)
    glimpse, _ = reader.read_image(ramp[None, None], torch.zeros(1, 3, dtype=F64))
    expected = [[29.0, 30.0, 31.0, 32.0], [39.0, 40.0, 41.0, 42.0], [49.0, 50.0, 51.0, 52.0], [59.0, 60.0, 61.0, 62.0]]
    torch.testing.assert_close(glimpse.view(4, 4), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-12)


def test_a_window_larger_than_the_image_reads_zero_outside() -> None:
    """s = 1.5, tx = 1/16, ty = -3/16, N = 3 on 8 x 8: v = -2/3, 0, 2/3, so s v = -1, 0, 1 and the samples
    sit at x = 0.75, 4.75, 8.75 and y = -0.25, 3.75, 7.75 (1-based): the first row entirely above the
    image (zero), the first column three quarters on pixel 1, the last a quarter on pixel 8."""
    reader = component(stn.StnReader, 8, 3, [math.log(1.5), 1 / 16, -3 / 16])
    torch.manual_seed(0)
    image = torch.rand(8, 8, dtype=F64)
    glimpse, _ = reader.read_image(image[None, None], torch.zeros(1, 3, dtype=F64))
    expected = [[bilinear(image, x, y) for x in (0.75, 4.75, 8.75)] for y in (-0.25, 3.75, 7.75)]
    assert expected[0] == [0.0, 0.0, 0.0] and expected[1][0] == pytest.approx(0.75 * (0.25 * image[2, 0] + 0.75 * image[3, 0]))
    torch.testing.assert_close(glimpse.view(3, 3), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-12)


def test_a_half_scale_write_places_the_patch_half_a_pixel_right() -> None:
    """N = 2 on a 4 x 4 canvas, s = 0.5, tx = 0.25 (half a pixel), ty = 0: canvas pixel centres u = -0.75 ..
    0.75 map to the patch's v = (u - t) / s, 1-based patch positions v + 1.5: x -0.5, 0.5, 1.5, 2.5 and
    y 0, 1, 2, 3. So rows 2 and 3 carry the patch rows, each [0, a / 2, (a + b) / 2, b / 2]."""
    writer = component(stn.StnWriter, 4, 2, [math.log(0.5), 0.25, 0.0])
    with torch.no_grad():
        writer.patch.weight.zero_()
        writer.patch.bias.copy_(torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=F64))  # [[a, b], [c, d]]
    update, _ = writer(torch.zeros(1, 3, dtype=F64))
    expected = [[0.0] * 4, [0.0, 0.5, 1.5, 1.0], [0.0, 2.0, 6.0, 4.0], [0.0] * 4]
    torch.testing.assert_close(update.view(4, 4), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-12)


def test_read_then_write_at_the_identity_is_the_identity() -> None:
    """N = H = W = 8 and both windows the whole image: writing the read patch gives the image back, bit for bit."""
    reader, writer = component(stn.StnReader, 8, 8, [0.0] * 3), component(stn.StnWriter, 8, 8, [0.0] * 3)
    x, h = torch.rand(1, 1, 8, 8, dtype=F64), torch.randn(1, 3, dtype=F64)
    patch, _ = reader.read_image(x, h)
    with torch.no_grad():
        writer.patch.weight.zero_()
        writer.patch.bias.copy_(patch[0])
    update, _ = writer(h)
    assert torch.equal(update, x)


def test_affine_and_its_inverse_by_hand() -> None:
    """(log s, tx, ty, a) = (log 0.5, 0.25, -0.5, pi / 2) on an 8 x 4 (H x W) image: kx = 2, ky = 1, so
    theta = [[0, -1, 0.25], [0.5, 0, -0.5]]; [[2, 0, 1], [0, 4, -2]]^-1 = [[0.5, 0, -0.5], [0, 0.25, 0.5]]."""
    params = torch.tensor([[math.log(0.5), 0.25, -0.5, math.pi / 2]], dtype=F64)
    theta = stn.affine(params, height=8, width=4)
    torch.testing.assert_close(theta, torch.tensor([[[0.0, -1.0, 0.25], [0.5, 0.0, -0.5]]], dtype=F64), rtol=0, atol=1e-12)
    plain = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 4.0, -2.0]]])
    assert stn.invert(plain).tolist() == [[[0.5, 0.0, -0.5], [0.0, 0.25, 0.5]]]
    back = stn.invert(stn.invert(theta))
    torch.testing.assert_close(back, theta, rtol=0, atol=1e-12)


def test_window_centre_and_corners_by_hand() -> None:
    """On 8 x 8, pixel = 4 u + 4.5. theta = [[0.5, 0, 0.25], [0, 0.5, -0.5]]: centre (5.5, 2.5), corners
    x 3.5..7.5, y 0.5..4.5. Turned 90 degrees clockwise ([[0, -0.5, 0], [0.5, 0, 0]]) the patch's
    top-left corner lands at the window's top-right, (6.5, 2.5). On a 4 x 8 image a half-scale window
    turned 90 degrees is a 4-pixel square: x 2.5..6.5, y 0.5..4.5 (pixel x = 4 u + 4.5, y = 2 u + 2.5)."""
    theta = torch.tensor([[[0.5, 0.0, 0.25], [0.0, 0.5, -0.5]], [[0.0, -0.5, 0.0], [0.5, 0.0, 0.0]]])
    window = stn.AffineWindow(theta, height=8, width=8)
    assert isinstance(window, AttentionWindow)
    assert window.centre().tolist() == [[5.5, 2.5], [4.5, 4.5]]
    assert window.corners().tolist() == [[[3.5, 0.5], [7.5, 0.5], [7.5, 4.5], [3.5, 4.5]],
                                         [[6.5, 2.5], [6.5, 6.5], [2.5, 6.5], [2.5, 2.5]]]  # fmt: skip
    wide = stn.AffineWindow(stn.affine(torch.tensor([[math.log(0.5), 0.0, 0.0, math.pi / 2]], dtype=F64), 4, 8), 4, 8)
    expected = torch.tensor([[[6.5, 0.5], [6.5, 4.5], [2.5, 4.5], [2.5, 0.5]]], dtype=F64)
    torch.testing.assert_close(wide.corners(), expected, rtol=0, atol=1e-12)


def test_under_bf16_autocast_the_window_and_read_stay_float32() -> None:
    """The classifier's --amp bf16: the window and the samples are the float32 ones, bit for bit (bf16
    would move a sampling point on a 100-pixel image by up to half a pixel)."""
    torch.manual_seed(0)
    reader = stn.StnReader(DrawConfig(height=100, width=100, read_size=3, dec_size=8), rotation=True)
    torch.nn.init.normal_(reader.transform.weight)
    x, h = torch.rand(2, 1, 100, 100), torch.randn(2, 8)
    plain, plain_window = reader.read_image(x, h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        read, window = reader.read_image(x, h)
    assert read.dtype == window.theta.dtype == torch.float32
    assert torch.equal(read, plain) and torch.equal(window.theta, plain_window.theta)


@pytest.mark.parametrize("kind", [stn.StnReader, stn.StnWriter])
def test_gradients_reach_every_transform_parameter(kind: type) -> None:
    """Through a loss on the read or the canvas update, each of (log s, tx, ty, angle) gets a gradient,
    on the bias and on the weights; the transform layer is what window_parameters() returns."""
    torch.manual_seed(0)
    module = kind(DrawConfig(height=8, width=8, read_size=3, write_size=3, dec_size=5), rotation=True)
    h = torch.randn(4, 5)
    if kind is stn.StnReader:
        out, _ = module(torch.rand(4, 1, 8, 8), torch.randn(4, 1, 8, 8), h)
    else:
        out, _ = module(h)
    (out * torch.randn_like(out)).sum().backward()
    weight, bias = module.transform.weight, module.transform.bias
    assert bias.grad is not None and (bias.grad != 0).all() and weight.grad is not None and (weight.grad != 0).all()
    assert module.window_parameters() == [weight, bias]


@pytest.mark.parametrize("kind", [stn.StnReader, stn.StnWriter])
@pytest.mark.parametrize(("options", "error", "message"), [
    ({"rotation": "yes"}, ValueError, "rotation must be true or false, got 'yes'"),
    ({"rotation": 1}, ValueError, "rotation must be true or false, got 1"),
    ({"scales": 2}, TypeError, "unknown option(s) ['scales'] for {}"),
])  # fmt: skip
def test_bad_options_are_refused(kind: type, options: dict, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        kind(DrawConfig(), **options)
    assert str(caught.value) == message.format(kind.__name__)


def red_and_green(picture: Path) -> tuple[int, int]:
    """How many pixels of a PNG, or of a GIF's first frame, are near the write (red) and read (green) window
    colours (a GIF's palette may move them a little; no grey comes within 40 levels of either on every channel)."""
    with Image.open(picture) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    return tuple(int((abs(pixels - colour) <= 40).all(axis=-1).sum()) for colour in (render.WRITE_COLOUR, render.READ_COLOUR))


def test_draw_trains_and_draws_its_windows(idx_dir: Path, tmp_path: Path) -> None:
    """DRAW with stn read and write (the writer rotating) trains 3 steps; reconstruct draws both windows
    (its PNG: the last glimpse), sample --boxes the write windows (its GIF; the PNG has no windows)."""
    run = tmp_path / "run"
    result = invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--quiet", "--steps", "3", "--reader", "stn",
                    "--writer", "stn", "--writer-option", "rotation=true", "--sample-every", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    cpu = ["--threads", "1", "--device", "cpu"]
    result = invoke("reconstruct", run, "--gif", tmp_path / "r.gif", "--png", tmp_path / "r.png", "--n", "4", *cpu)
    assert result.exit_code == 0, result.output
    red, green = red_and_green(tmp_path / "r.png")
    assert red > 0 and green > 0
    result = invoke("sample", run, "--gif", tmp_path / "s.gif", "--n", "4", "--boxes", *cpu)
    assert result.exit_code == 0, result.output
    assert red_and_green(tmp_path / "s.gif")[0] > 0


def test_the_classifier_reads_through_stn(idx_dir: Path, tmp_path: Path) -> None:
    """An attention classifier with the stn reader trains 2 steps; glimpses draws its read windows."""
    run = tmp_path / "run"
    result = invoke("train", *CLASSIFIER, "--reader", "stn", "--data-dir", idx_dir, "--out", run, "--steps", "2")
    assert result.exit_code == 0, result.output
    result = invoke("glimpses", run, "--gif", tmp_path / "g.gif", "--png", tmp_path / "g.png", "--n", "3",
                    "--threads", "1", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert red_and_green(tmp_path / "g.png")[1] > 0
