"""What bench.py measures: drawcli and the baseline as subjects that train (drawcli's one
training step) and sample, and the random binary batches they train on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch
from torch import nn

from baseline_draw import baseline_like
from drawcli.config import DrawConfig
from drawcli.model import DRAW
from drawcli.training.family import BatchLoss
from drawcli.training.settings import TrainSettings
from drawcli.training.step import make_optimizer, train_step

DEFAULTS = TrainSettings()  # lr, beta1 and clip of drawcli train


@dataclass
class Subject:
    """A model under test: its training objective, its optimizer and its sampler."""

    name: str
    model: nn.Module
    loss: Callable[[torch.Tensor], BatchLoss]  # images -> objective (no metrics)
    optimizer: Callable[[], torch.optim.Optimizer]  # a fresh one per training step function
    sample: Callable[[int], Any]
    per_image: bool  # objective per image (scaled by 1 / batch) or already the batch mean


def drawcli_subject(cfg: DrawConfig, device: torch.device) -> Subject:
    """drawcli's model, with the objective and the fused Adam of drawcli's training loop."""
    model = DRAW(cfg).to(device)

    def loss(x: torch.Tensor) -> BatchLoss:
        model.start_step()  # reduce-overhead: a new CUDA graph step (else nothing), as the training loop does
        return BatchLoss(model(x).loss, {})

    optimizer = partial(make_optimizer, model, DEFAULTS.lr, DEFAULTS.beta1, device, DEFAULTS.beta2)
    return Subject("drawcli", model, loss, optimizer, lambda n: model.generate(n), per_image=True)


def baseline_subject(cfg: DrawConfig, device: torch.device) -> Subject:
    """The straightforward per-glimpse baseline of benchmarks/baseline_draw.py, with plain Adam."""
    model = baseline_like(cfg).to(device)

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=DEFAULTS.lr, betas=(DEFAULTS.beta1, DEFAULTS.beta2))

    return Subject("baseline", model, lambda x: BatchLoss(model.loss(x), {}), optimizer, model.generate, per_image=False)


SUBJECTS: dict[str, Callable[[DrawConfig, torch.device], Subject]] = {
    "drawcli": drawcli_subject,
    "baseline": baseline_subject,
}


def step_function(subject: Subject, x: torch.Tensor) -> Callable[[], Any]:
    """One training step on x as drawcli trains (loss, backward, global-norm clip, Adam), with a new optimizer."""
    optimizer = subject.optimizer()
    scale = 1 / len(x) if subject.per_image else 1.0
    return lambda: train_step(subject.model, optimizer, partial(subject.loss, x), DEFAULTS.clip, scale)


def images(cfg: DrawConfig, batch: int, device: torch.device) -> torch.Tensor:
    """A batch of random binary images at MNIST's ink density."""
    return torch.bernoulli(torch.full((batch, *cfg.image_shape), 0.13)).to(device)
