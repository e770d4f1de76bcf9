"""Built-in `gaussian` sampler: Q(z | h_enc) = N(mu, sigma), prior N(0, I) (section 2)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from drawcli.config import DrawConfig
from drawcli.contract import Sampler


class GaussianSampler(Sampler):
    """Diagonal Gaussian posterior with mu and log sigma linear in h_enc (eq. 6, 10-11)."""

    def __init__(self, config: DrawConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self.z_size = config.z_size
        self.posterior = nn.Linear(config.enc_size, 2 * config.z_size)  # [mu, log sigma]

    def forward(self, h_enc: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.posterior(h_enc).chunk(2, dim=1)
        sigma = torch.exp(log_sigma)
        z = mu + sigma * noise  # reparameterisation
        # eq. 11: KL(N(mu, sigma) || N(0, 1)) = 0.5 sum_j (mu^2 + sigma^2 - log sigma^2 - 1)
        kl = 0.5 * (mu**2 + sigma**2 - 2 * log_sigma - 1).sum(dim=1)
        return z, kl

    def prior(self, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def log_prob(self, z: torch.Tensor, h_enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.posterior(h_enc).chunk(2, dim=1)
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        log_q = (-0.5 * ((z - mu) * torch.exp(-log_sigma)) ** 2 - log_sigma - half_log_2pi).sum(dim=1)
        log_p = (-0.5 * z**2 - half_log_2pi).sum(dim=1)
        return log_q, log_p
