"""An exponential moving average of the weights (`--ema DECAY`): the model a run saves and evaluates.

Training goes on from the raw weights; the average follows them after every optimizer step. The
run's checkpoint holds the averaged weights (so `evaluate`, `sample` and the rest use them) and
its resume file the raw ones (resume.to_bytes' `weights`), so a resumed run repeats an
uninterrupted one bit for bit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

RAW = "raw_"  # prefix of the raw weights' held-out metrics beside the averaged ones (test_raw_error, ...)


def decay_at(decay: float, step: int) -> float:
    """The decay of the update after `step` optimizer steps (0-based): min(decay, (1 + step) / (10 + step)).

    The ramp (TensorFlow's ExponentialMovingAverage with num_updates) keeps the first steps from
    leaving most of the average at the random start: the first update keeps 1/10 of it.
    """
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """avg <- d avg + (1 - d) w over the model's parameters (float32, on their device); buffers are not averaged."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an average's decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.names = [name for name, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimizer step `step` (0-based; a skipped step folds in the same weights)."""
        weight = 1.0 - decay_at(self.decay, step)
        for value, param in zip(self.shadow, self.params):
            value.lerp_(param, weight)

    @torch.no_grad()
    def load(self, averaged: dict[str, torch.Tensor]) -> None:
        """Set the average from a state dict holding it (the run's checkpoint)."""
        for name, value in zip(self.names, self.shadow):
            value.copy_(averaged[name])

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; its raw ones come back after.

        Copies in place, so the parameters stay the same tensors (compiled code and the optimizer keep theirs).
        """
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            for param, value in zip(self.params, self.shadow):
                param.copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(self.params, raw):
                    param.copy_(value)


def held_out(evaluate: Callable[[nn.Module], dict[str, float]], model: nn.Module,
             average: WeightAverage | None) -> dict[str, float]:  # fmt: skip
    """`evaluate(model)` of the model as saved; with an average, also of the raw weights, as raw_<name>."""
    if average is None:
        return evaluate(model)
    raw = evaluate(model)
    with average.applied():
        averaged = evaluate(model)
    return {**averaged, **{RAW + name: value for name, value in raw.items()}}


def describe_held_out(describe: Callable[[dict[str, float]], str], metrics: dict[str, float]) -> str:
    """Held-out metrics as progress text: the saved model's, then '(raw weights: ...)' when there are raw ones."""
    raw = {k.removeprefix(RAW): v for k, v in metrics.items() if k.startswith(RAW)}
    text = describe({k: v for k, v in metrics.items() if not k.startswith(RAW)})
    return f"{text} (raw weights: {describe(raw)})" if raw else text
