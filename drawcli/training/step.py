"""One training step, used alike by the loop, the benchmark and the tests: loss, backward, clip, Adam.

The step's metric sums, its objective, gradient norm and the stop request travel in one small
tensor, reduced over ranks once: a NaN or inf on any rank survives the sum, so all ranks skip
a non-finite step together, and the update is skipped on the device without a host sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from drawcli import distributed
from drawcli.training.family import BatchLoss

STEP_FIELDS = ("stop", "objective", "grad_norm")  # after the family's metrics in StepOutput.sums


def make_optimizer(model: nn.Module, lr: float, beta1: float, device: torch.device) -> torch.optim.Adam:
    """Adam, fused (one kernel for all parameters) on CPU and CUDA, where it can also skip a step on-device."""
    options = {"lr": lr, "betas": (beta1, 0.999)}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.Adam(model.parameters(), **options, fused=True)
        except RuntimeError:  # a parameter dtype or device without a fused kernel
            pass
    return torch.optim.Adam(model.parameters(), **options)


def optimizer_step(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """Apply the step only if `finite` (a 0-dim bool tensor); fused Adam decides on the device, without a sync."""
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()  # read by fused Adam: skips the update and the step count
        optimizer.step()
    elif bool(finite):
        optimizer.step()


@dataclass
class StepOutput:
    """What one step leaves on the device: sums named by `names`, read on the host later."""

    names: tuple[str, ...]
    sums: torch.Tensor  # (len(names),) float32, summed over ranks

    def read(self, row: list[float]) -> dict[str, float]:
        """A host copy of `sums` (as a list) -> {name: value}."""
        return dict(zip(self.names, row))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[], BatchLoss], clip: float,
               scale: float = 1.0, ctx: distributed.Dist | None = None,
               stop: torch.Tensor | None = None) -> StepOutput:  # fmt: skip
    """One optimizer step on the objective `loss()` returns, its sum multiplied by `scale`.

    `scale` turns a rank's summed objective into its share of the global mean (objective_scale);
    `stop` (0-dim, on the device) is a flag to carry to every rank in the same reduction.
    """
    ctx = ctx or distributed.Dist()
    batch = loss()
    optimizer.zero_grad(set_to_none=True)
    try:
        (batch.objective.sum() * scale).backward()
    except Exception as exc:
        # A model may compile parts of its graph, whose backward compiles at first use; if the model
        # drops them after such a failure, the step is redone eagerly and any error after that is real.
        drop_compiled = getattr(model, "compiled_backward_failed", None)
        if drop_compiled is None or not drop_compiled(exc):
            raise
        batch = loss()
        optimizer.zero_grad(set_to_none=True)
        (batch.objective.sum() * scale).backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    device = grad_norm.device
    flag = stop if stop is not None else torch.zeros((), device=device)
    parts = [*batch.metrics.values(), flag, batch.objective.detach().sum(), grad_norm.to(device)]
    sums = distributed.all_sum(torch.stack(parts).float(), ctx)
    optimizer_step(optimizer, torch.isfinite(sums).all())
    return StepOutput((*batch.metrics, *STEP_FIELDS), sums)
