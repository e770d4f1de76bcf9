"""Training and sampling throughput of drawcli's DRAW against a straightforward baseline.

One run measures, at the paper's MNIST setting (T 64, LSTM 256, z 100, read 2, write 5):
training and sampling images/s of drawcli and of benchmarks/baseline_draw.py, with attention
and without, at each batch size; the machine's fp32 matmul rate at the LSTM shapes and at
2048^3; the matmul-bound training limit from an analytic FLOP count; and peak memory.
drawcli is used only through DrawConfig, DRAW(config), model(x).loss and model.generate(n).

    .venv/bin/python benchmarks/bench.py --quick
    .venv/bin/python benchmarks/bench.py --threads 1 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from drawcli.config import DrawConfig
from drawcli.model import COMPILE_MODES, DRAW
from drawcli.train import TrainSettings, make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_draw import baseline_like  # noqa: E402

NO_ATTENTION = ("none", "no-attention")
LR, BETAS, CLIP = 1e-3, (0.9, 0.999), 10.0  # drawcli train's defaults
ISSUE_GLIMPSE_MFLOP, ISSUE_TRAIN_MFLOP = 1.9, 370.0  # the issue's estimates, attention setting
LSTM_INNER, LSTM_COLS = 520, 1024  # the encoder's [r, h_dec, h_enc] x 4 gates at the paper setting


# FLOP count


def glimpse_flops(cfg: DrawConfig) -> dict[str, int]:
    """Matmul FLOPs (2 per multiply-add) of one glimpse's forward for one image, by part."""
    c, h, w = cfg.image_shape
    read_attn, write_attn = cfg.reader not in NO_ATTENTION, cfg.writer not in NO_ATTENTION
    n, m = cfg.read_size, cfg.write_size
    read_out = 2 * c * n * n if read_attn else 2 * c * h * w
    parts = {
        "encoder LSTM": 2 * (read_out + cfg.dec_size + cfg.enc_size) * 4 * cfg.enc_size,  # input [r, h_dec] + h_enc
        "decoder LSTM": 2 * (cfg.z_size + cfg.dec_size) * 4 * cfg.dec_size,  # input z + h_dec
        "sampler linear": 2 * cfg.enc_size * 2 * cfg.z_size,
    }
    if read_attn:
        parts["read window linear"] = 2 * cfg.dec_size * 5
        # x and x_hat, each channel: F_y (N x H) @ img (H x W), then @ F_x^T (W x N)
        parts["read filterbank"] = 2 * c * 2 * (n * h * w + n * w * n)
    if write_attn:
        parts["write window linear"] = 2 * cfg.dec_size * 5
        parts["write patch linear"] = 2 * cfg.dec_size * c * m * m
        # each channel: w (N x N) @ F_x (N x W), then F_y^T (H x N) @ (N x W)
        parts["write filterbank"] = 2 * c * (m * m * w + h * m * w)
    else:
        parts["write linear"] = 2 * cfg.dec_size * c * h * w
    return parts


def train_flops(cfg: DrawConfig) -> int:
    """Matmul FLOPs of one training step per image: forward + backward = 3 x forward, T glimpses."""
    return 3 * cfg.glimpses * sum(glimpse_flops(cfg).values())


# Timing and memory


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


# What is measured


@dataclass
class Subject:
    """A model under test: its per-batch training loss and its sampler."""

    name: str
    model: nn.Module
    loss: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int], Any]
    fused_adam: bool = False  # drawcli train's optimizer (make_optimizer); the baseline keeps plain Adam


def drawcli_subject(cfg: DrawConfig, device: torch.device) -> Subject:
    """drawcli's model, with the loss drawcli's training loop minimises (keep in step with drawcli/train.py)."""
    model = DRAW(cfg).to(device)
    return Subject("drawcli", model, lambda x: model(x).loss.mean(), lambda n: model.generate(n), fused_adam=True)


def baseline_subject(cfg: DrawConfig, device: torch.device) -> Subject:
    """The straightforward per-glimpse baseline of benchmarks/baseline_draw.py."""
    model = baseline_like(cfg).to(device)
    return Subject("baseline", model, model.loss, model.generate)


SUBJECTS: dict[str, Callable[[DrawConfig, torch.device], Subject]] = {
    "drawcli": drawcli_subject,
    "baseline": baseline_subject,
}


def train_step(subject: Subject, x: torch.Tensor) -> Callable[[], None]:
    """One training step as drawcli trains: loss, backward, global-norm clip, Adam."""
    params = list(subject.model.parameters())
    start = getattr(subject.model, "start_step", lambda: None)  # drawcli's: a new CUDA graph step
    if subject.fused_adam:
        optimizer = make_optimizer(subject.model, TrainSettings(lr=LR, beta1=BETAS[0]), next(subject.model.parameters()).device)
    else:
        optimizer = torch.optim.Adam(params, lr=LR, betas=BETAS)

    def step() -> None:
        start()
        loss = subject.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()

    return step


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


def run_setting(cfg: DrawConfig, batch: int, device: torch.device, args: argparse.Namespace) -> list[Result]:
    """Measure every subject's training and sampling throughput and peak memory at one setting.

    Repetitions are interleaved across subjects (A B A B ...), so that a change in the load of
    a shared machine hits all of them alike. Peak memory comes from a fresh child process per
    subject (see memory_child), since one process's peak covers everything it ran before.
    """
    sync = synchronizer(device)
    x = torch.bernoulli(torch.full((batch, *cfg.image_shape), 0.13)).to(device)  # MNIST's ink density
    timers = {}
    for name, build in SUBJECTS.items():
        torch.manual_seed(0)
        subject = build(cfg, device)
        timers[name] = (Timer(train_step(subject, x), sync), Timer(partial(subject.sample, batch), sync))
        for timer in timers[name]:
            timer.warm(args.warmup, args.min_time)
    for _ in range(args.reps):
        for pair in timers.values():
            for timer in pair:
                timer.rep()
    attention = cfg.reader not in NO_ATTENTION
    results = []
    for name, (train, sample) in timers.items():
        memory = {} if args.no_memory else measure_memory(name, attention, batch, device, args.threads)
        results.append(Result(name, attention, batch, train.times, sample.times, **memory))
    return results


def measure_memory(name: str, attention: bool, batch: int, device: torch.device, threads: int) -> dict[str, Any]:
    """Run memory_child in a fresh interpreter and return its numbers."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name, "attention" if attention else "none",
           str(batch), "--device", device.type, "--threads", str(threads)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_child(name: str, setting: str, batch: int, device: torch.device) -> None:
    """Print as JSON the peak memory of two training steps and one generation in this fresh process.

    A training step and a generation at batch 1 come first, so that the growth over the RSS
    before the real batch leaves out one-time costs (library code and buffers touched lazily).
    """
    cfg = DrawConfig() if setting == "attention" else DrawConfig(reader="none", writer="none")
    torch.manual_seed(0)
    subject = SUBJECTS[name](cfg, device)
    x = torch.bernoulli(torch.full((batch, *cfg.image_shape), 0.13)).to(device)
    train_step(subject, x[:1])()
    subject.sample(1)
    synchronizer(device)()
    start = current_rss_mib()
    step = train_step(subject, x)
    for _ in range(2):
        step()
    subject.sample(batch)
    synchronizer(device)()
    rss, cuda = peak_memory_mib(device)
    print(json.dumps({"peak_rss_mib": rss, "rss_growth_mib": None if start is None else rss - start, "cuda_peak_mib": cuda}))


# Reporting


def environment(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """What the numbers depend on: versions, device, threads, load."""
    env: dict[str, Any] = {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
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


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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
    flops = {label: glimpse_flops(cfg) for label, cfg in configs.items()}
    names = [k for k in _FLOP_PARTS if any(k in f for f in flops.values())]
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
    print_table("fp32 matmul rate", ["shape (rows x inner x cols)", "GFLOP/s"], [[k, f"{v:.1f}"] for k, v in rates.items()], plain)

    by_key = {(r.subject, r.attention, r.batch): r for r in results}
    summary, rows = [], []
    for label, cfg in configs.items():
        attention = cfg.reader not in NO_ATTENTION
        for batch in batches:
            ours, base = by_key[("drawcli", attention, batch)], by_key[("baseline", attention, batch)]
            rate = rates[_lstm_shape(batch)]
            limit = rate * 1e9 / train_flops(cfg)
            s = {
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
            }  # fmt: skip
            summary.append(s)
            mem = f"{_mib(ours.peak_rss_mib, ours.rss_growth_mib)} / {_mib(base.peak_rss_mib, base.rss_growth_mib)}"
            if ours.cuda_peak_mib is not None and base.cuda_peak_mib is not None:
                mem += f"; cuda {ours.cuda_peak_mib:,.0f} / {base.cuda_peak_mib:,.0f}"
            rows.append([
                f"{label}, {batch}",
                f"{s['ours_train_ips']:.1f}", f"{s['baseline_train_ips']:.1f}", f"{s['ours_over_baseline']:.2f}x",
                f"{limit:.0f}", f"{s['ours_over_limit']:.0%}",
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
    return summary


_FLOP_PARTS = [
    "encoder LSTM", "decoder LSTM", "sampler linear", "read window linear", "write window linear",
    "write patch linear", "write linear", "read filterbank", "write filterbank",
]  # fmt: skip


def _mib(peak: float | None, growth: float | None) -> str:
    if peak is None:
        return "-"
    return f"{peak:,.0f}" + ("" if growth is None else f" (+{growth:,.0f})")


def _lstm_shape(rows: int) -> str:
    return f"{rows} x {LSTM_INNER} x {LSTM_COLS}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds a repetition lasts at least (short calls repeat)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 reps, 1 warm-up, batch 64 only")
    parser.add_argument("--only", choices=["attention", "no-attention"], help="measure one setting only")
    parser.add_argument("--profile", action="store_true", help="also print a torch.profiler summary of drawcli training steps (first batch, first setting)")
    parser.add_argument("--compile", action="store_true", help="also measure drawcli with --compile (torch.compile of the glimpse), compile time apart")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile mode of --compile (reduce-overhead: CUDA graphs on a GPU)")
    parser.add_argument("--plain", action="store_true", help="plain-text tables instead of rich")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--memory-child", nargs=3, metavar=("SUBJECT", "SETTING", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.warmup, args.batches, args.min_time = 2, 1, [64], 0.05

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but no CUDA device is available")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    if args.memory_child:
        name, setting, batch = args.memory_child
        memory_child(name, setting, int(batch), device)
        return 0
    env = environment(device, args)
    print(f"drawcli benchmark  {env['time_utc']}  torch {env['torch']}  {env['device_name']}  device {device}  "
          f"threads {env['threads']}/{env['cores']} cores  load {env['load_average']}  git {env['git']}\n")  # fmt: skip
    started = time.perf_counter()

    configs = {"attention": DrawConfig(), "no attention": DrawConfig(reader="none", writer="none")}
    if args.only:
        configs = {k: v for k, v in configs.items() if (v.reader not in NO_ATTENTION) == (args.only == "attention")}

    shapes = {_lstm_shape(r): (r, LSTM_INNER, LSTM_COLS) for r in sorted({64, 128, 256, *args.batches})}
    shapes["2048 x 2048 x 2048"] = (2048, 2048, 2048)
    rates = {k: matmul_gflops(*s, device, args.reps, args.warmup, args.min_time) for k, s in shapes.items()}

    results = []
    for cfg in configs.values():
        for batch in args.batches:
            for r in run_setting(cfg, batch, device, args):
                results.append(r)
                print(f"  {r.subject:9s} {'attention' if r.attention else 'no attention':12s} batch {batch:4d}: "
                      f"train {r.train_ips:8.1f} img/s  sample {r.sample_ips:9.1f} img/s", file=sys.stderr, flush=True)  # fmt: skip
    summary = report(configs, rates, results, args.batches, args.plain)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    env["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"wall {env['wall_s']} s; load average at the end {env['load_average_end']}")

    compiled = compile_section(configs, args.batches, device, args) if args.compile else None
    if args.profile:
        profile_step(next(iter(configs.values())), args.batches[0], device)
    if args.json:
        payload = {
            "environment": env,
            "flops": {label: {"glimpse_forward": glimpse_flops(c), "train_per_image": train_flops(c)} for label, c in configs.items()},
            "matmul_gflops": rates,
            "summary": summary,
            "compiled": compiled,
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


def compile_section(configs: dict[str, DrawConfig], batches: list[int], device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    """drawcli training with the compiled glimpse against eager drawcli, interleaved; compile time apart."""
    sync = synchronizer(device)
    rows, out = [], []
    for label, cfg in configs.items():
        for batch in batches:
            x = torch.bernoulli(torch.full((batch, *cfg.image_shape), 0.13)).to(device)
            torch.manual_seed(0)
            eager = drawcli_subject(cfg, device)
            torch.manual_seed(0)
            compiled = drawcli_subject(cfg, device)
            compiled.model.compile_glimpses(args.compile_mode)
            step = train_step(compiled, x)
            start = time.perf_counter()
            step()  # compiles forward and backward
            sync()
            compile_s = time.perf_counter() - start
            timers = {"eager": Timer(train_step(eager, x), sync), "compiled": Timer(step, sync)}
            for timer in timers.values():
                timer.warm(args.warmup, args.min_time)
            for _ in range(args.reps):
                for timer in timers.values():
                    timer.rep()
            ips = {k: batch / statistics.median(t.times) for k, t in timers.items()}
            out.append({"setting": label, "batch": batch, "compile_s": compile_s, **{f"{k}_ips": v for k, v in ips.items()}})
            rows.append([f"{label}, {batch}", f"{ips['eager']:.1f}", f"{ips['compiled']:.1f}",
                         f"{ips['compiled'] / ips['eager']:.2f}x", f"{compile_s:.0f} s"])  # fmt: skip
    print_table(f"torch.compile of the glimpse (drawcli train --compile, mode {args.compile_mode}), training images/s",
                ["setting, batch", "eager", "compiled", "compiled/eager", "compile time"], rows, args.plain)
    return out


def profile_step(cfg: DrawConfig, batch: int, device: torch.device, rows: int = 30, steps: int = 3) -> None:
    """Print the top operators (by self time) of drawcli training steps, after two warm-up steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    subject = drawcli_subject(cfg, device)
    step = train_step(subject, torch.bernoulli(torch.full((batch, *cfg.image_shape), 0.13)).to(device))
    for _ in range(2):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronizer(device)()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    print(f"\ntorch.profiler, {steps} drawcli training steps, batch {batch}, {cfg.reader}/{cfg.writer}:")
    print(events.table(sort_by=sort, row_limit=rows))
    total = sum(getattr(e, sort) for e in events)
    matmul = sum(getattr(e, sort) for e in events if e.key in _MATMUL_OPS)
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"per step: matmul kernels ({', '.join(sorted(_MATMUL_OPS))}) {matmul / steps / 1e3:.1f} ms of "
          f"{total / steps / 1e3:.1f} ms self time ({matmul / max(total, 1):.0%}); {calls // steps} aten op calls, "
          f"nested ones included")  # fmt: skip


_MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm"}


if __name__ == "__main__":
    sys.exit(main())
