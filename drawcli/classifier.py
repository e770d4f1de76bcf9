"""The attention classifier of DRAW's section 4.1 ("differentiable RAM"), built from a reader plugin.

At each of T steps the reader takes a glimpse of the image through a window computed from the
LSTM's previous hidden state (h_0 = 0); the LSTM reads the glimpse; after the last step a
linear layer gives the class logits. Trained end to end by back-propagation through the
attention, with cross-entropy. There is no canvas and no error image: the reader's
`read_image` is used (contract.Reader).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from drawcli.compiled import CompiledTraining
from drawcli.config import DrawConfig
from drawcli.contract import Reader, Window
from drawcli.errors import ConfigError
from drawcli.lstm import update
from drawcli.model import _component, _windows_or_none


@dataclass
class ClassifierOutput:
    """Logits of one forward pass, plus the read windows when recorded."""

    logits: torch.Tensor  # (B, classes)
    read_windows: list[Window] | None = None  # T windows, readers that produce windows only
    earlier_logits: torch.Tensor | None = None  # (B, T - 1, classes): the softmax layer on each earlier state
    centres: torch.Tensor | None = None  # (B, T, 2): each read window's centre (gx, gy), readers that produce windows

    def locate_loss(self, targets: torch.Tensor) -> torch.Tensor:
        """(B,) the term of `train --locate-loss`: mean over glimpses 2..T of the Huber loss of the
        read window's centre against the object's, per pixel axis in units of LOCATE_SCALE pixels
        (quadratic within that distance, linear beyond), summed over x and y. targets: (B, 2) as
        (x, y). Glimpse 1's window comes from h_0 = 0 (the same for every image), so it is left
        out. Under a reader's jitter the centres are the jittered ones the glimpses were read at."""
        if self.centres is None:
            raise ConfigError("this classifier's reader produces no windows to place")
        later = self.centres[:, 1:].float()
        if later.shape[1] == 0:
            return later.new_zeros(later.shape[0])
        off = (later - targets[:, None, :]) / LOCATE_SCALE
        return F.huber_loss(off, torch.zeros_like(off), reduction="none", delta=1.0).sum(dim=2).mean(dim=1)

    def earlier_loss(self, labels: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """(B,) mean cross-entropy of the classifications after glimpses 1 .. T-1 (0 when T is 1):
        the term of `train --glimpse-loss`, in float32 unless `exact` is False (as in `loss`)."""
        if self.earlier_logits is None or self.earlier_logits.shape[1] == 0:
            return self.logits.new_zeros(labels.shape, dtype=torch.float32)
        logits = self.earlier_logits.float() if exact else self.earlier_logits
        b, steps, classes = logits.shape
        each = F.cross_entropy(logits.reshape(b * steps, classes), labels.repeat_interleave(steps), reduction="none")
        return each.view(b, steps).mean(dim=1)

    def loss(self, labels: torch.Tensor, smoothing: float = 0.0, exact: bool = True) -> torch.Tensor:
        """(B,) cross-entropy in nats; with `smoothing` e, against the target (1 - e) one_hot(label) + e / K
        (label smoothing, Szegedy et al. 2016).

        exact: in float32 even when the logits come from a bf16 autocast; else in the logits' own
        precision, where bf16 rounds a confident right answer's loss and gradient to 0
        (the training objective's choice: docs/reproducing.md, "The labels' cross-entropy in bf16").
        """
        logits = self.logits.float() if exact else self.logits
        return F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)

    def wrong(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) 1.0 where the most likely class is not the label."""
        return (self.logits.argmax(dim=1) != labels).float()


def glimpse_convolutions(reader: Reader, config: DrawConfig) -> tuple[nn.Sequential, int]:
    """(the layers, their output width) of `glimpse_conv` K: glimpse (B, C*N*M) -> two 3x3
    convolutions with ReLUs, K channels each, the second with stride 2 -> (B, K * ceil(N/2) * ceil(M/2)).
    Needs a reader whose glimpse is an image (contract.Reader.image_glimpse_shape)."""
    shape = reader.image_glimpse_shape
    if shape is None:
        raise ConfigError(f"reader {config.reader!r} does not read an image-shaped glimpse, so --glimpse-conv cannot convolve it")
    c, n, m = shape
    k = config.glimpse_conv
    layers = nn.Sequential(
        nn.Unflatten(1, shape), nn.Conv2d(c, k, 3, padding=1), nn.ReLU(),
        nn.Conv2d(k, k, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
    )  # fmt: skip
    return layers, k * ((n + 1) // 2) * ((m + 1) // 2)


LOCATE_SCALE = 10.0  # pixels: the locate term is quadratic out to this distance per axis, then linear


def _centres(windows: list[Window] | list[None]) -> torch.Tensor | None:
    """(B, T, 2) the windows' (gx, gy), or None for a reader without windows."""
    if not windows or windows[0] is None:
        return None
    return torch.stack([torch.stack([w.gx, w.gy], dim=1) for w in windows], dim=1)  # type: ignore[union-attr]


class AttentionClassifier(CompiledTraining, nn.Module):
    """An LSTM of config.dec_size units that reads config.glimpses glimpses, then classifies
    (config.glimpse_conv adds convolutions of each glimpse beside it; config.glimpse_hidden puts
    a ReLU layer between what it reads and the LSTM).

    `compile_glimpses` compiles the whole glimpse loop (a few glimpses, one graph): fusing across
    glimpses is where most of the compiled speed-up comes from here.
    """

    compile_unit = "_logits"

    def __init__(self, config: DrawConfig) -> None:
        super().__init__()
        self.config = config
        self.reader: Reader = _component("reader", config.reader, Reader, config, config.reader_options)
        width = self.reader.image_out_size
        if config.glimpse_conv:
            self.conv, conv_width = glimpse_convolutions(self.reader, config)
            width += conv_width
        if config.glimpse_hidden:
            self.glimpse = nn.Sequential(nn.Linear(width, config.glimpse_hidden), nn.ReLU())
            width = config.glimpse_hidden
        self.lstm = nn.LSTMCell(width, config.dec_size)
        self.classify = nn.Linear(config.dec_size, config.classes)

    def _glimpses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[Window]]:
        """(logits (B, classes), earlier logits (B, T - 1, classes), the T read windows) of x (B, C, H, W)."""
        h = c = x.new_zeros(x.shape[0], self.config.dec_size)
        if self.reader.fixed_glimpse:
            return self._fixed_glimpses(x, h, c)
        windows, states = [], []
        for _ in range(self.config.glimpses):
            r, window = self.reader.read_image(x, h)  # the window from the previous state
            h, c = self.lstm(self._features(r), (h, c))
            windows.append(window)
            states.append(h)
        return self.classify(h), self._earlier(states), windows

    def _earlier(self, states: list[torch.Tensor]) -> torch.Tensor:
        """The softmax layer's logits (B, T - 1, classes) on the LSTM states before the last (B, dec_size) each."""
        if len(states) < 2:
            return states[0].new_zeros(states[0].shape[0], 0, self.config.classes)
        return self.classify(torch.stack(states[:-1], dim=1))

    def _fixed_glimpses(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[Window]]:
        """_glimpses for a reader that reads the same glimpse every step: the glimpse and its
        LSTM input term W_ih r + b_ih once instead of T times (the no-attention baseline's
        whole-image read makes that term nearly all of its work)."""
        r, window = self.reader.read_image(x, h)
        lstm = self.lstm
        from_glimpse = F.linear(self._features(r), lstm.weight_ih, lstm.bias_ih)  # (B, 4 dec_size)
        states = []
        for _ in range(self.config.glimpses):
            h, c = update(from_glimpse + F.linear(h, lstm.weight_hh, lstm.bias_hh), c)
            states.append(h)
        return self.classify(h), self._earlier(states), [window] * self.config.glimpses

    def _features(self, r: torch.Tensor) -> torch.Tensor:
        """The LSTM's input from a glimpse r (B, image_out_size): r itself, with the convolutions'
        output beside it (glimpse_conv), then through the hidden layer (glimpse_hidden)."""
        if self.config.glimpse_conv:
            r = torch.cat([r, self.conv(r)], dim=1)  # beside the glimpse: the LSTM keeps the pixels themselves
        return self.glimpse(r) if self.config.glimpse_hidden else r

    def _logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The unit `compile_glimpses` compiles: the logits (final, earlier) and the windows' centres,
        so the Window tuples are no graph outputs."""
        logits, earlier, windows = self._glimpses(x)
        return logits, earlier, _centres(windows)

    def forward(self, x: torch.Tensor, record: bool = False) -> ClassifierOutput:
        """x: (B, C, H, W) grey levels in [0, 1] -> logits (B, classes), the earlier glimpses'
        (B, T - 1, classes) and the windows' centres (B, T, 2); `record` keeps the whole windows (eagerly)."""
        if record:
            logits, earlier, windows = self._glimpses(x)
            return ClassifierOutput(logits, _windows_or_none(windows), earlier, _centres(windows))
        (logits, earlier, centres), _ = self.run_unit(self.training_unit(), x)
        return ClassifierOutput(logits, earlier_logits=earlier, centres=centres)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level part (reader, glimpse when present, lstm, classify)."""
        return {name: sum(p.numel() for p in child.parameters()) for name, child in self.named_children()}
