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
from drawcli.lstm import update
from drawcli.model import _component, _windows_or_none


@dataclass
class ClassifierOutput:
    """Logits of one forward pass, plus the read windows when recorded."""

    logits: torch.Tensor  # (B, classes)
    read_windows: list[Window] | None = None  # T windows, readers that produce windows only

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


class AttentionClassifier(CompiledTraining, nn.Module):
    """An LSTM of config.dec_size units that reads config.glimpses glimpses, then classifies
    (with config.glimpse_hidden, through a ReLU layer between each glimpse and the LSTM).

    `compile_glimpses` compiles the whole glimpse loop (a few glimpses, one graph): fusing across
    glimpses is where most of the compiled speed-up comes from here.
    """

    compile_unit = "_logits"

    def __init__(self, config: DrawConfig) -> None:
        super().__init__()
        self.config = config
        self.reader: Reader = _component("reader", config.reader, Reader, config, config.reader_options)
        width = self.reader.image_out_size
        if config.glimpse_hidden:
            self.glimpse = nn.Sequential(nn.Linear(width, config.glimpse_hidden), nn.ReLU())
            width = config.glimpse_hidden
        self.lstm = nn.LSTMCell(width, config.dec_size)
        self.classify = nn.Linear(config.dec_size, config.classes)

    def _glimpses(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Window]]:
        """(logits (B, classes), the T read windows) of x (B, C, H, W)."""
        h = c = x.new_zeros(x.shape[0], self.config.dec_size)
        if self.reader.fixed_glimpse:
            return self._fixed_glimpses(x, h, c)
        windows = []
        for _ in range(self.config.glimpses):
            r, window = self.reader.read_image(x, h)  # the window from the previous state
            h, c = self.lstm(self._features(r), (h, c))
            windows.append(window)
        return self.classify(h), windows

    def _fixed_glimpses(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, list[Window]]:
        """_glimpses for a reader that reads the same glimpse every step: the glimpse and its
        LSTM input term W_ih r + b_ih once instead of T times (the no-attention baseline's
        whole-image read makes that term nearly all of its work)."""
        r, window = self.reader.read_image(x, h)
        lstm = self.lstm
        from_glimpse = F.linear(self._features(r), lstm.weight_ih, lstm.bias_ih)  # (B, 4 dec_size)
        for _ in range(self.config.glimpses):
            h, c = update(from_glimpse + F.linear(h, lstm.weight_hh, lstm.bias_hh), c)
        return self.classify(h), [window] * self.config.glimpses

    def _features(self, r: torch.Tensor) -> torch.Tensor:
        """The LSTM's input from a glimpse r (B, image_out_size): r itself, or the hidden layer's ReLU units."""
        return self.glimpse(r) if self.config.glimpse_hidden else r

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The unit `compile_glimpses` compiles: logits alone, so the windows are no graph outputs."""
        return self._glimpses(x)[0]

    def forward(self, x: torch.Tensor, record: bool = False) -> ClassifierOutput:
        """x: (B, C, H, W) grey levels in [0, 1] -> logits (B, classes); `record` keeps the windows (eagerly)."""
        if record:
            logits, windows = self._glimpses(x)
            return ClassifierOutput(logits, _windows_or_none(windows))
        logits, _ = self.run_unit(self.training_unit(), x)
        return ClassifierOutput(logits)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level part (reader, glimpse when present, lstm, classify)."""
        return {name: sum(p.numel() for p in child.parameters()) for name, child in self.named_children()}
