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
from drawcli.config import ClassifierConfig
from drawcli.contract import AttentionWindow, Reader
from drawcli.errors import ConfigError
from drawcli.lstm import update
from drawcli.model import _component, _windows_or_none


@dataclass
class ClassifierOutput:
    """Logits of one forward pass, plus the read windows when recorded."""

    logits: torch.Tensor  # (B, classes)
    read_windows: list[AttentionWindow] | None = None  # T windows, readers that produce windows only
    centres: torch.Tensor | None = None  # (B, T, 2): each read window's centre (x, y), readers that produce windows

    def locate_loss(self, targets: torch.Tensor) -> torch.Tensor:
        """(B,) the term of `train --locate-loss`: mean over glimpses 2..T of the Huber loss of the
        read window's centre against the object's, per pixel axis in units of LOCATE_SCALE pixels
        (quadratic within that distance, linear beyond), summed over x and y. targets: (B, 2) as
        (x, y). Glimpse 1's window comes from h_0 = 0 (the same for every image), so it is left
        out."""
        if self.centres is None:
            raise ConfigError("this classifier's reader produces no windows to place")
        later = self.centres[:, 1:].float()
        if later.shape[1] == 0:
            return later.new_zeros(later.shape[0])
        off = (later - targets[:, None, :]) / LOCATE_SCALE
        return F.huber_loss(off, torch.zeros_like(off), reduction="none", delta=1.0).sum(dim=2).mean(dim=1)

    def loss(self, labels: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """(B,) cross-entropy in nats.

        exact: in float32 even when the logits come from a bf16 autocast; else in the logits' own
        precision, where bf16 rounds a confident right answer's loss and gradient to 0 (what the
        training objective uses: see training/classify.py).
        """
        logits = self.logits.float() if exact else self.logits
        return F.cross_entropy(logits, labels, reduction="none")

    def wrong(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) 1.0 where the most likely class is not the label."""
        return (self.logits.argmax(dim=1) != labels).float()


LOCATE_SCALE = 10.0  # pixels: the locate term is quadratic out to this distance per axis, then linear


def _centres(windows: list[AttentionWindow | None]) -> torch.Tensor | None:
    """(B, T, 2) the windows' centres (x, y), or None for a reader without windows."""
    if not windows or windows[0] is None:
        return None
    return torch.stack([w.centre() for w in windows], dim=1)  # type: ignore[union-attr]


class AttentionClassifier(CompiledTraining, nn.Module):
    """An LSTM of config.dec_size units that reads config.glimpses glimpses, then classifies.

    `compile_glimpses` compiles the whole glimpse loop (a few glimpses, one graph): fusing across
    glimpses is where most of the compiled speed-up comes from here.
    """

    compile_unit = "_logits"

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.reader: Reader = _component("reader", config.reader, Reader, config, config.reader_options)
        self.lstm = nn.LSTMCell(self.reader.image_out_size, config.dec_size)
        self.classify = nn.Linear(config.dec_size, config.classes)

    def _glimpses(self, x: torch.Tensor) -> tuple[torch.Tensor, list[AttentionWindow | None]]:
        """(logits (B, classes), the T read windows) of x (B, C, H, W)."""
        h = c = x.new_zeros(x.shape[0], self.config.dec_size)
        if self.reader.fixed_glimpse:
            return self._fixed_glimpses(x, h, c)
        windows: list[AttentionWindow | None] = []
        for _ in range(self.config.glimpses):
            r, window = self.reader.read_image(x, h)  # the window from the previous state
            h, c = self.lstm(r, (h, c))
            windows.append(window)
        return self.classify(h), windows

    def _fixed_glimpses(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, list[AttentionWindow | None]]:
        """_glimpses for a reader that reads the same glimpse every step: the glimpse and its
        LSTM input term W_ih r + b_ih once instead of T times (the no-attention baseline's
        whole-image read makes that term nearly all of its work)."""
        r, window = self.reader.read_image(x, h)
        lstm = self.lstm
        from_glimpse = F.linear(r, lstm.weight_ih, lstm.bias_ih)  # (B, 4 dec_size)
        for _ in range(self.config.glimpses):
            h, c = update(from_glimpse + F.linear(h, lstm.weight_hh, lstm.bias_hh), c)
        return self.classify(h), [window] * self.config.glimpses

    def _logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The unit `compile_glimpses` compiles: the logits and the windows' centres, so the window
        objects are no graph outputs."""
        logits, windows = self._glimpses(x)
        return logits, _centres(windows)

    def forward(self, x: torch.Tensor, record: bool = False) -> ClassifierOutput:
        """x: (B, C, H, W) grey levels in [0, 1] -> logits (B, classes) and the windows' centres
        (B, T, 2); `record` keeps the whole windows (eagerly)."""
        if record:
            logits, windows = self._glimpses(x)
            return ClassifierOutput(logits, _windows_or_none(windows), _centres(windows))
        (logits, centres), _ = self.run_unit(self.training_unit(), x)
        return ClassifierOutput(logits, centres=centres)
