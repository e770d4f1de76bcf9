"""Where a command runs: the device and the CPU thread count, chosen the same way by every command."""

from __future__ import annotations

import os

import torch

from drawcli.choices import DEVICES
from drawcli.errors import DrawcliError

MAX_THREADS_PER_CORE = 4  # beyond this OpenMP only thrashes, and at tens of thousands it crashes the process


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable cores, at least 1 and at most 8.

    DRAW's matmuls are small (64 x 520 x 1024): extra threads buy little, and a thread count
    equal to the core count collapses when another process holds a core (OpenMP threads spin
    at every barrier waiting for the one that was descheduled).
    """
    return max(1, min(8, usable_cores() // 2))


def pick_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else CPU; asking for CUDA without one is an error."""
    if name not in DEVICES:
        raise DrawcliError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DrawcliError("--device cuda was asked for, but no CUDA device is available here")
    return torch.device(name)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (default: `default_threads()`); returns it."""
    cores = usable_cores()
    if threads is not None and threads > MAX_THREADS_PER_CORE * cores:
        raise DrawcliError(f"--threads {threads} is more than {MAX_THREADS_PER_CORE} a core for the {cores} cores here; "
                           f"use {MAX_THREADS_PER_CORE * cores} or fewer")  # fmt: skip
    torch.set_num_threads(threads or default_threads())
    return torch.get_num_threads()


def setup(device: str, threads: int | None) -> torch.device:
    """The device a command runs on, after setting the CPU thread count."""
    set_threads(threads)
    return pick_device(device)
