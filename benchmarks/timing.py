"""Timers, the matmul rate, memory probes and the record of one measurement.

Peak memory is read in a fresh child process (json_from_child), since one process's peak
covers everything it ran before.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class Timer:
    """Times one callable: warm-up calls first, then repetitions of about min_time each."""

    def __init__(self, fn: Callable[[], Any], sync: Callable[[], None]) -> None:
        self.fn, self.sync = fn, sync
        self.inner = 1
        self.times: list[float] = []  # seconds per call, one per repetition

    def warm(self, warmup: int, min_time: float) -> None:
        """Run max(warmup, 1) untimed calls; the last one sets how many calls a repetition makes."""
        once = 0.0
        for _ in range(max(warmup, 1)):
            start = time.perf_counter()
            self.fn()
            self.sync()
            once = time.perf_counter() - start
        self.inner = max(1, math.ceil(min_time / max(once, 1e-9)))

    def rep(self) -> None:
        """One timed repetition."""
        start = time.perf_counter()
        for _ in range(self.inner):
            self.fn()
        self.sync()
        self.times.append((time.perf_counter() - start) / self.inner)


def measure(fn: Callable[[], Any], reps: int, warmup: int, min_time: float, sync: Callable[[], None]) -> list[float]:
    """Seconds per call of fn, one value per repetition, warm-up excluded."""
    timer = Timer(fn, sync)
    timer.warm(warmup, min_time)
    for _ in range(reps):
        timer.rep()
    return timer.times


def interleave(timers: list[Timer], reps: int) -> None:
    """`reps` repetitions of every timer in turn (A B A B ...): a change in a shared machine's load hits all alike."""
    for _ in range(reps):
        for timer in timers:
            timer.rep()


def matmul_gflops(rows: int, inner: int, cols: int, device: torch.device, reps: int, warmup: int, min_time: float) -> float:
    """Median fp32 rate in GFLOP/s of (rows x inner) @ (inner x cols)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=gen).to(device)
    b = torch.randn(inner, cols, generator=gen).to(device)
    out = torch.empty(rows, cols, device=device)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # true fp32 on GPUs too (no TF32)
    try:
        times = measure(lambda: torch.mm(a, b, out=out), reps, warmup, min_time, synchronizer(device))
    finally:
        torch.set_float32_matmul_precision(precision)
    return 2 * rows * inner * cols / statistics.median(times) / 1e9


def peak_memory_mib(device: torch.device) -> tuple[float, float | None]:
    """(this process's peak RSS, CUDA max_memory_allocated or None), in MiB.

    The RSS peak is /proc's VmHWM where there is one: getrusage's ru_maxrss survives execve, so
    in a child started by vfork it reports the parent's peak when that is higher.
    """
    rss_mib = _proc_status_mib("VmHWM:")
    if rss_mib is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss_mib = rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return rss_mib, cuda


def current_rss_mib() -> float | None:
    """The resident set now (Linux /proc), in MiB."""
    return _proc_status_mib("VmRSS:")


def _proc_status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def json_from_child(script: Path, args: list[str]) -> dict[str, Any]:
    """Run `script args` in a fresh interpreter and parse the JSON object its last line prints."""
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Result:
    """One subject at one (attention, batch) setting."""

    subject: str
    attention: bool
    batch: int
    train_s: list[float]  # seconds per training step, one per repetition
    sample_s: list[float]  # seconds per generate(batch), one per repetition
    peak_rss_mib: float | None = None  # of a fresh process: imports, model, 2 training steps, 1 generation
    rss_growth_mib: float | None = None  # that peak above the RSS after a warm-up step at batch 1
    cuda_peak_mib: float | None = None
    train_ips: float = field(init=False)
    sample_ips: float = field(init=False)

    def __post_init__(self) -> None:
        self.train_ips = self.batch / statistics.median(self.train_s)
        self.sample_ips = self.batch / statistics.median(self.sample_s)
