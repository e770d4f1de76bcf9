"""Training and sampling throughput of DRAW with each attention family, at the paper's MNIST setting.

One run measures, at preset paper-mnist (T 64, LSTM 256, z 100, read 2, write 5, batch 64) with the
reader and the writer of each family given: training images/s through drawcli's one training step
and sampling images/s of generate(batch). Repetitions are interleaved across families (A B C A B C),
so that a change in a shared machine's load hits all alike; medians are reported, training's also
as a ratio to the filterbank's. --record appends one line per family to benchmarks/results.jsonl.

    .venv/bin/python benchmarks/attention_speed.py --glimpses 4 --reps 2 --warmup 1
    .venv/bin/python benchmarks/attention_speed.py --families filterbank stn no-attention --record
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from drawcli import presets, registry
from drawcli.config import DrawConfig
from drawcli.errors import DrawcliError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402  (benchmarks/ is no package)
from bench import configure  # noqa: E402
from flops import attention  # noqa: E402
from subjects import drawcli_subject, images, step_function  # noqa: E402
from tables import environment, print_table  # noqa: E402
from timing import Timer, interleave, synchronizer  # noqa: E402

PRESET = "paper-mnist"
FAMILIES = ("filterbank", "stn", "no-attention")  # the default: those installed as both a reader and a writer
MIN_TIME = 0.2  # seconds a repetition lasts at least (shorter calls repeat): bench.py's default


def family_config(name: str, glimpses: int | None) -> DrawConfig:
    """The preset's config with this family's reader and writer (and T = glimpses when given)."""
    changes = {} if glimpses is None else {"glimpses": glimpses}
    return presets.build(PRESET, reader=name, writer=name, **changes)[0]


def model_label(cfg: DrawConfig, attends: tuple[bool, bool]) -> str:
    """The results record's model: preset, sizes, reader and writer by name, each half's size only where it attends."""
    read = f"read {cfg.reader}" + (f" {cfg.read_size}" if attends[0] else "")
    write = f"write {cfg.writer}" + (f" {cfg.write_size}" if attends[1] else "")
    return f"{PRESET} (T={cfg.glimpses}, LSTM {cfg.enc_size}, z {cfg.z_size}, {read}, {write})"


def record_row(cfg: DrawConfig, attends: tuple[bool, bool], batch: int, train_s: list[float],
               sample_s: list[float], device: str, command: str, note: str) -> dict[str, Any]:  # fmt: skip
    """One results.jsonl line: the median training step as images/s and ms, the sampling rate in the note."""
    step = statistics.median(train_s)
    sampled = f"sampling {batch / statistics.median(sample_s):.1f} img/s; "
    return results.record(device=device, command=command, model=model_label(cfg, attends), batch=batch,
                          precision="float32", compile="off", cuda_graph="off", images_per_s=round(batch / step, 1),
                          ms_per_step=round(1000 * step, 2), note=sampled + note)  # fmt: skip


def measure(configs: dict[str, DrawConfig], batch: int, device: torch.device, args: argparse.Namespace) -> dict[str, tuple[list[float], list[float]]]:
    """family -> (seconds per training step, seconds per generate(batch)), one value per repetition."""
    sync = synchronizer(device)
    timers = {}
    for name, cfg in configs.items():
        torch.manual_seed(0)
        subject = drawcli_subject(cfg, device)
        timers[name] = (Timer(step_function(subject, images(cfg, batch, device)), sync), Timer(partial(subject.sample, batch), sync))
        for timer in timers[name]:
            timer.warm(args.warmup, MIN_TIME)
        print(f"  {name}: warmed up", file=sys.stderr, flush=True)
    interleave([timer for pair in timers.values() for timer in pair], args.reps)
    return {name: (train.times, sample.times) for name, (train, sample) in timers.items()}


def parse_args(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", help=f"reader-and-writer names to measure (default: those of {', '.join(FAMILIES)} installed)")
    parser.add_argument("--batch", type=int, help="images per step (default: the preset's)")
    parser.add_argument("--glimpses", type=int, help="T (default: the preset's)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--plain", action="store_true", help="a plain-text table instead of rich")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--record", action="store_true", help=f"append one line per family to {results.RESULTS.name}")
    parser.add_argument("--note", default="", help="words that begin each recorded line's note")
    return parser, parser.parse_args(argv)


def families(parser: argparse.ArgumentParser, asked: list[str] | None) -> list[str]:
    """The families to measure by registered name (aliases resolved, repeats dropped); unknown names fail with the known."""
    if asked is None:
        return [name for name in FAMILIES if name in registry.names("reader") and name in registry.names("writer")]
    names = []
    for name in asked:
        try:
            registry.resolve("writer", name)
            names.append(registry.resolve("reader", name).name)
        except DrawcliError as exc:
            parser.error(str(exc))
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, args = parse_args(argv)
    device = configure(parser, args)
    configs = {name: family_config(name, args.glimpses) for name in families(parser, args.families)}
    batch = args.batch or presets.build(PRESET)[1].batch_size
    env = environment(device, args)
    load = "n/a" if env["load_average"] is None else " ".join(f"{v:.2f}" for v in env["load_average"])
    print(f"attention speed  {env['time_utc']}  torch {env['torch']}  {env['device_name']}  device {device}  threads "
          f"{env['threads']}/{env['cores']} cores  load {load}  git {env['git']}\n", file=sys.stderr)  # fmt: skip
    started = time.perf_counter()
    times = measure(configs, batch, device, args)
    env["wall_s"] = round(time.perf_counter() - started, 1)
    ips = {name: (batch / statistics.median(t), batch / statistics.median(s)) for name, (t, s) in times.items()}
    base = ips.get("filterbank", (None,))[0]
    print_table(f"{PRESET}, T={next(iter(configs.values())).glimpses}, batch {batch}: images/s, medians",
                ["family", "train img/s", "sample img/s", "train / filterbank"],
                [[n, f"{t:.1f}", f"{s:.1f}", "-" if base is None else f"{t / base:.2f}x"] for n, (t, s) in ips.items()],
                args.plain)  # fmt: skip
    print(f"wall {env['wall_s']} s", file=sys.stderr)
    command = shlex.join(["benchmarks/attention_speed.py", *argv])
    note = f"{args.note}; " if args.note else ""
    note += f"medians of {args.reps} reps interleaved across {', '.join(configs)}; {env['threads']} thread(s); load average {load}"
    rows = [record_row(c, attention(c), batch, *times[name], env["device_name"], command, note) for name, c in configs.items()]
    if args.record:
        for row in rows:
            results.append(row, results.RESULTS)
        print(f"appended {len(rows)} lines to {results.RESULTS}", file=sys.stderr)
    if args.json:
        payload = {"environment": env, "records": rows, "times": {n: {"train_s": t, "sample_s": s} for n, (t, s) in times.items()}}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
