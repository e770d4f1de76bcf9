"""Data-parallel training under torchrun, with PyTorch's own DistributedDataParallel.

Every rank builds the same global batch, the same binarization and the same latent noise
from identically seeded generators, then keeps its own contiguous shard. Results are thus a
function of (seed, step, position in the global batch) and not of the number of ranks: a
run on 2 ranks takes the same steps as a single process with the same global batch, up to
floating-point summation order. `--batch-size` is the global batch.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from drawcli.errors import DrawcliError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, GIFs, metrics and progress."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """torchrun (and torch.distributed.run) sets these for every worker."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def init(device_name: str) -> tuple[Dist, torch.device | None]:
    """Join the process group when launched by torchrun (NCCL on CUDA, Gloo on the CPU).

    Returns the job description and, under torchrun, the device this rank must use
    (cuda:LOCAL_RANK or the CPU); None means "let the caller choose".
    """
    if not launched_by_torchrun():
        return Dist(), None
    ctx = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name == "cuda" and not use_cuda:
        raise DrawcliError("--device cuda was asked for, but no CUDA device is available here")
    if use_cuda:
        torch.cuda.set_device(ctx.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return ctx, torch.device("cuda", ctx.local_rank) if use_cuda else torch.device("cpu")


def close(ctx: Dist, finished: bool = True) -> None:
    """Leave the process group; after a normal finish, first meet the other ranks at a barrier.

    Gloo's worker threads drop a finished collective's tensors after the caller has its result,
    and that needs the GIL. A rank that reached interpreter shutdown first aborted (SIGABRT,
    "terminate called without an active exception") when a worker asked for the GIL then. The
    barrier's wait holds every rank, GIL released, until all ranks are done, which gives the
    workers that time. destroy_process_group does not join them: DDP keeps the group alive
    (seen in torch 2.14).
    After an error the barrier is skipped, since another rank may never reach it.
    """
    if not (ctx.active and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[tuple[Dist, torch.device | None]]:
    """init() on entry (a no-op unless launched by torchrun); on exit close(), with the barrier
    after a normal finish and without it after an exception."""
    ctx, device = init(device_name)
    try:
        yield ctx, device
    except BaseException:
        close(ctx, finished=False)
        raise
    close(ctx)


def shard(tensor: torch.Tensor, ctx: Dist, dim: int = 0) -> torch.Tensor:
    """This rank's contiguous part of a global-batch tensor (parts differ by at most one row)."""
    if not ctx.active:
        return tensor
    return torch.tensor_split(tensor, ctx.world_size, dim=dim)[ctx.rank]


def wrap(model: nn.Module, ctx: Dist, device: torch.device) -> nn.Module:
    """DDP around the model when the job has several ranks; the bare model otherwise."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def objective_scale(global_batch: int, ctx: Dist) -> float:
    """Factor turning a rank's summed per-image loss into its share of the global mean.

    DDP averages gradients over ranks, so each rank's sum is multiplied by world / B: the
    average of the ranks' gradients is then the gradient of sum_over_all / B exactly, even
    when the last batch does not split evenly.
    """
    return ctx.world_size / global_batch


def all_sum(tensor: torch.Tensor, ctx: Dist) -> torch.Tensor:
    """Sum a small tensor over ranks (in place); a no-op for a single process."""
    if ctx.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def computed_in_parts(fn: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, ctx: Dist) -> torch.Tensor:
    """fn(rows) for rows (N, ...) with each rank computing fn on its contiguous part only (the
    teachers' labelling, say), then every rank holding the whole (N, ...) result.

    fn must treat rows independently; it sees other batch boundaries than in one process, so a
    batched fn may differ by rounding with the number of ranks. With fewer rows than ranks every
    rank computes them all (no rank is left with an empty part).
    """
    if not ctx.active or len(rows) < ctx.world_size:
        return fn(rows)
    parts = torch.tensor_split(rows, ctx.world_size)
    mine = fn(parts[ctx.rank])
    padded = mine.new_zeros((len(parts[0]), *mine.shape[1:]))  # all_gather wants equal shapes; part 0 is the longest
    padded[: len(mine)] = mine
    return torch.cat([got[: len(part)] for got, part in zip(_all_gather(padded), parts)])


def _all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of an equal-shaped tensor, on the tensor's device (NCCL gathers on this rank's GPU)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else tensor.device
    gathered = [torch.empty_like(tensor, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.to(device))
    return [part.to(tensor.device) for part in gathered]


def broadcast_text(text: str, ctx: Dist, limit: int = 4096) -> str:
    """Rank 0's string on every rank (e.g. a run directory named after rank 0's clock)."""
    if not ctx.active:
        return text
    buffer = torch.zeros(limit, dtype=torch.uint8)
    if ctx.is_main:
        raw = text.encode()[:limit]
        buffer[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    dist.broadcast(buffer, src=0)
    return bytes(buffer[buffer != 0].tolist()).decode()


def check_identical(model: nn.Module, ctx: Dist) -> None:
    """Fail loudly if the ranks' weights differ (DDP should make them bit-identical)."""
    if not ctx.active:
        return
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()]).cpu()
    gathered = _all_gather(flat)
    if not all(torch.equal(gathered[0], g) for g in gathered[1:]):
        raise DrawcliError("the ranks' weights differ after training; this is a bug, please report it")
