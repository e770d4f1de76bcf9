"""How a run executes, decided once before it starts: whether the training unit (DRAW's glimpse, the
classifier's glimpse loop) is compiled, and in which precision.

Neither changes what a run computes in exact arithmetic, so both may change on resume.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import util
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from drawcli.training.settings import TrainSettings

# torch.compile of a glimpse costs 8 s (warm cache) to 32 s (cold) on this project's 2-core CPUs
# and saves a fifth to a quarter of each eager step: 2000 steps of T = 10, LSTM 128, batch 64
# (1.28 million image-glimpses) took 199 s compiled against 251 s eager (docs/performance.md).
# So it repays even a cold compile from about a million image-glimpses; one MNIST epoch at
# T = 64 is 3.8 million.
COMPILE_PAYS_AT = 1_000_000
# A unit holding several glimpses (the classifier's loop) compiles unrolled, so its compile time
# grows with them: the classifier's 8 took 4-48 s here, while DRAW's 8 glimpses as one graph took
# 88 s and 64 took 412 s (docs/performance.md). --compile auto compiles units of up to this many.
UNROLLED_GLIMPSES = 16


@dataclass(frozen=True)
class Execution:
    """The decisions, with the reason shown in the progress header and stored in the checkpoint."""

    compiled: bool
    compile_reason: str
    precision: str  # "float32" or "bf16"
    unit: str = "glimpse"  # what is compiled: "glimpse", or "glimpse loop" for a unit of several

    def describe(self) -> str:
        """'glimpse compiled (auto: ...), float32 LSTM matmuls'."""
        how = "compiled" if self.compiled else "eager"
        return f"{self.unit} {how} ({self.compile_reason}), {self.precision} LSTM matmuls"


def compiler_missing(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, or None: inductor needs a C++ compiler on the CPU and Triton on CUDA."""
    if device.type == "cuda":
        return None if util.find_spec("triton") else "Triton is not installed"
    candidates = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(name and shutil.which(name) for name in candidates):
        return "no C++ compiler (g++, c++ or clang++) is on the PATH"
    return None


def plan(settings: TrainSettings, train_size: int, glimpses: int, device: torch.device, precision: str,
         unrolled: int = 1) -> Execution:  # fmt: skip
    """The execution of a run of `settings` over `train_size` examples of `glimpses` glimpses each,
    whose compiled unit holds `unrolled` of them."""
    image_glimpses = settings.total_steps(settings.steps_per_epoch(train_size)) * settings.batch_size * glimpses
    unit = "glimpse loop" if unrolled > 1 else "glimpse"
    return Execution(*decide_compile(settings.compile, image_glimpses, device, unrolled), precision, unit)


def decide_compile(choice: str, image_glimpses: int, device: torch.device, unrolled: int = 1) -> tuple[bool, str]:
    """(compile?, why) for --compile `choice` ("auto", "on", "off"), a run of `image_glimpses` in all
    and a compiled unit of `unrolled` glimpses."""
    if choice == "on":
        return True, "--compile on"
    if choice == "off":
        return False, "--compile off"
    missing = compiler_missing(device)
    if missing:
        return False, f"auto: {missing}"
    if image_glimpses < COMPILE_PAYS_AT:
        return False, f"auto: a short run, {image_glimpses:,} image-glimpses < {COMPILE_PAYS_AT:,}"
    if unrolled > UNROLLED_GLIMPSES:
        return False, f"auto: {unrolled} glimpses > {UNROLLED_GLIMPSES}, too many to compile as one loop"
    return True, "auto"


def as_run(planned: Execution, model: object) -> Execution:
    """`planned`, or eager with the compiler's error once the model's compiled unit failed and it fell back."""
    failure = getattr(model, "compile_failure", None)
    if failure:
        return Execution(False, f"torch.compile failed, so eager: {failure}", planned.precision, planned.unit)
    return planned


def bf16_warning(device: torch.device) -> str:
    """The warning for --amp bf16 where bf16 matmuls are not native on `device`, else ''."""
    if native_bf16(device):
        return ""
    needs = "compute capability 8.0 or later" if device.type == "cuda" else "AMX or AVX512-BF16"
    return (f"this {'GPU' if device.type == 'cuda' else 'CPU'} has no native bf16 matmuls ({needs}): --amp bf16 is "
            "emulated here, about 5x slower than float32 on an AVX2 CPU; --amp off is faster")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively: AMX or AVX512-BF16 on the CPU, compute capability 8 or more on CUDA.

    Without them a CPU emulates them: a 64 x 520 x 1024 bf16 matmul ran at 0.6 GFLOP/s against 32 in
    float32 on an AVX2 AMD EPYC (torch 2.14), a whole DRAW training step about 5x slower.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    cpu = torch.cpu
    return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
