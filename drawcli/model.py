"""The DRAW network (Gregor et al. 2015, section 2), assembled from plugin components.

Per glimpse t (eqs. 3-8): x_hat = x - sigmoid(c_{t-1}); r_t = read(x, x_hat, h_dec_{t-1});
h_enc_t = LSTM_enc([r_t, h_dec_{t-1}]); z_t ~ Q(z | h_enc_t); h_dec_t = LSTM_dec(z_t);
c_t = c_{t-1} + write(h_dec_t). Loss (eqs. 9-12): -log Bernoulli(x | sigmoid(c_T)) + sum_t KL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from drawcli import registry
from drawcli.compiled import CompiledTraining
from drawcli.config import DrawConfig, ModelConfig
from drawcli.contract import AttentionWindow, Reader, Sampler, Writer
from drawcli.errors import PluginError
from drawcli.lstm import LSTMCell


@dataclass
class DrawOutput:
    """Per-image nats of one forward pass, plus what was asked to be recorded."""

    recon: torch.Tensor  # (B,) reconstruction nats, -log p(x | c_T)
    kl: torch.Tensor  # (B, T) KL nats per glimpse
    canvases: torch.Tensor | None = None  # (T, B, C, H, W) probabilities after each glimpse
    read_windows: list[AttentionWindow] | None = None  # T windows, attention readers only
    write_windows: list[AttentionWindow] | None = None  # T windows, attention writers only
    log_ratio: torch.Tensor | None = None  # (B,) sum_t log P(z_t) - log Q(z_t | x), if asked

    @property
    def loss(self) -> torch.Tensor:
        """(B,) the negative variational bound in nats: L_x + L_z."""
        return self.recon + self.kl.sum(dim=1)


@dataclass
class Generation:
    """Images drawn from the prior, glimpse by glimpse."""

    canvases: torch.Tensor  # (T, n, C, H, W) probabilities
    write_windows: list[AttentionWindow] | None  # T windows, attention writers only

    @property
    def images(self) -> torch.Tensor:
        """(n, C, H, W) the final canvases: the drawn images, as pixel probabilities."""
        return self.canvases[-1]


def _component(kind: str, name: str, base: type, config: ModelConfig, options: dict) -> Any:  # an instance of base
    module = registry.build(kind, name, config, **options)
    if not isinstance(module, base):
        spec = registry.resolve(kind, name)
        raise PluginError(f"{kind} {name!r} does not implement drawcli.contract.{base.__name__} ({spec.describe()})")
    return module


class DRAW(CompiledTraining, nn.Module):
    """DRAW with its reader, writer and sampler loaded by name from the config.

    One glimpse (`_glimpse`) is what `compile_glimpses` compiles, not the 64-step loop, so
    compile time stays bounded.
    """

    compile_unit = "_glimpse"

    def __init__(self, config: DrawConfig) -> None:
        super().__init__()
        self.config = config
        self.reader: Reader = _component("reader", config.reader, Reader, config, config.reader_options)
        self.writer: Writer = _component("writer", config.writer, Writer, config, config.writer_options)
        self.sampler: Sampler = _component("sampler", config.sampler, Sampler, config, config.sampler_options)
        self.encoder = LSTMCell(self.reader.out_size + config.dec_size, config.enc_size)
        self.decoder = LSTMCell(self.sampler.z_size, config.dec_size)
        self._low_precision: torch.dtype | None = None
        if config.canvas == "learned":  # c_0 as logits (C, H, W); init_canvas sets it from the data
            self.canvas0 = nn.Parameter(torch.zeros(config.image_shape))

    def _glimpse(
        self, x: torch.Tensor, canvas: torch.Tensor, h_enc: torch.Tensor, c_enc: torch.Tensor, h_dec: torch.Tensor,
        c_dec: torch.Tensor, noise: torch.Tensor, lstm_lp: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[Any, ...]:
        """One glimpse, eqs. 3-8: the unit `compile_glimpses` hands to torch.compile.

        `lstm_lp`: the encoder's and decoder's low-precision weights for this step, or None.
        """
        enc_lp, dec_lp = lstm_lp if lstm_lp is not None else (None, None)
        x_hat = x - torch.sigmoid(canvas)  # eq. 3
        r, read_window = self.reader(x, x_hat, h_dec)  # eq. 4
        h_enc, c_enc = self.encoder(torch.cat([r, h_dec], dim=1), (h_enc, c_enc), enc_lp)  # eq. 5
        z, kl = self.sampler(h_enc, noise)  # eq. 6
        h_dec, c_dec = self.decoder(z, (h_dec, c_dec), dec_lp)  # eq. 7
        update, write_window = self.writer(h_dec)
        return canvas + update, h_enc, c_enc, h_dec, c_dec, z, kl, read_window, write_window  # eq. 8

    def initial_canvas(self, n: int, device: torch.device) -> torch.Tensor:
        """c_0 for n images (n, C, H, W), in logits: 0 (grey 0.5) or the learned canvas0."""
        if self.config.canvas == "learned":
            return self.canvas0.expand(n, *self.config.image_shape)
        return torch.zeros(n, *self.config.image_shape, device=device)

    @torch.no_grad()
    def init_canvas(self, images: torch.Tensor) -> None:
        """Start a learned c_0 at the per-pixel mean logit of uint8 images (N, C, H, W)."""
        mean = (images.float().mean(dim=0) / 255).clamp(1e-3, 1 - 1e-3)
        self.canvas0.copy_(torch.logit(mean))

    def low_precision(self, dtype: torch.dtype | None) -> None:
        """Run training forwards' LSTM matmuls in `dtype` (torch.bfloat16), None for float32 (lstm.py).

        Evaluation (model.eval()) stays float32.
        """
        self._low_precision = dtype

    def noise(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        """Standard-normal noise for every glimpse of n images: (T, n, noise_size), one draw."""
        device = device or next(self.parameters()).device
        return torch.randn(self.config.glimpses, n, self.sampler.noise_size, device=device)

    def forward(
        self, x: torch.Tensor, record: bool = False, densities: bool = False, noise: torch.Tensor | None = None
    ) -> DrawOutput:
        """x: (B, C, H, W) binary pixels -> per-image nats.

        `noise` (T, B, noise_size) is drawn here when not given. `record` keeps canvases and
        windows; `densities` also returns log P(z) - log Q(z | x) of the sampled latents, so
        that -recon + log_ratio is one importance weight log w.
        """
        cfg = self.config
        batch = x.shape[0]
        if noise is None:
            noise = self.noise(batch, x.device)
        h_enc = c_enc = x.new_zeros(batch, cfg.enc_size)
        h_dec = c_dec = x.new_zeros(batch, cfg.dec_size)
        canvas = self.initial_canvas(batch, x.device)
        kls, canvases, read_windows, write_windows = [], [], [], []
        log_ratio = x.new_zeros(batch) if densities else None
        step = self._glimpse if densities else self.training_unit()
        lstm_lp = None
        if self._low_precision is not None and self.training:  # once per step, not once per glimpse
            lstm_lp = (self.encoder.low_precision_weight(self._low_precision),
                       self.decoder.low_precision_weight(self._low_precision))  # fmt: skip
        if step is self._compiled:
            # Zero states that require grad, like every later glimpse's inputs: glimpse 0 then
            # reuses the one compiled graph instead of getting (and compiling) a second one.
            h_enc, c_enc, h_dec, c_dec, canvas = (s.clone().requires_grad_() for s in (h_enc, c_enc, h_dec, c_dec, canvas))
        for t in range(cfg.glimpses):
            args = (x, canvas, h_enc, c_enc, h_dec, c_dec, noise[t], lstm_lp)
            (canvas, h_enc, c_enc, h_dec, c_dec, z, kl, read_window, write_window), step = self.run_unit(step, *args)
            if log_ratio is not None:
                log_q, log_p = self.sampler.log_prob(z, h_enc)
                log_ratio = log_ratio + log_p - log_q
            kls.append(kl)
            if record:
                canvases.append(torch.sigmoid(canvas))
                read_windows.append(read_window)
                write_windows.append(write_window)
        # eq. 9: Bernoulli negative log-likelihood of x under sigmoid(c_T), summed over pixels
        recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").flatten(1).sum(dim=1)
        out = DrawOutput(recon=recon, kl=torch.stack(kls, dim=1), log_ratio=log_ratio)
        if record:
            out.canvases = torch.stack(canvases)
            out.read_windows = _windows_or_none(read_windows)
            out.write_windows = _windows_or_none(write_windows)
        return out

    @torch.no_grad()
    def generate(self, n: int, noise: torch.Tensor | None = None) -> Generation:
        """Draw n images from the prior (section 2.3); seed with torch.manual_seed for repeatability."""
        cfg = self.config
        device = next(self.parameters()).device
        if noise is None:
            noise = self.noise(n, device)
        h_dec = c_dec = torch.zeros(n, cfg.dec_size, device=device)
        canvas = self.initial_canvas(n, device)
        canvases, windows = [], []
        for t in range(cfg.glimpses):
            z = self.sampler.prior(noise[t])
            h_dec, c_dec = self.decoder(z, (h_dec, c_dec))
            update, window = self.writer(h_dec)
            canvas = canvas + update
            canvases.append(torch.sigmoid(canvas))
            windows.append(window)
        return Generation(canvases=torch.stack(canvases), write_windows=_windows_or_none(windows))


def _windows_or_none(windows: list[AttentionWindow | None]) -> list[AttentionWindow] | None:
    return None if any(w is None for w in windows) else windows  # type: ignore[return-value]
