"""Built-in `filterbank` reader and writer: DRAW's Gaussian attention (Gregor et al. 2015, 3.2).

An N x N grid of Gaussian filters, placed by five numbers decoded from h_dec, extracts a patch
(read) or spreads a patch back over the canvas (write). Pixel coordinates are 1-based
(a = 1..A), so that g~ = 0 puts the grid's centre exactly on the image's centre.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from drawcli.config import DrawConfig, ModelConfig, Retired
from drawcli.contract import Reader, Window, Writer

# Raw window parameters are clamped so that exp() of them, and the filters, stay finite and
# differentiable even for absurd decoder outputs; |10| is far beyond any useful window.
PARAM_LIMIT = 10.0


# Where a window's centre may go: "free" is the paper's eq. 22-23 (g~ unbounded, so the centre
# can leave the image); "inside" passes g~ through tanh, so the centre stays within [0, A + 1].
WINDOW_CENTRES = ("free", "inside")
# Window options removed after 0.1.0 (a floor on sigma, noise on the centre, a hidden layer before the
# window layer); 0 is off, what every checkpoint that did not use them holds.
RETIRED_OPTIONS = Retired("0.1.0", {"sigma_floor": 0.0, "jitter": 0.0, "hidden": 0})


def decode_window(params: torch.Tensor, height: int, width: int, size: int, centre: str = "free") -> Window:
    """params (B, 5) = (g~x, g~y, log sigma^2, log delta~, log gamma) -> Window (eqs. 21-24).

    centre "inside" uses tanh(g~) for g~. A window far off the image puts each filter's whole
    (normalised) weight on the nearest border pixel, blank in MNIST, and its position gets no
    gradient back, so training can stall with the windows stuck there. Inside, the centre stays
    within [0, A + 1], so half the window still covers the image.
    """
    check_centre(centre)
    gx_t, gy_t, log_sigma2, log_delta_t, log_gamma = params.clamp(-PARAM_LIMIT, PARAM_LIMIT).unbind(dim=1)
    if centre == "inside":
        gx_t, gy_t = torch.tanh(gx_t), torch.tanh(gy_t)
    gx = (width + 1) / 2 * (gx_t + 1)  # eq. 22, A = width
    gy = (height + 1) / 2 * (gy_t + 1)  # eq. 23, B = height
    delta = (max(height, width) - 1) / max(size - 1, 1) * torch.exp(log_delta_t)  # eq. 24
    return Window(gx=gx, gy=gy, delta=delta, sigma2=torch.exp(log_sigma2), gamma=torch.exp(log_gamma), size=size)


def filters(centre: torch.Tensor, delta: torch.Tensor, sigma2: torch.Tensor, size: int, length: int) -> torch.Tensor:
    """Filterbanks (..., N, length) for centres g (...) and strides delta (...), rows summing to 1.

    mu^i = g + (i - N/2 - 0.5) delta for i = 1..N (eqs. 19-20); F[i, a] proportional to
    exp(-(a - mu^i)^2 / (2 sigma^2)) (eqs. 25-26). Normalising with a softmax is the same
    division by the row sum, computed stably: a row can never sum to zero.
    """
    offsets = torch.arange(1, size + 1, dtype=centre.dtype, device=centre.device) - (size / 2 + 0.5)
    a = torch.arange(1, length + 1, dtype=centre.dtype, device=centre.device)
    mu = centre[..., None] + offsets * delta[..., None]  # (..., N)
    logits = (a - mu[..., None]).square() * (-0.5 / sigma2)[..., None, None]  # (..., N, length)
    return torch.softmax(logits, dim=-1)


def filterbanks(window: Window, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(F_x (B, N, W), F_y (B, N, H)) for a decoded window."""
    if height == width:  # both axes in one pass: half the small ops per glimpse
        centres = torch.stack([window.gx, window.gy], dim=1)  # (B, 2)
        both = filters(centres, window.delta[:, None], window.sigma2[:, None], window.size, width)
        return both[:, 0], both[:, 1]
    fx = filters(window.gx, window.delta, window.sigma2, window.size, width)
    fy = filters(window.gy, window.delta, window.sigma2, window.size, height)
    return fx, fy


def place_window(layer: nn.Module, h: torch.Tensor, height: int, width: int, size: int,
                 centre: str) -> tuple[Window, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(window, F_x (B, N, W), F_y (B, N, H)) from h (B, dec_size) through the window `layer`.

    Under an autocast (the classifier's --amp bf16) the window is still placed in the layer's
    own precision: in bf16 a centre on a 100-pixel image moves in steps of up to half a pixel,
    and its gradient with it. The patch products that use the filters may still run in bf16.
    """
    if torch.is_autocast_enabled(h.device.type):
        with torch.autocast(h.device.type, enabled=False):
            return place_window(layer, h.to(next(layer.parameters()).dtype), height, width, size, centre)
    window = decode_window(layer(h), height, width, size, centre)
    return window, *filterbanks(window, height, width)


WINDOW_INITS = ("cover", "cover-unscaled", "torch")


def window_layer(config: ModelConfig, size: int, init: str, write: bool, stride: float | None = None,
                 sigma: float | None = None) -> nn.Linear:  # fmt: skip
    """The linear map h_dec -> 5 window parameters (eq. 21), with its bias chosen by `init`.

    "torch" keeps PyTorch's default (near-zero) bias: sigma = 1 pixel and, for N = 2, the
    filters sit on the image's corners, which are blank in MNIST, so the read sees nothing
    and training plateaus near 200 nats. "cover-unscaled" starts with the N x N grid tiling
    the image: stride max(A, B) / N and sigma half the stride. "cover" (the default) also
    sets gamma to the scales a no-attention reader and writer start with, instead of ones
    hundreds of times smaller. A normalised 2-D Gaussian spreads unit weight over an area of
    about a = 2 pi sigma^2 pixels. The write starts with gamma = 1 / a, so a patch value w
    moves its blob's centre by about w logits, like one output of a full linear writer. The
    read starts with gamma = sqrt(a): a full reader feeds the encoder a pixels with
    independent weights, whose sum grows like sqrt(a) times one pixel's contribution, while
    a filter feeds their average through a single weight. `stride` and `sigma` (pixels)
    replace the tiling's delta and sigma; gamma follows sigma.
    """
    if init not in WINDOW_INITS:
        raise ValueError(f"unknown window init {init!r}; expected one of {WINDOW_INITS}")
    for name, value in (("stride", stride), ("sigma", sigma)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e4):
            raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
    if init == "torch" and (stride is not None or sigma is not None):
        raise ValueError("stride and sigma set the starting window of init=cover or cover-unscaled, not init=torch")
    layer = nn.Linear(config.dec_size, 5)
    if init != "torch":
        side = max(config.height, config.width)
        delta = float(stride) if stride is not None else side / size
        delta_tilde = delta * max(size - 1, 1) / (side - 1) if side > 1 else 1.0
        sigma2 = float(sigma) ** 2 if sigma is not None else (delta / 2) ** 2
        log_area = math.log(2 * math.pi * sigma2) if init == "cover" else 0.0
        log_gamma = -log_area if write else log_area / 2
        with torch.no_grad():
            layer.bias.copy_(torch.tensor([0.0, 0.0, math.log(sigma2), math.log(delta_tilde), log_gamma]))
    return layer


def read_patch(images: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """F_y x F_x^T on every channel (eq. 27 without gamma): (B, C, H, W) -> (B, C, N, N)."""
    b, c, h, w = images.shape
    n = fx.shape[1]
    # 3-D bmm with the channels folded into the rows: much faster than broadcast 4-D matmul.
    cols = torch.bmm(images.reshape(b, c * h, w), fx.transpose(1, 2))  # (B, C*H, N)
    cols = cols.view(b, c, h, n).transpose(1, 2).reshape(b, h, c * n)  # (B, H, C*N)
    return torch.bmm(fy, cols).view(b, n, c, n).transpose(1, 2)  # (B, C, N, N)


def write_patch(patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """F_y^T w F_x on every channel (eq. 29 without 1/gamma): (B, C, N, N) -> (B, C, H, W)."""
    b, c, n, _ = patch.shape
    h, w = fy.shape[2], fx.shape[2]
    rows = torch.bmm(patch.reshape(b, c * n, n), fx)  # (B, C*N, W)
    rows = rows.view(b, c, n, w).transpose(1, 2).reshape(b, n, c * w)  # (B, N, C*W)
    return torch.bmm(fy.transpose(1, 2), rows).view(b, h, c, w).transpose(1, 2)  # (B, C, H, W)


def check_centre(centre: Any) -> str:
    """The `centre` option, or a ValueError that lists the allowed values."""
    if centre not in WINDOW_CENTRES:
        raise ValueError(f"unknown window centre {centre!r}; expected one of {WINDOW_CENTRES}")
    return centre


class _Windowed:
    """What the filterbank reader and writer share: an N x N window, its layer and the rules for placing it
    (a mixin listed before Reader or Writer, so its window_parameters() replaces their empty default)."""

    retired_options: Retired | None = RETIRED_OPTIONS

    def _add_window(self, config: ModelConfig, size: int, write: bool, init: str, stride: float | None,
                    sigma: float | None, centre: str) -> None:  # fmt: skip
        self.centre = check_centre(centre)
        self.size, self.height, self.width = size, config.height, config.width
        self.window = window_layer(config, size, init, write=write, stride=stride, sigma=sigma)

    def _place(self, h: torch.Tensor) -> tuple[Window, torch.Tensor, torch.Tensor]:
        return place_window(self.window, h, self.height, self.width, self.size, self.centre)

    def window_parameters(self) -> list[nn.Parameter]:
        """The window layer's weights and biases (eq. 21)."""
        return list(self.window.parameters())


class FilterbankReader(_Windowed, Reader):
    """read(x, x_hat, h_dec) = gamma [F_y x F_x^T, F_y x_hat F_x^T] (eq. 27), N = read_size."""

    produces_windows = True

    def __init__(self, config: ModelConfig, init: str = "cover", stride: float | None = None, sigma: float | None = None,
                 centre: str = "free", **options: Any) -> None:  # fmt: skip
        super().__init__(config, **options)
        self._add_window(config, config.read_size, False, init, stride, sigma, centre)
        self.out_size = 2 * config.channels * self.size**2

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> tuple[torch.Tensor, Window]:
        window, fx, fy = self._place(h_dec)
        patches = read_patch(torch.cat([x, x_hat], dim=1), fx, fy)  # (B, 2C, N, N)
        return window.gamma[:, None] * patches.flatten(1), window

    @property
    def image_out_size(self) -> int:
        return self.out_size // 2

    def read_image(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, Window]:
        """gamma F_y x F_x^T alone (eq. 27 without the error image): the classifier's glimpse."""
        window, fx, fy = self._place(h)
        return window.gamma[:, None] * read_patch(x, fx, fy).flatten(1), window  # (B, C N N)


class FilterbankWriter(_Windowed, Writer):
    """write(h_dec) = (1 / gamma^) F^_y^T w F^_x with w = W(h_dec) an N x N patch (eqs. 28-29)."""

    produces_windows = True

    def __init__(self, config: DrawConfig, init: str = "cover", stride: float | None = None, sigma: float | None = None,
                 centre: str = "free", **options: Any) -> None:  # fmt: skip
        super().__init__(config, **options)
        self._add_window(config, config.write_size, True, init, stride, sigma, centre)
        self.channels = config.channels
        self.patch = nn.Linear(config.dec_size, self.channels * self.size**2)  # eq. 28

    def forward(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, Window]:
        window, fx, fy = self._place(h_dec)
        patch = self.patch(h_dec).view(-1, self.channels, self.size, self.size)  # (B, C, N, N)
        return write_patch(patch, fx, fy) / window.gamma[:, None, None, None], window
