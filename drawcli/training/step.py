"""One training step, used alike by the loop, the benchmark and the tests: loss, backward, clip, Adam.

The step's metric sums, its objective, gradient norm and the stop request travel in one small
tensor, reduced over ranks once: a NaN or inf on any rank survives the sum, so all ranks skip
a non-finite step together, and the update is skipped on the device without a host sync.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from drawcli import distributed
from drawcli.contract import Reader, Writer
from drawcli.errors import ConfigError
from drawcli.training.family import BatchLoss
from drawcli.training.state import restore_rng, rng_state

STEP_FIELDS = ("stop", "objective", "grad_norm")  # after the family's metrics in StepOutput.sums


def make_optimizer(model: nn.Module, lr: float, beta1: float, device: torch.device, beta2: float = 0.999,
                   window_lr: float = 1.0) -> torch.optim.Adam:  # fmt: skip
    """Adam, fused (one kernel for all parameters) on CPU and CUDA, where it can also skip a step on-device;
    with `window_lr` != 1 the windows' placement layers learn at window_lr x lr (parameter_groups)."""
    options: dict[str, Any] = {"lr": lr, "betas": (beta1, beta2)}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.Adam(parameter_groups(model, lr, window_lr), **options, fused=True)
        except RuntimeError:  # a parameter dtype or device without a fused kernel
            pass
    return torch.optim.Adam(parameter_groups(model, lr, window_lr), **options)


def parameter_groups(model: nn.Module, lr: float, window_lr: float) -> list[dict[str, Any]]:
    """One group of all parameters; with window_lr != 1, the readers' and writers' window_parameters()
    apart, with "lr_scale" window_lr, which the loop's schedule multiplies its rate by.

    Adam moves every weight by about lr a step whatever its gradient, so a window layer's output,
    a sum over dec_size hidden units in [-1, 1], can move by up to dec_size x lr in one step: a wide
    model can throw its windows into a blank corner, where they get no gradient back.
    """
    if window_lr == 1.0:
        return [{"params": list(model.parameters())}]
    placing = {id(p) for m in model.modules() if isinstance(m, (Reader, Writer)) for p in m.window_parameters()}
    if not placing:
        raise ConfigError(f"--window-lr {window_lr:g} scales the learning rate of the layers that place attention windows, "
                          "but no reader or writer of this model places one; leave it at 1")  # fmt: skip
    rest = [p for p in model.parameters() if id(p) not in placing]
    windows = [p for p in model.parameters() if id(p) in placing]
    return [{"params": rest, "lr_scale": 1.0}, {"params": windows, "lr": lr * window_lr, "lr_scale": window_lr}]


def set_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Set each group's rate to `rate` x its lr_scale (parameter_groups). A rate held in a tensor (a
    captured step's, training/graphed.py) is written in place: the graph reads that memory."""
    for group in optimizer.param_groups:
        value = rate * group.get("lr_scale", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)  # a device-side write, no host sync
        else:
            group["lr"] = value


def optimizer_step(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """Apply the step only if `finite` (a 0-dim bool tensor); fused Adam decides on the device, without a sync."""
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]  # read by fused Adam: skips the update and the step count
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
               scale: float = 1.0, ctx: distributed.Dist | None = None, stop: torch.Tensor | None = None,
               generators: dict[str, torch.Generator] | None = None) -> StepOutput:  # fmt: skip
    """One optimizer step on the objective `loss()` returns, its sum multiplied by `scale`.

    `scale` turns a rank's summed objective into its share of the global mean (objective_scale);
    `stop` (0-dim, on the device) is a flag to carry to every rank in the same reduction;
    `generators` are the RNG streams `loss()` draws from besides torch's global one.
    """
    ctx, generators = ctx or distributed.Dist(), generators or {}
    device = next(model.parameters()).device
    rng = rng_state(generators, device)
    batch = loss()
    try:
        backward(batch, optimizer, scale)
    except Exception as exc:
        if ctx.world_size > 1:
            raise  # under DDP an aborted backward leaves the gradient reduction half done: no redo
        del batch  # free the failed attempt's graph (and the traceback's hold on it) before the redo
        traceback.clear_frames(exc.__traceback__)
        batch = _redo_eagerly(model, optimizer, loss, scale, exc, lambda: restore_rng(rng, generators, device))
    return finish_step(model, optimizer, batch, clip, ctx, stop)


def finish_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: BatchLoss, clip: float,
                ctx: distributed.Dist, stop: torch.Tensor | None) -> StepOutput:  # fmt: skip
    """After backward: clip, gather the sums (reduced over ranks), and update unless any is non-finite.

    Host-sync free, so a CUDA graph can record it (training/graphed.py): the norm, the sums and
    the skip decision all stay on the device.
    """
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    flag = stop if stop is not None else torch.zeros((), device=grad_norm.device)
    parts = [*batch.metrics.values(), flag, batch.objective.detach().sum(), grad_norm]
    sums = distributed.all_sum(torch.stack(parts).float(), ctx)
    optimizer_step(optimizer, torch.isfinite(sums).all())
    return StepOutput((*batch.metrics, *STEP_FIELDS), sums)


def _redo_eagerly(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[], BatchLoss], scale: float,
                  exc: Exception, rewind: Callable[[], object]) -> BatchLoss:  # fmt: skip
    """After an error in backward: if the model ran compiled parts (whose backward compiles at first
    use), redo the step without them, from the same random draws; otherwise re-raise."""
    eager_rerun = getattr(model, "eager_rerun", None)
    rerun = eager_rerun(exc) if eager_rerun is not None else None
    if rerun is None:
        raise exc
    rewind()  # the same binarization and noise as the failed attempt: resume stays bit for bit
    with rerun:  # an error here is the model's own: the compiled parts come back and it propagates
        batch = loss()
        backward(batch, optimizer, scale)
    return batch


def backward(batch: BatchLoss, optimizer: torch.optim.Optimizer, scale: float) -> None:
    """Zero the gradients (to None) and backpropagate the batch's summed objective times `scale`."""
    optimizer.zero_grad(set_to_none=True)
    (batch.objective.sum() * scale).backward()
