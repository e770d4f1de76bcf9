"""Training steps/s of the attention classifier, eager against compiled (`train --compile`).

At the paper-cluttered-mnist setting by default (100x100, 8 glimpses of 12x12, LSTM 256, batch
64, the filterbank reader starting at gain 1): both models take drawcli's one training step
(loss, backward, clip, fused Adam) on the same random batch, in interleaved repetitions
(A B A B ...), so that a change in a shared machine's load hits both alike.

    .venv/bin/python benchmarks/classifier_compile.py --threads 1
    .venv/bin/python benchmarks/classifier_compile.py --threads 1 --glimpses 4 --reps 10
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
from drawcli.config import DrawConfig
from drawcli.presets import PRESETS
from drawcli.training.family import BatchLoss
from drawcli.training.settings import TrainSettings
from drawcli.training.step import make_optimizer, train_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timer, interleave  # noqa: E402

DEFAULTS = TrainSettings()
PRESET = PRESETS["paper-cluttered-mnist"].options


def step_function(model: AttentionClassifier, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN201
    """One training step of `model` on (x, y) as drawcli trains the classifier, with its own optimizer."""
    optimizer = make_optimizer(model, PRESET["lr"], DEFAULTS.beta1, x.device)

    def loss() -> BatchLoss:
        model.start_step()
        return BatchLoss(model(x).loss(y), {})

    return lambda: train_step(model, optimizer, loss, DEFAULTS.clip, 1 / len(x))


def classifier_args(doc: str) -> argparse.Namespace:
    """The options of the classifier benchmarks (this one and fixed_glimpse.py), parsed; sets torch's threads."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--glimpses", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=6, help="interleaved repetitions of about --min-time s each")
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    args = classifier_args(__doc__)
    config = DrawConfig(kind="classifier", height=100, width=100, glimpses=args.glimpses, read_size=12,
                        reader_options={"init": "cover-unscaled"})  # fmt: skip
    torch.manual_seed(0)
    eager = AttentionClassifier(config)
    compiled = copy.deepcopy(eager)
    compiled.compile_glimpses()
    x, y = torch.rand(args.batch, 1, 100, 100), torch.randint(0, 10, (args.batch,))
    timers = {"eager": Timer(step_function(eager, x, y), lambda: None),
              "compiled": Timer(step_function(compiled, x, y), lambda: None)}  # fmt: skip
    start = time.perf_counter()
    timers["compiled"].warm(1, args.min_time)  # the first call compiles forward and backward
    compile_s = time.perf_counter() - start
    timers["eager"].warm(2, args.min_time)
    timers["compiled"].warm(2, args.min_time)
    interleave(list(timers.values()), args.reps)
    if compiled.compile_failure:  # the "compiled" model fell back to eager: its figure would mean nothing
        sys.exit(f"torch.compile failed, so both models ran eagerly: {compiled.compile_failure}")
    result = {name: args.batch / statistics.median(timer.times) for name, timer in timers.items()}
    figures = {"threads": torch.get_num_threads(), "glimpses": args.glimpses, "batch": args.batch,
               "eager_images_per_s": round(result["eager"], 1), "compiled_images_per_s": round(result["compiled"], 1),
               "ratio": round(result["compiled"] / result["eager"], 3), "first_compiled_step_s": round(compile_s, 1)}  # fmt: skip
    print(f"classifier training, {args.glimpses} glimpses, batch {args.batch}, {figures['threads']} threads: "
          f"eager {figures['eager_images_per_s']} images/s, compiled {figures['compiled_images_per_s']} "
          f"({figures['ratio']}x); the first compiled step took {figures['first_compiled_step_s']} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
