"""DRAW's Gaussian attention (Gregor et al. 2015, section 3.2) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

import drawcli_filterbank as fb
from drawcli.config import DrawConfig
from drawcli.contract import Window

F64 = torch.float64


def hand_rows(mus: list[float], sigma2: float, length: int) -> list[list[float]]:
    """F[i][a - 1] = exp(-(a - mu_i)^2 / (2 sigma^2)) / row sum, pixels a = 1..length."""
    rows = []
    for mu in mus:
        weights = [math.exp(-((a - mu) ** 2) / (2 * sigma2)) for a in range(1, length + 1)]
        total = sum(weights)
        rows.append([w / total for w in weights])
    return rows


def hand_bank(centre: float, delta: float, sigma2: float, n: int, length: int) -> torch.Tensor:
    """A hand-built (n, length) filterbank with centres mu_i = g + (i - n/2 - 0.5) delta."""
    mus = [centre + (i - n / 2 - 0.5) * delta for i in range(1, n + 1)]
    return torch.tensor(hand_rows(mus, sigma2, length), dtype=F64)


def hand_window(raw: list[float], height: int, width: int, n: int) -> tuple[float, float, float, float, float]:
    """(gx, gy, delta, sigma^2, gamma) from raw (g~x, g~y, log sigma^2, log delta~, log gamma), eqs. 22-24."""
    gxt, gyt, log_s2, log_dt, log_g = raw
    return (
        (width + 1) / 2 * (gxt + 1),
        (height + 1) / 2 * (gyt + 1),
        (max(height, width) - 1) / (n - 1) * math.exp(log_dt),
        math.exp(log_s2),
        math.exp(log_g),
    )


def window_of(gx: float, gy: float, delta: float, sigma2: float, gamma: float, size: int, batch: int = 1) -> Window:
    """A Window with the same values for every batch element, float64."""

    def col(v: float) -> torch.Tensor:
        return torch.full((batch,), v, dtype=F64)

    return Window(gx=col(gx), gy=col(gy), delta=col(delta), sigma2=col(sigma2), gamma=col(gamma), size=size)


def test_decoded_window_and_filters_match_hand_computation() -> None:
    """N = 3 on a 5x7 image: gx, gy, delta, sigma^2, gamma (eqs. 22-24) and F_x, F_y (eqs. 19-20, 25-26)."""
    raw = torch.tensor([[0.2, -0.4, 0.3, -0.5, 0.1]], dtype=F64)
    window = fb.decode_window(raw, height=5, width=7, size=3)

    # By hand: A = 7, B = 5, N = 3.
    gx = 4 * 1.2  # (7 + 1) / 2 * (0.2 + 1)
    gy = 3 * 0.6  # (5 + 1) / 2 * (-0.4 + 1)
    d = 3 * math.exp(-0.5)  # (max(7, 5) - 1) / (3 - 1) * exp(-0.5)
    sigma2 = math.exp(0.3)
    gamma = math.exp(0.1)
    assert window.size == 3
    assert window.gx.item() == pytest.approx(4.8, abs=1e-12)
    assert window.gx.item() == pytest.approx(gx, abs=1e-12)
    assert window.gy.item() == pytest.approx(1.8, abs=1e-12)
    assert window.gy.item() == pytest.approx(gy, abs=1e-12)
    assert window.delta.item() == pytest.approx(1.8195919791379, abs=1e-12)
    assert window.delta.item() == pytest.approx(d, abs=1e-12)
    assert window.sigma2.item() == pytest.approx(sigma2, abs=1e-12)
    assert window.gamma.item() == pytest.approx(gamma, abs=1e-12)

    # mu^i = g + (i - N/2 - 0.5) delta = g - d, g, g + d for i = 1, 2, 3.
    fx_hand = hand_rows([gx - d, gx, gx + d], sigma2, 7)
    fy_hand = hand_rows([gy - d, gy, gy + d], sigma2, 5)
    fx, fy = fb.filterbanks(window, height=5, width=7)
    assert fx.shape == (1, 3, 7)
    assert fy.shape == (1, 3, 5)
    torch.testing.assert_close(fx[0], torch.tensor(fx_hand, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(fy[0], torch.tensor(fy_hand, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(fx.sum(-1), torch.ones(1, 3, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(fy.sum(-1), torch.ones(1, 3, dtype=F64), rtol=0, atol=1e-12)

    # One entry spelled out: the middle x-filter (mu = 4.8) at pixel a = 5.
    num = math.exp(-(0.2**2) / (2 * sigma2))
    den = sum(math.exp(-((a - 4.8) ** 2) / (2 * sigma2)) for a in range(1, 8))
    assert fx[0, 1, 4].item() == pytest.approx(num / den, abs=1e-12)


def test_zero_offset_centres_grid_on_image_centre() -> None:
    """g~ = 0 puts the grid centre on pixel (A + 1) / 2 (1-based): the middle filter is mirror-symmetric."""
    raw = torch.tensor([[0.0, 0.0, 0.7, 0.2, 0.0]], dtype=F64)
    window = fb.decode_window(raw, height=6, width=9, size=3)
    assert window.gx.item() == pytest.approx(5.0, abs=1e-12)
    assert window.gy.item() == pytest.approx(3.5, abs=1e-12)
    fx, fy = fb.filterbanks(window, height=6, width=9)
    torch.testing.assert_close(fx[0, 1], fx[0, 1].flip(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(fy[0, 1], fy[0, 1].flip(0), rtol=0, atol=1e-12)
    # Outer filters mirror each other.
    torch.testing.assert_close(fx[0, 0], fx[0, 2].flip(0), rtol=0, atol=1e-12)


def test_window_centre_and_corners_as_the_core_sees_them() -> None:
    """centre() is (gx, gy); corners() the square g +- N delta / 2, top-left, top-right, bottom-right,
    bottom-left: N = 3, delta = 1.5 about (4, 2.5) spans x 1.75..6.25, y 0.25..4.75."""
    window = Window(gx=torch.tensor([4.0, 1.0]), gy=torch.tensor([2.5, 1.0]), delta=torch.tensor([1.5, 2.0]),
                    sigma2=torch.ones(2), gamma=torch.ones(2), size=3)  # fmt: skip
    assert window.centre().tolist() == [[4.0, 2.5], [1.0, 1.0]]
    assert window.corners().tolist() == [[[1.75, 0.25], [6.25, 0.25], [6.25, 4.75], [1.75, 4.75]],
                                         [[-2.0, -2.0], [4.0, -2.0], [4.0, 4.0], [-2.0, 4.0]]]  # fmt: skip


def test_full_size_read_with_unit_stride_is_the_identity() -> None:
    """N = A = B = 5, delta = 1, g = 3, tiny sigma, gamma = 1: read and write return the input."""
    torch.manual_seed(0)
    window = window_of(gx=3.0, gy=3.0, delta=1.0, sigma2=1e-4, gamma=1.0, size=5, batch=2)
    fx, fy = fb.filterbanks(window, height=5, width=5)
    torch.testing.assert_close(fx, torch.eye(5, dtype=F64).expand(2, 5, 5), rtol=0, atol=1e-12)
    x = torch.rand(2, 3, 5, 5, dtype=F64)
    torch.testing.assert_close(fb.read_patch(x, fx, fy), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(fb.write_patch(x, fx, fy), x, rtol=0, atol=1e-5)


def test_reader_decoding_identity_window_returns_image_and_error() -> None:
    """Raw (0, 0, -10, 0, 0) on 5x5 with N = 5 decodes to the identity window: r = [x, x_hat] exactly."""
    cfg = DrawConfig(channels=1, height=5, width=5, read_size=5, write_size=5, dec_size=5)
    reader = fb.FilterbankReader(cfg).double()
    with torch.no_grad():
        reader.window.weight.zero_()
        reader.window.bias.copy_(torch.tensor([0.0, 0.0, -10.0, 0.0, 0.0]))
    torch.manual_seed(1)
    x = torch.rand(2, 1, 5, 5, dtype=F64)
    x_hat = torch.rand(2, 1, 5, 5, dtype=F64) - 0.5
    r, window = reader(x, x_hat, torch.randn(2, 5, dtype=F64))
    assert window.delta.tolist() == pytest.approx([1.0, 1.0])
    assert window.gx.tolist() == pytest.approx([3.0, 3.0])
    torch.testing.assert_close(r, torch.cat([x.flatten(1), x_hat.flatten(1)], dim=1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_read_and_write_are_adjoint(channels: int) -> None:
    """<read_patch(x), w> = <x, write_patch(w)> for gamma = 1 on a non-square 6x9 image."""
    torch.manual_seed(2)
    batch, n = 2, 4
    window = Window(
        gx=torch.tensor([3.3, 7.1], dtype=F64),
        gy=torch.tensor([2.2, 4.9], dtype=F64),
        delta=torch.tensor([1.3, 0.6], dtype=F64),
        sigma2=torch.tensor([0.8, 2.5], dtype=F64),
        gamma=torch.ones(batch, dtype=F64),
        size=n,
    )
    fx, fy = fb.filterbanks(window, height=6, width=9)
    x = torch.randn(batch, channels, 6, 9, dtype=F64)
    w = torch.randn(batch, channels, n, n, dtype=F64)
    lhs = (fb.read_patch(x, fx, fy) * w).sum(dim=(2, 3))
    rhs = (x * fb.write_patch(w, fx, fy)).sum(dim=(2, 3))
    assert lhs.shape == (batch, channels)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


RAW_ROWS = [[0.2, -0.4, 0.3, -0.5, 0.1], [-0.6, 0.5, -0.2, 0.4, -0.3]]


def test_filterbank_reader_is_gamma_times_both_patches() -> None:
    """Reader output = gamma [F_y x F_x^T, F_y x_hat F_x^T] flattened, per batch row (eq. 27)."""
    channels, height, width, n = 2, 5, 7, 3
    cfg = DrawConfig(channels=channels, height=height, width=width, read_size=n, write_size=n, dec_size=5)
    reader = fb.FilterbankReader(cfg).double()
    assert reader.out_size == 2 * channels * n * n
    with torch.no_grad():  # window params = h_dec exactly
        reader.window.weight.copy_(torch.eye(5))
        reader.window.bias.zero_()
    torch.manual_seed(3)
    x = torch.rand(2, channels, height, width, dtype=F64)
    x_hat = torch.randn(2, channels, height, width, dtype=F64)
    r, window = reader(x, x_hat, torch.tensor(RAW_ROWS, dtype=F64))
    assert r.shape == (2, reader.out_size)

    images = torch.cat([x, x_hat], dim=1)
    for b, raw in enumerate(RAW_ROWS):
        gx, gy, delta, sigma2, gamma = hand_window(raw, height, width, n)
        assert window.gamma[b].item() == pytest.approx(gamma, abs=1e-12)
        fx = hand_bank(gx, delta, sigma2, n, width)
        fy = hand_bank(gy, delta, sigma2, n, height)
        # patch[k, i, j] = sum_{h, w} F_y[i, h] image[k, h, w] F_x[j, w]
        patch = torch.einsum("ih,khw,jw->kij", fy, images[b], fx)
        torch.testing.assert_close(r[b], gamma * patch.flatten(), rtol=0, atol=1e-12)


def test_filterbank_writer_is_patch_spread_over_gamma() -> None:
    """Writer output = (1 / gamma) F_y^T w F_x with w the patch Linear's output (eqs. 28-29)."""
    channels, height, width, n = 2, 5, 7, 3
    cfg = DrawConfig(channels=channels, height=height, width=width, read_size=n, write_size=n, dec_size=5)
    writer = fb.FilterbankWriter(cfg).double()
    torch.manual_seed(4)
    w = torch.randn(channels, n, n, dtype=F64)
    with torch.no_grad():
        writer.window.weight.copy_(torch.eye(5))
        writer.window.bias.zero_()
        writer.patch.weight.zero_()
        writer.patch.bias.copy_(w.flatten())
    out, window = writer(torch.tensor(RAW_ROWS, dtype=F64))
    assert out.shape == (2, channels, height, width)
    for b, raw in enumerate(RAW_ROWS):
        gx, gy, delta, sigma2, gamma = hand_window(raw, height, width, n)
        fx = hand_bank(gx, delta, sigma2, n, width)
        fy = hand_bank(gy, delta, sigma2, n, height)
        # canvas[c, h, w'] = sum_{i, j} F_y[i, h] w[c, i, j] F_x[j, w'] / gamma
        expected = torch.einsum("ih,cij,jw->chw", fy, w, fx) / gamma
        torch.testing.assert_close(out[b], expected, rtol=0, atol=1e-12)
        assert window.gx[b].item() == pytest.approx(gx, abs=1e-12)


EXTREME_ROWS = [
    [1e4, 0.0, 1e4, 0.0, 50.0],
    [1e4, -1e4, -1e4, 50.0, -50.0],
    [-1e4, 1e4, -1e4, -50.0, 50.0],
    [0.0, 0.0, 1e4, 50.0, -50.0],
    [-1e4, -1e4, 1e4, -50.0, -50.0],
]


def test_extreme_window_parameters_stay_finite_through_reader_and_writer() -> None:
    """Raw params of +-1e4 / +-50 (float32): filters, outputs and all gradients are finite."""
    cfg = DrawConfig(channels=2, height=6, width=9, read_size=3, write_size=4, dec_size=5)
    reader, writer = fb.FilterbankReader(cfg), fb.FilterbankWriter(cfg)
    with torch.no_grad():
        for module in (reader, writer):
            module.window.weight.copy_(torch.eye(5))
            module.window.bias.zero_()
    torch.manual_seed(5)
    raw = torch.tensor(EXTREME_ROWS, requires_grad=True)
    x = torch.rand(len(EXTREME_ROWS), 2, 6, 9, requires_grad=True)
    x_hat = torch.randn(len(EXTREME_ROWS), 2, 6, 9, requires_grad=True)

    r, read_window = reader(x, x_hat, raw)
    canvas, write_window = writer(raw)
    for window in (read_window, write_window):
        for value in (window.gx, window.gy, window.delta, window.sigma2, window.gamma):
            assert torch.isfinite(value).all()
        assert (window.sigma2 > 0).all() and (window.delta > 0).all() and (window.gamma > 0).all()
        fx, fy = fb.filterbanks(window, height=6, width=9)
        assert torch.isfinite(fx).all() and torch.isfinite(fy).all()
        torch.testing.assert_close(fx.sum(-1), torch.ones_like(fx.sum(-1)))
        torch.testing.assert_close(fy.sum(-1), torch.ones_like(fy.sum(-1)))
    assert torch.isfinite(r).all()
    assert torch.isfinite(canvas).all()

    loss = (r * torch.randn_like(r)).sum() + (canvas * torch.randn_like(canvas)).sum()
    loss.backward()
    for name, grad in [("raw", raw.grad), ("x", x.grad), ("x_hat", x_hat.grad)]:
        assert grad is not None and torch.isfinite(grad).all(), name
    for name, p in [*reader.named_parameters(), *writer.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_far_right_narrow_window_puts_all_mass_on_last_pixel() -> None:
    """g~x = 1e4 with log sigma^2 = -1e4: every x-filter is a one-hot on pixel a = A, not NaN."""
    raw = torch.tensor([[1e4, -1e4, -1e4, 0.0, 0.0]])
    window = fb.decode_window(raw, height=6, width=9, size=3)
    fx, fy = fb.filterbanks(window, height=6, width=9)
    expected_x = torch.zeros(1, 3, 9)
    expected_x[..., -1] = 1.0
    expected_y = torch.zeros(1, 3, 6)
    expected_y[..., 0] = 1.0
    torch.testing.assert_close(fx, expected_x)
    torch.testing.assert_close(fy, expected_y)


def _starting_window(layer: torch.nn.Linear, size: int) -> Window:
    """The window every glimpse starts with: the layer's bias decoded (h_dec contributes nothing yet)."""
    return fb.decode_window(layer.bias[None].detach().double(), 28, 28, size)


@pytest.mark.parametrize(("write", "size"), [(False, 2), (True, 5)])
def test_cover_init_tiles_the_image_with_gamma_undoing_the_normalisation(write: bool, size: int) -> None:
    # 28 pixels, N filters: stride 28 / N, sigma half of it, blob area a = 2 pi sigma^2;
    # the read starts with gamma = sqrt(a), the write with gamma = 1 / a.
    w = _starting_window(fb.window_layer(DrawConfig(), size, "cover", write=write), size)
    stride = 28 / size
    area = 2 * math.pi * (stride / 2) ** 2
    assert (w.gx.item(), w.gy.item()) == (14.5, 14.5)  # the image's centre, 1-based
    assert w.delta.item() == pytest.approx(stride) and w.sigma2.item() == pytest.approx((stride / 2) ** 2)
    assert w.gamma.item() == pytest.approx(1 / area if write else math.sqrt(area))


def test_stride_and_sigma_options_set_the_starting_window() -> None:
    reader = fb.FilterbankReader(DrawConfig(), stride=10, sigma=2.5)  # the narrower read start paper-mnist once had
    w = _starting_window(reader.window, 2)
    assert w.delta.item() == pytest.approx(10.0) and w.sigma2.item() == pytest.approx(6.25)
    assert w.gamma.item() == pytest.approx(math.sqrt(2 * math.pi * 6.25))
    unscaled = _starting_window(fb.window_layer(DrawConfig(), 2, "cover-unscaled", False, sigma=2.5), 2)
    assert unscaled.gamma.item() == pytest.approx(1.0) and unscaled.delta.item() == pytest.approx(14.0)


@pytest.mark.parametrize(("options", "message"), [
    ({"stride": -1}, "stride must be a positive number of pixels, got -1"),
    ({"sigma": True}, "sigma must be a positive number of pixels, got True"),
    ({"sigma": "wide"}, "sigma must be a positive number of pixels, got 'wide'"),
    ({"init": "torch", "stride": 3}, "not init=torch"),
    ({"centre": "outside"}, "unknown window centre 'outside'; expected one of \\('free', 'inside'\\)"),
])  # fmt: skip
def test_bad_starting_window_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fb.FilterbankWriter(DrawConfig(), **options)
    with pytest.raises(ValueError, match=message):
        fb.FilterbankReader(DrawConfig(), **options)


def test_an_inside_centre_is_tanh_of_g_tilde_and_never_leaves_the_image() -> None:
    """centre=inside: gx = (A + 1) / 2 (tanh(g~x) + 1), so g~ = 0.3 gives 4 (1 + tanh 0.3) on a
    7-wide image and g~ = +-10 lands within [0, A + 1]; free is eq. 22 itself (g~ = 10: 44)."""
    raw = torch.tensor([[0.3, -0.4, 0.0, 0.0, 0.0], [10.0, -10.0, 0.0, 0.0, 0.0]], dtype=F64)
    inside = fb.decode_window(raw, height=5, width=7, size=3, centre="inside")
    assert inside.gx[0].item() == pytest.approx(4 * (1 + math.tanh(0.3)), abs=1e-12)
    assert inside.gy[0].item() == pytest.approx(3 * (1 + math.tanh(-0.4)), abs=1e-12)
    assert 7.99 < inside.gx[1].item() <= 8.0 and 0.0 <= inside.gy[1].item() < 0.01
    free = fb.decode_window(raw, height=5, width=7, size=3)
    assert free.gx[1].item() == pytest.approx(44.0) and free.gy[1].item() == pytest.approx(-27.0)
    torch.testing.assert_close(inside.delta, free.delta, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown window centre 'middle'"):
        fb.decode_window(raw, height=5, width=7, size=3, centre="middle")
    torch.manual_seed(0)
    reader = fb.FilterbankReader(DrawConfig(height=5, width=7, read_size=3), centre="inside")
    with torch.no_grad():
        reader.window.bias.copy_(torch.tensor([30.0, 0.0, 0.0, 0.0, 0.0]))
        reader.window.weight.zero_()
    _, window = reader.read_image(torch.rand(2, 1, 5, 7), torch.zeros(2, 256))
    assert torch.all(window.gx <= 8.0)
