"""The loop's training step, and on CUDA the whole step as one CUDA graph (`train --cuda-graph`).

A DRAW step at 64 glimpses is thousands of kernel launches of a few microseconds each, and on a
GPU those launches and the Python between them set the pace, not the arithmetic
(docs/performance.md, CUDA). A CUDA graph records the step's kernels once per batch shape and
replays them with one launch. What makes the step recordable:

- static inputs: each step's batch indices are copied into a buffer the graph reads (the family
  keeps its data on the GPU), so gathering the batch, binarizing it and drawing the latent noise
  happen inside the graph;
- graph-safe random numbers: the noise comes from torch's CUDA stream, which torch.cuda.graph
  advances at every replay, and the binarization from the family's generators, registered with
  the graph (CUDAGraph.register_generator_state). A replay draws what an eager step would from
  the same state and leaves the streams where an eager step would, so resume stays exact;
- Adam in its capturable form, each group's rate in a device tensor that step.set_rate writes
  in place, and step.finish_step's clipping and on-device skip of a non-finite step (fused
  Adam's found_inf): nothing in the step waits for the GPU;
- the step's sums, the graph's static output, copied after each replay, so that the loop can
  queue several steps and read them in one go, as it does without the graph.

Each batch shape first runs WARMUP eager steps on a side stream (they compile the glimpse,
create Adam's state and cuBLAS's handles), then is captured. A capture that fails warns once,
and the run goes on with the eager (or compiled) step. On the CPU, under torchrun, or for a
family whose step is not capturable, every step is training/step.py's train_step, as before.
"""

from __future__ import annotations

import contextlib
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from drawcli import distributed
from drawcli.training.family import BatchLoss, ModelFamily
from drawcli.training.settings import TrainSettings
from drawcli.training.state import restore_rng, rng_state
from drawcli.training.step import StepOutput, backward, finish_step, train_step

WARMUP = 2  # eager steps of each batch shape before it is captured


def decide(choice: str, device: torch.device, world_size: int, compile_mode: str, capturable_from: int | None) -> tuple[bool, str]:
    """(capture the step?, why) for --cuda-graph `choice` on `device`, with `world_size` processes.

    `capturable_from` is the family's (ModelFamily.capturable_from): None when its step can never be a graph.
    """
    if choice == "off":
        return False, "--cuda-graph off"
    if device.type != "cuda":
        return False, "the CPU has no CUDA graphs"
    if world_size > 1:
        return False, "not under torchrun: the gradients' all-reduce stays outside a graph"
    if compile_mode == "reduce-overhead":
        return False, "--compile-mode reduce-overhead graphs each glimpse instead"
    if capturable_from is None:
        return False, "this model's step reads data that change between steps"
    return True, f"--cuda-graph {choice}"


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam's groups capturable, each rate a one-element tensor on `device` that step.set_rate writes.

    float64 on the CPU, where fused Adam reads a tensor rate as a double (the same update as a float
    rate, bit for bit); float32 on CUDA, the dtype its fused kernel reads.
    """
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):  # a resume restores plain numbers
            group["lr"] = torch.tensor(float(group["lr"]), dtype=dtype, device=device)


def recorded_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[], BatchLoss], clip: float,
                  scale: float, stop: torch.Tensor) -> StepOutput:  # fmt: skip
    """The step a graph records: loss, backward, clip, the non-finite check and Adam, with no host
    sync and no redo after a compiler error (the eager warm-up steps have compiled everything)."""
    batch = loss()
    backward(batch, optimizer, scale)
    return finish_step(model, optimizer, batch, clip, distributed.Dist(), stop)


def record(step: Callable[[], StepOutput], generators: list[torch.Generator]) -> tuple[Any, StepOutput]:
    """(graph, its static output): `step` captured on CUDA, with `generators` drawn from inside it."""
    graph = torch.cuda.CUDAGraph()
    for generator in generators:
        graph.register_generator_state(generator)  # before capture begins, as torch requires
    with torch.cuda.graph(graph):
        out = step()
    return graph, out


@dataclass
class Captured:
    """One batch shape's graph: the buffer its indices are copied into, and its output."""

    graph: Any  # torch.cuda.CUDAGraph
    indices: torch.Tensor  # (B,) int64 on the data's device: the static input
    out: StepOutput  # sums (len(names),) float32: the static output, overwritten by each replay


class Steps:
    """The loop's step function: `steps(indices, step, stop)` -> the step's StepOutput, eager or replayed."""

    def __init__(self, family: ModelFamily, settings: TrainSettings, model: nn.Module, net: nn.Module,
                 optimizer: torch.optim.Optimizer, device: torch.device, ctx: distributed.Dist,
                 warn: Callable[[str], None]) -> None:  # fmt: skip
        self.family, self.model, self.net, self.optimizer = family, model, net, optimizer
        self.clip, self.device, self.ctx, self.warn = settings.clip, device, ctx, warn
        self.start = family.capturable_from()
        self.capture, self.reason = decide(settings.cuda_graph, device, ctx.world_size, settings.compile_mode, self.start)
        # An explicit `on` that cannot be honoured says why, once, at the first step.
        self.notice = f"--cuda-graph on: {self.reason}, so each step runs as before" if settings.cuda_graph == "on" and not self.capture else ""
        self.graphs: dict[int, Captured] = {}
        self.buffers: dict[int, torch.Tensor] = {}
        self.warmed: Counter[int] = Counter()

    @property
    def note(self) -> str:
        """What the progress header adds: '' on the CPU, where nothing changes."""
        if self.capture:
            return f"; step captured as a CUDA graph per batch shape ({self.reason})"
        return f"; step not captured ({self.reason})" if self.device.type == "cuda" else ""

    def __call__(self, indices: torch.Tensor, step: int, stop: torch.Tensor) -> StepOutput:
        """Optimizer step `step` on the examples `indices` (B,); `stop` (0-dim) is the loop's stop flag."""
        if self.notice:
            self.warn(self.notice)
            self.notice = ""
        if not self.capture or self.start is None or step < self.start:
            return self._eager(indices, step, stop)
        # From here every step, warm-up or replay, reads the rate from the same device tensor, so a resumed
        # run (whose first steps of each shape warm up again) updates the weights as the one it continues.
        make_capturable(self.optimizer, self.device)
        size = len(indices)
        captured = self.graphs.get(size)
        if captured is None:
            buffer = self.buffers.setdefault(size, torch.empty_like(indices))
            buffer.copy_(indices)
            if self.warmed[size] < WARMUP:
                self.warmed[size] += 1
                with self._side_stream(), _quiet_capturable():
                    return self._eager(buffer, step, stop)
            captured = self._capture(buffer, step, stop)
            if captured is None:
                return self._eager(indices, step, stop)
        captured.indices.copy_(indices, non_blocking=True)
        captured.graph.replay()
        return StepOutput(captured.out.names, captured.out.sums.clone())  # the next replay overwrites sums

    def _loss(self, indices: torch.Tensor, step: int) -> Callable[[], BatchLoss]:
        return lambda: self.family.batch_loss(self.net, self.model, indices, step)

    def _eager(self, indices: torch.Tensor, step: int, stop: torch.Tensor) -> StepOutput:
        scale = distributed.objective_scale(len(indices), self.ctx)
        return train_step(self.model, self.optimizer, self._loss(indices, step), self.clip, scale, self.ctx, stop,
                          self.family.generators())  # fmt: skip

    def _capture(self, buffer: torch.Tensor, step: int, stop: torch.Tensor) -> Captured | None:
        """Record the step on `buffer`'s shape; None (after one warning) when recording fails."""
        generators = self.family.generators()
        rng = rng_state(generators, self.device)
        make_capturable(self.optimizer, self.device)
        scale = distributed.objective_scale(len(buffer), self.ctx)
        try:
            graph, out = record(lambda: recorded_step(self.model, self.optimizer, self._loss(buffer, step), self.clip, scale, stop),
                                [g for g in generators.values() if g.device.type == "cuda"])  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any capture failure: the eager step goes on
            self._give_up(exc, rng)
            return None
        captured = Captured(graph, buffer, out)
        self.graphs[len(buffer)] = captured
        return captured

    def _give_up(self, exc: Exception, rng: dict[str, torch.Tensor]) -> None:
        """After a failed capture: nothing ran, but drop what it left (gradients in its memory,
        the RNG streams' capture bookkeeping) and go on without graphs."""
        traceback.clear_frames(exc.__traceback__)
        self.optimizer.zero_grad(set_to_none=True)
        for group in self.optimizer.param_groups:
            group["capturable"] = False  # eager from now on (its rate may stay a tensor: fused Adam reads either)
        restore_rng(rng, self.family.generators(), self.device)
        self.capture, self.graphs = False, {}
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        self.reason = f"capture failed: {type(exc).__name__}: {first_line}"
        self.warn(f"capturing the training step as a CUDA graph failed ({type(exc).__name__}: {first_line}); "
                  "training continues without it")  # fmt: skip

    @contextlib.contextmanager
    def _side_stream(self) -> Iterator[None]:
        """Warm-up steps on a side stream, as CUDA graph capture asks; nothing on the CPU."""
        if self.device.type != "cuda":
            yield
            return
        side, main = torch.cuda.Stream(self.device), torch.cuda.current_stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            yield
        main.wait_stream(side)


@contextlib.contextmanager
def _quiet_capturable() -> Iterator[None]:
    """torch warns when a capturable optimizer steps outside a capture: here that is the plan."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*capturable=True.*")
        yield
