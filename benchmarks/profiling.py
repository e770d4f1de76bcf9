"""The benchmark's profile: where a training step's time goes, operator by operator (bench.py --profile)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from timing import synchronizer


def profile_step(step: Callable[[], Any], label: str, device: torch.device, rows: int = 30, steps: int = 3) -> None:
    """Print the top operators (by self time) of a training step, after two warm-up steps."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronizer(device)()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    print(f"\ntorch.profiler, {steps} drawcli training steps, {label}:")
    print(events.table(sort_by=sort, row_limit=rows))
    total = sum(getattr(e, sort) for e in events)
    matmul = sum(getattr(e, sort) for e in events if e.key in _MATMUL_OPS)
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"per step: matmul kernels ({', '.join(sorted(_MATMUL_OPS))}) {matmul / steps / 1e3:.1f} ms of "
          f"{total / steps / 1e3:.1f} ms self time ({matmul / max(total, 1):.0%}); {calls // steps} aten op calls, "
          f"nested ones included")  # fmt: skip


_MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm"}
