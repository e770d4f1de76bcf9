"""Built-in `no-attention` reader and writer (Gregor et al. 2015, section 3.1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from drawcli.config import DrawConfig, ModelConfig
from drawcli.contract import Reader, Writer


class NoAttentionReader(Reader):
    """read(x, x_hat, h_dec) = [x, x_hat] (eq. 17): the whole image and error, flattened."""

    fixed_glimpse = True  # read_image is x itself, whatever the state

    def __init__(self, config: ModelConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self.out_size = 2 * config.channels * config.height * config.width

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.cat([x.flatten(1), x_hat.flatten(1)], dim=1), None

    @property
    def image_out_size(self) -> int:
        return self.out_size // 2

    def read_image(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, None]:
        """The whole image, flattened: the classifier's baseline without attention."""
        return x.flatten(1), None


class NoAttentionWriter(Writer):
    """write(h_dec) = W(h_dec) (eq. 18): a linear map onto the whole canvas."""

    def __init__(self, config: DrawConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self.shape = config.image_shape
        self.canvas = nn.Linear(config.dec_size, config.channels * config.height * config.width)

    def forward(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.canvas(h_dec).view(-1, *self.shape), None
