"""The interface a kind of model implements to be trained by the loop (training/loop.py).

The loop knows steps, epochs, checkpoints and ranks; a family knows its data, its loss and its
held-out evaluation. DRAW is the first family (training/draw.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from drawcli.training.execution import Execution


@dataclass
class BatchLoss:
    """One batch's training objective and metrics, on this rank's share of the batch."""

    objective: torch.Tensor  # (B,) per-example objective the gradient follows (0-dim for a batch mean)
    metrics: dict[str, torch.Tensor]  # name -> 0-dim sum over the examples, detached; keys = family.metrics


class ModelFamily(ABC):
    """A kind of model as the training loop sees it.

    `metrics` names the per-step sums `batch_loss` returns; the first is the loss shown in
    progress. `labels` gives short display names. The loop divides every sum by the number of
    examples, so metrics are means per example in logs and progress.
    """

    metrics: tuple[str, ...]
    labels: dict[str, str] = {}
    train_size: int  # examples in one epoch

    @abstractmethod
    def build(self) -> nn.Module:
        """The model, built after the loop seeds torch's RNG; its `config` goes into the checkpoint."""

    def execution(self) -> Execution:
        """How the built model runs (compiled? which precision?), for the header and the checkpoint; default eager float32."""
        return Execution(compiled=False, compile_reason="eager", precision="float32")

    def prepare(self, model: nn.Module) -> None:
        """Called once the model is on its device (e.g. to move data there); default: nothing."""

    def index_device(self) -> torch.device:
        """Where batch indices are made: the device that holds the training data; default the CPU."""
        return torch.device("cpu")

    def generators(self) -> dict[str, torch.Generator]:
        """RNG streams of the family's own, saved with the run and restored on resume."""
        return {}

    def capturable_from(self) -> int | None:
        """The first step from which `batch_loss` computes the same function of `indices` at every step,
        reading only tensors fixed for the run and drawing noise only from torch's CUDA stream and
        `generators()`: from then on the whole step may be one CUDA graph (training/graphed.py). None: never."""
        return None

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch's first batch (0-based; also when a resumed run re-enters one); default: nothing."""

    @abstractmethod
    def batch_loss(self, net: nn.Module, model: nn.Module, indices: torch.Tensor, step: int) -> BatchLoss:
        """Objective and metric sums of the examples `indices` (the global batch) at optimizer step `step`.

        `net` is the model as called for training (DDP-wrapped under torchrun); `model` the bare one.
        """

    @abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics (rank 0 only), logged as test_<name> and kept as the summary's last_test."""

    def summary(self) -> dict[str, Any]:
        """Fields the checkpoint's training summary adds to the loop's own."""
        return {}

    def describe(self, metrics: dict[str, float]) -> str:
        """Metrics (training means or held-out) as progress text, e.g. 'loss 95.20, recon 70.10'."""
        if not metrics:
            return "not measured"
        return ", ".join(f"{self.labels.get(k, k)} {v:.2f}" for k, v in metrics.items())
