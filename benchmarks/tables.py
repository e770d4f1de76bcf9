"""The benchmark's report: environment, FLOP, matmul-rate, throughput and compile tables."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from drawcli.config import DrawConfig
from flops import FLOP_PARTS, ISSUE_GLIMPSE_MFLOP, ISSUE_TRAIN_MFLOP, attention, glimpse_flops, lstm_shape, train_flops
from results import device_name
from timing import Result


def environment(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """What the numbers depend on: versions, device, threads, load."""
    env: dict[str, Any] = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": device_name(str(device)),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "args": vars(args),
    }
    try:
        root = Path(__file__).resolve().parents[1]
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "drawcli", "plugins"], cwd=root, capture_output=True, text=True)
        env["git"] = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        env["git"] = None
    return env


def print_table(title: str, columns: list[str], rows: list[list[str]], plain: bool) -> None:
    """A rich table when rich is there and --plain is not given; else aligned text."""
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if not plain:
        table = Table(title=title, title_justify="left")
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        Console(width=max(200, Console().width)).print(table)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print(title)
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths))))
    for row in rows:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    print()


def report(
    configs: dict[str, DrawConfig], rates: dict[str, float], results: list[Result], batches: list[int], plain: bool
) -> list[dict[str, Any]]:
    """Print the FLOP, matmul and throughput tables; return the summary rows."""
    print_flop_table(configs, plain)
    print_table("fp32 matmul rate", ["shape (rows x inner x cols)", "GFLOP/s"], [[k, f"{v:.1f}"] for k, v in rates.items()], plain)
    summary = summarize(configs, rates, results, batches)
    print_throughput_table(summary, plain)
    return summary


def print_flop_table(configs: dict[str, DrawConfig], plain: bool) -> None:
    """Matmul FLOPs per image of each setting, by part, with the issue's estimates in the title."""
    flops = {label: glimpse_flops(cfg) for label, cfg in configs.items()}
    names = [k for k in FLOP_PARTS if any(k in f for f in flops.values())]
    rows = [[k, *(f"{f[k] / 1e3:,.1f}" if k in f else "-" for f in flops.values())] for k in names]
    rows.append(["glimpse forward, MFLOP", *(f"{sum(f.values()) / 1e6:.3f}" for f in flops.values())])
    rows.append(["training step (3 x forward x T), MFLOP", *(f"{train_flops(c) / 1e6:.1f}" for c in configs.values())])
    print_table(
        f"Matmul FLOPs per image, kFLOP per glimpse forward (issue, attention: ~{ISSUE_GLIMPSE_MFLOP} MFLOP per glimpse, "
        f"~{ISSUE_TRAIN_MFLOP:.0f} MFLOP per step)",
        ["part", *configs],
        rows,
        plain,
    )


def summarize(
    configs: dict[str, DrawConfig], rates: dict[str, float], results: list[Result], batches: list[int]
) -> list[dict[str, Any]]:
    """One row per (setting, batch): drawcli against the baseline and against the matmul-bound limit."""
    by_key = {(r.subject, r.attention, r.batch): r for r in results}
    summary = []
    for label, cfg in configs.items():
        attends = any(attention(cfg))
        for batch in batches:
            ours, base = by_key[("drawcli", attends, batch)], by_key[("baseline", attends, batch)]
            rate = rates[lstm_shape(batch)]
            limit = rate * 1e9 / train_flops(cfg)
            summary.append({
                "setting": label, "batch": batch,
                "ours_train_ips": ours.train_ips, "baseline_train_ips": base.train_ips,
                "ours_over_baseline": ours.train_ips / base.train_ips,
                "limit_ips": limit, "limit_gflops": rate, "ours_over_limit": ours.train_ips / limit,
                "baseline_over_limit": base.train_ips / limit,
                "ours_sample_ips": ours.sample_ips, "baseline_sample_ips": base.sample_ips,
                "ours_sample_over_train": ours.sample_ips / ours.train_ips,
                "ours_peak_rss_mib": ours.peak_rss_mib, "baseline_peak_rss_mib": base.peak_rss_mib,
                "ours_rss_growth_mib": ours.rss_growth_mib, "baseline_rss_growth_mib": base.rss_growth_mib,
                "ours_cuda_peak_mib": ours.cuda_peak_mib, "baseline_cuda_peak_mib": base.cuda_peak_mib,
            })  # fmt: skip
    return summary


def print_throughput_table(summary: list[dict[str, Any]], plain: bool) -> None:
    """The summary rows as the throughput table (training, sampling, peak memory)."""
    rows = []
    for s in summary:
        mem = f"{_mib(s['ours_peak_rss_mib'], s['ours_rss_growth_mib'])} / {_mib(s['baseline_peak_rss_mib'], s['baseline_rss_growth_mib'])}"
        if s["ours_cuda_peak_mib"] is not None and s["baseline_cuda_peak_mib"] is not None:
            mem += f"; cuda {s['ours_cuda_peak_mib']:,.0f} / {s['baseline_cuda_peak_mib']:,.0f}"
        rows.append([
            f"{s['setting']}, {s['batch']}",
            f"{s['ours_train_ips']:.1f}", f"{s['baseline_train_ips']:.1f}", f"{s['ours_over_baseline']:.2f}x",
            f"{s['limit_ips']:.0f}", f"{s['ours_over_limit']:.0%}",
            f"{s['ours_sample_ips']:,.0f}", f"{s['baseline_sample_ips']:,.0f}", f"{s['ours_sample_over_train']:.1f}x",
            mem,
        ])  # fmt: skip
    print_table(
        "Throughput, images/s (medians); limit = matmul-bound training rate at the LSTM shape of that batch",
        ["setting, batch", "ours train", "base train", "ours/base", "limit", "ours/limit",
         "ours sample", "base sample", "ours sample/train", "peak RSS MiB (+over batch 1) ours / base"],
        rows,
        plain,
    )  # fmt: skip


def print_compile_table(rows: list[dict[str, Any]], mode: str, plain: bool) -> None:
    """compile_section's rows: each way drawcli trains, in images/s and against the baseline and eager drawcli."""
    table = []
    for r in rows:
        for name, ips in r["ips"].items():
            seconds = r["compile_s"].get(name)
            table.append([f"{r['setting']}, {r['batch']}", name, f"{ips:.1f}", f"{ips / r['ips']['baseline']:.2f}x",
                          f"{ips / r['ips']['eager']:.2f}x", "-" if seconds is None else f"{seconds:.0f} s"])  # fmt: skip
    print_table(f"drawcli train's ways to run (torch.compile mode {mode}), training images/s, interleaved",
                ["setting, batch", "run", "img/s", "/ baseline", "/ eager", "compile time"], table, plain)


def _mib(peak: float | None, growth: float | None) -> str:
    if peak is None:
        return "-"
    return f"{peak:,.0f}" + ("" if growth is None else f" (+{growth:,.0f})")
