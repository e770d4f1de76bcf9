"""A straightforward, untuned DRAW (Gregor et al. 2015), written from the paper's equations.

The reference the benchmark measures drawcli against: plain per-glimpse PyTorch, two
nn.LSTMCell, Gaussian filterbanks rebuilt with exp and normalisation at every glimpse, bmm for
read and write. It shares drawcli's conventions (1-based pixel grid, raw window parameters
clamped to [-10, 10]), so that with copied weights and the same latent noise (passed in as
`noise`, shape (T, B, z)) both compute the same loss. Without `noise` it draws one randn of
(B, z) per glimpse, as a plain implementation would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from drawcli.config import DrawConfig


class BaselineDRAW(nn.Module):
    """DRAW with Gaussian attention (read N x N, write N x N) or without (whole image)."""

    def __init__(
        self,
        channels: int = 1,
        height: int = 28,
        width: int = 28,
        glimpses: int = 64,
        enc_size: int = 256,
        dec_size: int = 256,
        z_size: int = 100,
        read_size: int = 2,
        write_size: int = 5,
        attention: bool = True,
    ) -> None:
        super().__init__()
        self.channels, self.height, self.width = channels, height, width
        self.glimpses, self.enc_size, self.dec_size, self.z_size = glimpses, enc_size, dec_size, z_size
        self.read_size, self.write_size, self.attention = read_size, write_size, attention
        pixels = channels * height * width
        read_out = 2 * channels * read_size**2 if attention else 2 * pixels
        self.encoder = nn.LSTMCell(read_out + dec_size, enc_size)  # eq. 5
        self.decoder = nn.LSTMCell(z_size, dec_size)  # eq. 7
        self.mu = nn.Linear(enc_size, z_size)  # eq. 6
        self.logsigma = nn.Linear(enc_size, z_size)
        if attention:
            self.read_window = nn.Linear(dec_size, 5)  # eq. 21
            self.write_window = nn.Linear(dec_size, 5)
            self.write_patch = nn.Linear(dec_size, channels * write_size**2)  # eq. 28
        else:
            self.write_canvas = nn.Linear(dec_size, pixels)  # eq. 18

    # Attention (section 3.2)

    def filterbank(self, params: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """params (B, 5) -> F_x (B, n, W), F_y (B, n, H), gamma (B,); eqs. 19-26."""
        gx_t, gy_t, log_sigma2, log_delta_t, log_gamma = params.clamp(-10.0, 10.0).unbind(dim=1)
        gx = (self.width + 1) / 2 * (gx_t + 1)
        gy = (self.height + 1) / 2 * (gy_t + 1)
        delta = (max(self.height, self.width) - 1) / max(n - 1, 1) * torch.exp(log_delta_t)
        sigma2 = torch.exp(log_sigma2)
        i = torch.arange(1, n + 1, dtype=params.dtype, device=params.device)
        offsets = (i - n / 2 - 0.5)[None, :] * delta[:, None]  # (B, n)
        fx = self._axis(gx[:, None] + offsets, sigma2, self.width)
        fy = self._axis(gy[:, None] + offsets, sigma2, self.height)
        return fx, fy, torch.exp(log_gamma)

    @staticmethod
    def _axis(mu: torch.Tensor, sigma2: torch.Tensor, length: int) -> torch.Tensor:
        """Filters (B, n, length) centred on mu (B, n), each row normalised to sum 1."""
        a = torch.arange(1, length + 1, dtype=mu.dtype, device=mu.device)
        f = torch.exp(-((a[None, None, :] - mu[:, :, None]) ** 2) / (2 * sigma2[:, None, None]))
        return f / f.sum(dim=2, keepdim=True).clamp_min(1e-30)

    def _per_channel(self, f: torch.Tensor) -> torch.Tensor:
        """One filterbank per image -> one per (image, channel), matching (B * C, ...) views."""
        return f.repeat_interleave(self.channels, dim=0) if self.channels > 1 else f

    def read(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> torch.Tensor:
        """eq. 27: gamma [F_y x F_x^T, F_y x_hat F_x^T], flattened; or [x, x_hat] (eq. 17)."""
        b = x.shape[0]
        if not self.attention:
            return torch.cat([x.flatten(1), x_hat.flatten(1)], dim=1)
        fx, fy, gamma = self.filterbank(self.read_window(h_dec), self.read_size)
        fx, fy = self._per_channel(fx), self._per_channel(fy)
        patches = []
        for image in (x, x_hat):
            img = image.reshape(b * self.channels, self.height, self.width)
            patches.append(torch.bmm(torch.bmm(fy, img), fx.transpose(1, 2)).reshape(b, -1))
        return gamma[:, None] * torch.cat(patches, dim=1)

    def write(self, h_dec: torch.Tensor) -> torch.Tensor:
        """eq. 29: (1 / gamma) F_y^T w F_x; or a linear map onto the canvas (eq. 18)."""
        b = h_dec.shape[0]
        if not self.attention:
            return self.write_canvas(h_dec).view(b, self.channels, self.height, self.width)
        fx, fy, gamma = self.filterbank(self.write_window(h_dec), self.write_size)
        fx, fy = self._per_channel(fx), self._per_channel(fy)
        w = self.write_patch(h_dec).view(b * self.channels, self.write_size, self.write_size)
        canvas = torch.bmm(torch.bmm(fy.transpose(1, 2), w), fx)
        return canvas.view(b, self.channels, self.height, self.width) / gamma[:, None, None, None]

    # The network (section 2)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) binary -> (reconstruction nats (B,), KL nats (B,)); eqs. 3-12."""
        b = x.shape[0]
        h_enc = c_enc = x.new_zeros(b, self.enc_size)
        h_dec = c_dec = x.new_zeros(b, self.dec_size)
        canvas = torch.zeros_like(x)
        kl = x.new_zeros(b)
        for t in range(self.glimpses):
            x_hat = x - torch.sigmoid(canvas)
            r = self.read(x, x_hat, h_dec)
            h_enc, c_enc = self.encoder(torch.cat([r, h_dec], dim=1), (h_enc, c_enc))
            mu, logsigma = self.mu(h_enc), self.logsigma(h_enc)
            sigma = torch.exp(logsigma)
            eps = torch.randn(b, self.z_size, dtype=x.dtype, device=x.device) if noise is None else noise[t]
            z = mu + sigma * eps
            kl = kl + 0.5 * (mu**2 + sigma**2 - 2 * logsigma - 1).sum(dim=1)
            h_dec, c_dec = self.decoder(z, (h_dec, c_dec))
            canvas = canvas + self.write(h_dec)
        recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").flatten(1).sum(dim=1)
        return recon, kl

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The batch mean of the negative variational bound, in nats."""
        recon, kl = self(x, noise)
        return (recon + kl).mean()

    @torch.no_grad()
    def generate(self, n: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """n images drawn from the prior: (n, C, H, W) probabilities of the final canvas."""
        p = next(self.parameters())
        h_dec = c_dec = p.new_zeros(n, self.dec_size)
        canvas = p.new_zeros(n, self.channels, self.height, self.width)
        for t in range(self.glimpses):
            z = torch.randn(n, self.z_size, dtype=p.dtype, device=p.device) if noise is None else noise[t]
            h_dec, c_dec = self.decoder(z, (h_dec, c_dec))
            canvas = canvas + self.write(h_dec)
        return torch.sigmoid(canvas)


# Filterbank options that set only the window layer's starting values: weights copied from a
# model that used them give the baseline the same function.
STARTING_VALUES_ONLY = {"init", "stride", "sigma"}


def baseline_like(config: DrawConfig) -> BaselineDRAW:
    """A baseline with the sizes of a drawcli DrawConfig, with attention when drawcli's reader for it attends."""
    from drawcli.model import DRAW  # only here: the baseline itself is plain PyTorch

    options = sorted((set(config.reader_options) | set(config.writer_options)) - STARTING_VALUES_ONLY)
    if options:  # each changes what the window computes, and the baseline is the paper's filterbank
        raise ValueError(f"the baseline has no counterpart of the component option(s) {', '.join(options)}: "
                         "compare against a model without them")  # fmt: skip
    with torch.device("meta"):  # nothing allocated or initialised: only the reader's report is read
        attention = DRAW(config).reader.produces_windows
    c = config
    return BaselineDRAW(
        channels=c.channels, height=c.height, width=c.width, glimpses=c.glimpses, enc_size=c.enc_size,
        dec_size=c.dec_size, z_size=c.z_size, read_size=c.read_size, write_size=c.write_size,
        attention=attention,
    )  # fmt: skip


# drawcli parameter name -> baseline parameter name (the posterior is split into mu and log sigma)
_NAME_MAP = {
    "reader.window": "read_window",
    "writer.window": "write_window",
    "writer.patch": "write_patch",
    "writer.canvas": "write_canvas",
    "encoder": "encoder",
    "decoder": "decoder",
}


def drawcli_to_baseline(state: Mapping[str, torch.Tensor], z_size: int) -> dict[str, torch.Tensor]:
    """Rename a drawcli DRAW state dict (filterbank or no-attention, gaussian sampler) for the baseline."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        prefix, _, leaf = name.rpartition(".")
        if prefix == "sampler.posterior":
            out[f"mu.{leaf}"] = tensor[:z_size].clone()
            out[f"logsigma.{leaf}"] = tensor[z_size:].clone()
        elif prefix in _NAME_MAP:
            out[f"{_NAME_MAP[prefix]}.{leaf}"] = tensor.clone()
        else:
            raise KeyError(f"no baseline parameter for drawcli's {name!r}")
    return out
