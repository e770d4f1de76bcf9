"""Training and sampling throughput of drawcli's DRAW against a straightforward baseline.

One run measures, at the paper's MNIST setting (T 64, LSTM 256, z 100, read 2, write 5):
training and sampling images/s of drawcli and of benchmarks/baseline_draw.py, with attention
and without, at each batch size; the machine's fp32 matmul rate at the LSTM shapes and at
2048^3; the matmul-bound training limit from an analytic FLOP count; and peak memory.
drawcli is used only through presets.build, DRAW(config), model(x).loss and model.generate(n);
both subjects (benchmarks/subjects.py) train through drawcli's one training step.

    .venv/bin/python benchmarks/bench.py --quick
    .venv/bin/python benchmarks/bench.py --threads 1 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch

from drawcli import presets
from drawcli.choices import COMPILE_MODES
from drawcli.config import DrawConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import LSTM_COLS, LSTM_INNER, attention, glimpse_flops, lstm_shape, setting_label, train_flops  # noqa: E402
from profiling import profile_step  # noqa: E402
from subjects import SUBJECTS, Subject, baseline_subject, drawcli_subject, images, step_function  # noqa: E402
from tables import environment, print_compile_table, report  # noqa: E402
from timing import (  # noqa: E402
    Result,
    Timer,
    current_rss_mib,
    interleave,
    json_from_child,
    matmul_gflops,
    peak_memory_mib,
    synchronizer,
)

# The settings measured, the paper's MNIST presets, labelled (and chosen by --only) by what their models report.
SETTINGS = tuple(presets.build(name)[0] for name in ("paper-mnist", "paper-mnist-noattn"))


# The measurements


def run_setting(cfg: DrawConfig, batch: int, device: torch.device, args: argparse.Namespace) -> list[Result]:
    """Measure every subject's training and sampling throughput and peak memory at one setting.

    Repetitions are interleaved across subjects (A B A B ...), so that a change in the load of
    a shared machine hits all of them alike. Peak memory comes from a fresh child process per
    subject (see memory_child), since one process's peak covers everything it ran before.
    """
    sync = synchronizer(device)
    x = images(cfg, batch, device)
    timers = {}
    for name, build in SUBJECTS.items():
        torch.manual_seed(0)
        subject = build(cfg, device)
        timers[name] = (Timer(step_function(subject, x), sync), Timer(partial(subject.sample, batch), sync))
        for timer in timers[name]:
            timer.warm(args.warmup, args.min_time)
    interleave([timer for pair in timers.values() for timer in pair], args.reps)
    attends = any(attention(cfg))
    results = []
    for name, (train, sample) in timers.items():
        memory = {} if args.no_memory else measure_memory(name, cfg, batch, device, args.threads)
        results.append(Result(name, attends, batch, train.times, sample.times, **memory))
    return results


def measure_memory(name: str, cfg: DrawConfig, batch: int, device: torch.device, threads: int) -> dict[str, Any]:
    """Run memory_child in a fresh interpreter (this script, --memory-child) and return its numbers."""
    child = ["--memory-child", name, json.dumps(cfg.to_dict()), str(batch), "--device", device.type, "--threads", str(threads)]
    return json_from_child(Path(__file__).resolve(), child)


def memory_child(name: str, cfg: DrawConfig, batch: int, device: torch.device) -> None:
    """Print as JSON the peak memory of two training steps and one generation in this fresh process.

    A training step and a generation at batch 1 come first, so that the growth over the RSS
    before the real batch leaves out one-time costs (library code and buffers touched lazily).
    """
    torch.manual_seed(0)
    subject = SUBJECTS[name](cfg, device)
    x = images(cfg, batch, device)
    step_function(subject, x[:1])()
    subject.sample(1)
    synchronizer(device)()
    start = current_rss_mib()
    step = step_function(subject, x)
    for _ in range(2):
        step()
    subject.sample(batch)
    synchronizer(device)()
    rss, cuda = peak_memory_mib(device)
    print(json.dumps({"peak_rss_mib": rss, "rss_growth_mib": None if start is None else rss - start, "cuda_peak_mib": cuda}))


def compile_section(configs: dict[str, DrawConfig], batches: list[int], device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The ways drawcli train can run (eager, compiled, bf16) against the baseline, interleaved; compile time apart."""
    out = [compile_setting(label, cfg, batch, device, args) for label, cfg in configs.items() for batch in batches]
    print_compile_table(out, args.compile_mode, args.plain)
    return out


def variants(cfg: DrawConfig, device: torch.device, args: argparse.Namespace) -> dict[str, tuple[Subject, bool]]:
    """name -> (subject, compiled?): the baseline, drawcli eager and compiled, and with --bf16 both in bf16."""
    out = {}
    for name, compiled, low in (("baseline", False, None), ("eager", False, None), ("compiled", True, None),
                                ("eager bf16", False, torch.bfloat16), ("compiled bf16", True, torch.bfloat16)):  # fmt: skip
        if low is not None and not args.bf16:
            continue
        torch.manual_seed(0)
        subject = (baseline_subject if name == "baseline" else drawcli_subject)(cfg, device)
        if name != "baseline":
            subject.model.low_precision(low)
        if compiled:
            subject.model.compile_glimpses(args.compile_mode)
        out[name] = (subject, compiled)
    return out


def compile_setting(label: str, cfg: DrawConfig, batch: int, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """compile_section at one setting: {setting, batch, ips: {variant: img/s}, compile_s: {variant: s}}."""
    sync = synchronizer(device)
    x = images(cfg, batch, device)
    timers, compile_s = {}, {}
    for name, (subject, compiled) in variants(cfg, device, args).items():
        step = step_function(subject, x)
        if compiled:
            start = time.perf_counter()
            step()  # compiles forward and backward
            sync()
            compile_s[name] = time.perf_counter() - start
        timers[name] = Timer(step, sync)
        timers[name].warm(args.warmup, args.min_time)
    interleave(list(timers.values()), args.reps)
    ips = {k: batch / statistics.median(t.times) for k, t in timers.items()}
    return {"setting": label, "batch": batch, "ips": ips, "compile_s": compile_s}


# The command line


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed options, with --quick applied."""
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
    parser.add_argument("--compile", action="store_true",
            help="also measure the ways drawcli train runs (eager, compiled: the default at this size) against the "
            "baseline, compile time apart")
    parser.add_argument("--bf16", action="store_true", help="with --compile, also drawcli with --amp bf16 (emulated, so very slow, on CPUs without AMX or "
            "AVX512-BF16)")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile mode of --compile (reduce-overhead: CUDA graphs on a GPU)")
    parser.add_argument("--plain", action="store_true", help="plain-text tables instead of rich")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--memory-child", nargs=3, metavar=("SUBJECT", "CONFIG", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.warmup, args.batches, args.min_time = 2, 1, [64], 0.05
    return parser, args


def configure(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """The device to measure on; torch's thread counts set as asked."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but no CUDA device is available")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    return device


def chosen_settings(only: str | None) -> dict[str, DrawConfig]:
    """The settings to measure by label; --only keeps the one whose label it names."""
    configs = {setting_label(cfg): cfg for cfg in SETTINGS}
    return {k: v for k, v in configs.items() if only is None or k == only.replace("-", " ")}


def measure_all(configs: dict[str, DrawConfig], device: torch.device, args: argparse.Namespace) -> list[Result]:
    """run_setting at every setting and batch, each result reported on stderr as it comes."""
    results = []
    for label, cfg in configs.items():
        for batch in args.batches:
            for r in run_setting(cfg, batch, device, args):
                results.append(r)
                print(f"  {r.subject:9s} {label:12s} batch {batch:4d}: "
                      f"train {r.train_ips:8.1f} img/s  sample {r.sample_ips:9.1f} img/s", file=sys.stderr, flush=True)  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    device = configure(parser, args)
    if args.memory_child:
        name, config, batch = args.memory_child
        memory_child(name, DrawConfig.from_dict(json.loads(config)), int(batch), device)
        return 0
    env = environment(device, args)
    print(f"drawcli benchmark  {env['time_utc']}  torch {env['torch']}  {env['device_name']}  device {device}  "
          f"threads {env['threads']}/{env['cores']} cores  load {env['load_average']}  git {env['git']}\n")  # fmt: skip
    started = time.perf_counter()
    configs = chosen_settings(args.only)

    shapes = {lstm_shape(r): (r, LSTM_INNER, LSTM_COLS) for r in sorted({64, 128, 256, *args.batches})}
    shapes["2048 x 2048 x 2048"] = (2048, 2048, 2048)
    rates = {k: matmul_gflops(*s, device, args.reps, args.warmup, args.min_time) for k, s in shapes.items()}
    results = measure_all(configs, device, args)
    summary = report(configs, rates, results, args.batches, args.plain)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    env["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"wall {env['wall_s']} s; load average at the end {env['load_average_end']}")

    compiled = compile_section(configs, args.batches, device, args) if args.compile else None
    if args.profile:
        cfg, batch = next(iter(configs.values())), args.batches[0]
        torch.manual_seed(0)
        step = step_function(drawcli_subject(cfg, device), images(cfg, batch, device))
        profile_step(step, f"batch {batch}, {setting_label(cfg)}", device)
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


if __name__ == "__main__":
    sys.exit(main())
