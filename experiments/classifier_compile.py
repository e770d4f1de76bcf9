"""Training images/s of the attention classifier, eager against compiled (`train --compile`),
and with --amp bf16 also compiled under the bf16 autocast of `train --amp bf16`.

At the paper-cluttered-mnist setting by default (100x100, 8 glimpses of 12x12, LSTM 256, batch
64, the filterbank reader starting at gain 1 with its centre kept inside, as the preset since
2026-12-04; the figures of 2026-12-01 had the centre free): every model takes drawcli's one
training step (loss, backward, clip, fused Adam) on the same random batch, in interleaved
repetitions (A B A B ...), so that a change in a shared machine's load hits all alike.

    .venv/bin/python experiments/classifier_compile.py --threads 1
    .venv/bin/python experiments/classifier_compile.py --threads 1 --glimpses 4 --reps 10
    .venv/bin/python experiments/classifier_compile.py --threads 1 --rnn-size 512 --amp bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from drawcli.classifier import AttentionClassifier
from drawcli.config import ClassifierConfig
from drawcli.presets import PRESETS
from drawcli.training.family import BatchLoss
from drawcli.training.settings import TrainSettings
from drawcli.training.step import make_optimizer, train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmark's timers
from timing import Timer, interleave  # noqa: E402

DEFAULTS = TrainSettings()
PRESET = PRESETS["paper-cluttered-mnist"].settings


def step_function(model: AttentionClassifier, x: torch.Tensor, y: torch.Tensor, bf16: bool = False):  # noqa: ANN201
    """One training step of `model` on (x, y) as drawcli trains the classifier, with its own
    optimizer; `bf16`: the forward under the bf16 autocast, as `train --amp bf16` runs it."""
    optimizer = make_optimizer(model, PRESET["lr"], DEFAULTS.beta1, x.device)

    def loss() -> BatchLoss:
        model.start_step()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        return BatchLoss(logits.loss(y), {})

    return lambda: train_step(model, optimizer, loss, DEFAULTS.clip, 1 / len(x))


def classifier_args(doc: str) -> argparse.Namespace:
    """The options of the classifier benchmarks (this one and fixed_glimpse.py), parsed; sets torch's threads."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--glimpses", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rnn-size", type=int, default=256, help="the LSTM's units")
    parser.add_argument("--amp", choices=["off", "bf16"], default="off",
                        help="bf16: under train --amp bf16's autocast (classifier_compile.py: a third model, "
                             "compiled, beside float32's; fixed_glimpse.py: both models)")
    parser.add_argument("--reps", type=int, default=6, help="interleaved repetitions of about --min-time s each")
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    args = classifier_args(__doc__)
    config = ClassifierConfig(height=100, width=100, glimpses=args.glimpses, read_size=12,
                        dec_size=args.rnn_size, reader_options={"init": "cover-unscaled", "centre": "inside"})  # fmt: skip
    torch.manual_seed(0)
    eager = AttentionClassifier(config)
    models = {"eager": eager, "compiled": copy.deepcopy(eager)}
    if args.amp == "bf16":
        models["compiled_bf16"] = copy.deepcopy(eager)
    x, y = torch.rand(args.batch, 1, 100, 100), torch.randint(0, 10, (args.batch,))
    timers = {}
    for name, model in models.items():
        if name != "eager":
            model.compile_glimpses()
        timers[name] = Timer(step_function(model, x, y, bf16=name.endswith("bf16")), lambda: None)
    start = time.perf_counter()
    timers["compiled"].warm(1, args.min_time)  # the first call compiles forward and backward
    compile_s = time.perf_counter() - start
    for timer in timers.values():
        timer.warm(2, args.min_time)
    interleave(list(timers.values()), args.reps)
    failures = {name: model.compile_failure for name, model in models.items() if model.compile_failure}
    if failures:  # a fallback to eager: the figures would mean nothing
        sys.exit(f"torch.compile failed, so these models ran eagerly: {failures}")
    rate = {name: args.batch / statistics.median(timer.times) for name, timer in timers.items()}
    figures = {"threads": torch.get_num_threads(), "glimpses": args.glimpses, "batch": args.batch,
               "rnn_size": args.rnn_size, "first_compiled_step_s": round(compile_s, 1)}  # fmt: skip
    figures.update({f"{name}_images_per_s": round(value, 1) for name, value in rate.items()})
    figures["ratio"] = round(rate["compiled"] / rate["eager"], 3)
    line = (f"classifier training, LSTM {args.rnn_size}, {args.glimpses} glimpses, batch {args.batch}, "
            f"{figures['threads']} threads: eager {rate['eager']:.1f} images/s, compiled {rate['compiled']:.1f} "
            f"({figures['ratio']}x)")  # fmt: skip
    if "compiled_bf16" in rate:
        figures["bf16_ratio"] = round(rate["compiled_bf16"] / rate["compiled"], 3)
        line += f", compiled bf16 {rate['compiled_bf16']:.1f} ({figures['bf16_ratio']}x compiled float32)"
    print(f"{line}; the first compiled step took {figures['first_compiled_step_s']} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
