"""Where the loop is (RunState) and the RNG streams that make a resumed run repeat an uninterrupted one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass
class RunState:
    """Where the loop is: saved in the resume state."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within `epoch`
    wall_time: float = 0.0
    last_test: dict[str, float] | None = None


def rng_state(generators: dict[str, torch.Generator], device: torch.device) -> dict[str, torch.Tensor]:
    """torch's global stream (and CUDA's on a GPU) plus the family's named generators."""
    state = {"torch": torch.get_rng_state(), **{name: gen.get_state() for name, gen in generators.items()}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, torch.Tensor], generators: dict[str, torch.Generator], device: torch.device) -> bool:
    """Restore the RNG streams; False when the run moved between CPU and CUDA, whose generators
    differ: such a stream then restarts from a seed derived from the saved state."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    exact = True
    for name, gen in generators.items():
        saved = state[name]
        if saved.numel() != gen.get_state().numel():
            gen.manual_seed(int(saved.to(torch.int64).sum()))
            exact = False
        else:
            gen.set_state(saved)
    return exact


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`, a function of (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batches(n: int, batch_size: int, seed: int, epoch: int, start: int,
            device: torch.device | None = None) -> Iterator[tuple[int, torch.Tensor]]:  # fmt: skip
    """(batch index, example indices on `device`) of one epoch, from batch `start`; the last batch may be short."""
    order = epoch_order(n, seed, epoch).to(device or "cpu")  # one copy per epoch, none per step
    for b in range(start, math.ceil(n / batch_size)):
        yield b, order[b * batch_size : (b + 1) * batch_size]
