"""Built-in `stn` reader and writer: spatial-transformer attention (Jaderberg et al. 2015).

A linear layer maps the state (DRAW's h_dec, the classifier's LSTM state) to an affine map
theta (B, 2, 3) from a patch's coordinates to the image's; the reader samples an N x N patch at
the points theta gives, the writer spreads an N x N patch back over the canvas through the
inverse map. Both interpolate bilinearly (torch's affine_grid / grid_sample) and read zero
outside the image (reader) or outside the patch (writer).

Coordinates are torch's normalised ones with align_corners=False: -1 and 1 are the outer edges
of the border pixels, not their centres, so 1-based pixel a of a W-pixel axis is centred at
u = (2a - 1) / W - 1, and an N-pixel patch's pixels sit at the centres of N equal cells of
[-1, 1]. A window is the image of the patch's square [-1, 1]^2: with theta the identity it is
the whole image, and at N = H = W the patch's pixels fall on the image's pixel centres, so the
read copies the image and the write copies the patch.

theta = [[kx s cos a, -kx s sin a, tx], [ky s sin a, ky s cos a, ty]] from the layer's outputs
(log s, tx, ty) and, with `rotation=True`, the angle a (positive turns the window clockwise on
screen, y pointing down). kx = max(H, W) / W and ky = max(H, W) / H make the window a square of
s * max(H, W) pixels, as the filterbank's is: a patch pixel is square on the image, and a
rotation is rigid on a non-square image. There is one scale, not one per axis: like the
filterbank's single stride, and nothing has shown a second to help.

The layer starts with zero weights and zero bias: every window starts as the identity, the
whole image (on a non-square image, the longer side's square around it), which needs no size
chosen per data set. Aliasing: a bilinear read of N x N points sees only the 4 N^2 pixels around
them, so the starting read of N = 2 over a 28 x 28 image sees 16 of 784 pixels, and the gradient
that moves or scales the window comes from the differences between neighbours at those points.
That holds for any window wider than about N pixels, not only the first, so a smaller start does
not cure it (on MNIST it trained no better at half the image, and worse at a quarter); the
windows do leave the start, zooming in and moving glimpse by glimpse. Unlike the filterbank's
Gaussians, which average the whole window, this reader does not blur before it samples.
The writer magnifies its patch at the start (5 x 5 over 28 x 28), which samples the patch
densely, and its patch values are logits placed as they are: no gain like the filterbank's
gamma is needed to match a full linear writer.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from drawcli.config import DrawConfig, ModelConfig
from drawcli.contract import Reader, Writer

# Raw transform parameters are clamped so that exp(log s) and the inverse's 1 / s^2 stay finite
# for absurd decoder outputs; |10| is far beyond any useful window (s = e^10, or a centre 5 image widths off).
PARAM_LIMIT = 10.0
# The patch's corners in its normalised coordinates, in AttentionWindow.corners()' order:
# top-left, top-right, bottom-right, bottom-left as the patch is stored (row 0 at the top).
PATCH_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def to_pixels(u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised points (..., 2) as (x, y) -> 1-based pixel positions (..., 2): ((u + 1) W + 1) / 2 (likewise y)."""
    return ((u + 1) * u.new_tensor([width, height]) + 1) / 2


class AffineWindow(NamedTuple):
    """One step's spatial-transformer windows: theta (B, 2, 3) maps a patch's normalised
    coordinates (x, y) to the image's (align_corners=False) of a height x width image."""

    theta: torch.Tensor
    height: int
    width: int

    def centre(self) -> torch.Tensor:
        """(B, 2) where the patch's centre lands, (x, y) in 1-based pixels."""
        return to_pixels(self.theta[:, :, 2], self.height, self.width)

    def corners(self) -> torch.Tensor:
        """(B, 4, 2) where the patch's corners land (PATCH_CORNERS' order), (x, y) in 1-based pixels."""
        v = self.theta.new_tensor(PATCH_CORNERS)  # (4, 2)
        u = v @ self.theta[:, :, :2].transpose(1, 2) + self.theta[:, None, :, 2]  # (B, 4, 2)
        return to_pixels(u, self.height, self.width)


def affine(params: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """params (B, 3) = (log s, tx, ty), or (B, 4) with the angle a last -> theta (B, 2, 3) (see the module docstring)."""
    params = params.clamp(-PARAM_LIMIT, PARAM_LIMIT)
    scale, tx, ty = torch.exp(params[:, 0]), params[:, 1], params[:, 2]
    side = max(height, width)
    sx, sy = scale * (side / width), scale * (side / height)
    if params.shape[1] == 3:  # no rotation: cos a = 1, sin a = 0
        zero = torch.zeros_like(scale)
        return torch.stack([sx, zero, tx, zero, sy, ty], dim=1).view(-1, 2, 3)
    cos, sin = torch.cos(params[:, 3]), torch.sin(params[:, 3])
    return torch.stack([sx * cos, -sx * sin, tx, sy * sin, sy * cos, ty], dim=1).view(-1, 2, 3)


def invert(theta: torch.Tensor) -> torch.Tensor:
    """The inverse affine map (B, 2, 3) of theta (B, 2, 3): image coordinates -> the patch's.

    [A | t]^-1 = [A^-1 | -A^-1 t], with the 2 x 2 inverse written out (det A = kx ky s^2 > 0).
    """
    a, b, tx = theta[:, 0].unbind(1)
    c, d, ty = theta[:, 1].unbind(1)
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return torch.stack([ia, ib, -(ia * tx + ib * ty), ic, id_, -(ic * tx + id_ * ty)], dim=1).view(-1, 2, 3)


def _full_precision(tensor: torch.Tensor) -> ContextManager[Any]:
    """Autocast off on `tensor`'s device where it is on: under bf16 a sampling point on a 100-pixel image
    would move in steps of up to half a pixel, and its gradient with it (contract.Reader.read_image)."""
    device = tensor.device.type
    return torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else nullcontext()


def sample(source: torch.Tensor, theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """source (B, C, h, w) sampled bilinearly at the points theta (B, 2, 3) maps a height x width
    grid's pixel centres to -> (B, C, height, width); zero outside the source."""
    with _full_precision(theta):
        grid = F.affine_grid(theta, [source.shape[0], source.shape[1], height, width], align_corners=False)  # (B, h', w', 2)
        return F.grid_sample(source.to(grid.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def check_rotation(rotation: Any) -> bool:
    """The `rotation` option, or a ValueError (a JSON true or false only)."""
    if not isinstance(rotation, bool):
        raise ValueError(f"rotation must be true or false, got {rotation!r}")
    return rotation


class _Transformed:
    """What the stn reader and writer share: the transform layer and how it places a window (a mixin
    listed before Reader or Writer, so its window_parameters() replaces their empty default)."""

    def _add_transform(self, config: ModelConfig, rotation: Any) -> None:
        self.height, self.width = config.height, config.width
        self.transform = nn.Linear(config.dec_size, 4 if check_rotation(rotation) else 3)
        with torch.no_grad():  # the identity for every state: the whole image
            self.transform.weight.zero_()
            self.transform.bias.zero_()

    def _place(self, h: torch.Tensor) -> AffineWindow:
        """The window from h (B, dec_size), computed in the layer's own precision (see _full_precision)."""
        with _full_precision(h):
            params = self.transform(h.to(self.transform.weight.dtype))
            return AffineWindow(affine(params, self.height, self.width), self.height, self.width)

    def window_parameters(self) -> list[nn.Parameter]:
        """The transform layer's weights and biases."""
        return list(self.transform.parameters())


class StnReader(_Transformed, Reader):
    """read(x, x_hat, h_dec) = the N x N bilinear samples of [x, x_hat] in the window (N = read_size)."""

    produces_windows = True

    def __init__(self, config: ModelConfig, rotation: bool = False, **options: Any) -> None:
        super().__init__(config, **options)
        self._add_transform(config, rotation)
        self.size = config.read_size
        self.out_size = 2 * config.channels * self.size**2

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> tuple[torch.Tensor, AffineWindow]:
        window = self._place(h_dec)
        patches = sample(torch.cat([x, x_hat], dim=1), window.theta, self.size, self.size)  # (B, 2C, N, N)
        return patches.flatten(1), window

    @property
    def image_out_size(self) -> int:
        return self.out_size // 2

    def read_image(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, AffineWindow]:
        """The N x N samples of x alone: the classifier's glimpse, (B, C N N)."""
        window = self._place(h)
        return sample(x, window.theta, self.size, self.size).flatten(1), window


class StnWriter(_Transformed, Writer):
    """write(h_dec) = the patch w = W(h_dec) (N x N, N = write_size) sampled at each canvas pixel's
    position in the patch (theta's inverse), zero outside the window."""

    produces_windows = True

    def __init__(self, config: DrawConfig, rotation: bool = False, **options: Any) -> None:
        super().__init__(config, **options)
        self._add_transform(config, rotation)
        self.channels, self.size = config.channels, config.write_size
        self.patch = nn.Linear(config.dec_size, self.channels * self.size**2)

    def forward(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, AffineWindow]:
        window = self._place(h_dec)
        patch = self.patch(h_dec).view(-1, self.channels, self.size, self.size)  # (B, C, N, N)
        return sample(patch, invert(window.theta), self.height, self.width), window  # (B, C, H, W)
