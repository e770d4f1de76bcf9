"""Training images/s of the no-attention classifier: the glimpse read once against once per step.

The `no-attention` reader sets `fixed_glimpse` (its glimpse is the whole image, whatever the
state), so the classifier reads once and computes the LSTM's input term W_ih x + b_ih once
instead of at each of the T glimpses. Both models take drawcli's one training step (loss,
backward, clip, fused Adam) on the same random batch at the paper-cluttered-mnist setting
(100x100, 8 glimpses, LSTM 256, batch 64), in interleaved repetitions (A B A B ...).

    .venv/bin/python experiments/fixed_glimpse.py --threads 1
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
from pathlib import Path

import torch

from drawcli.classifier import AttentionClassifier
from drawcli.config import ClassifierConfig

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here), str(here.parent / "benchmarks")]  # classifier_compile.py beside it, the benchmark's timers
from classifier_compile import classifier_args, step_function  # noqa: E402
from timing import Timer, interleave  # noqa: E402


def main() -> None:
    args = classifier_args(__doc__)
    config = ClassifierConfig(height=100, width=100, glimpses=args.glimpses, reader="no-attention",
                        dec_size=args.rnn_size)  # fmt: skip
    torch.manual_seed(0)
    fixed = AttentionClassifier(config)
    per_step = copy.deepcopy(fixed)
    per_step.reader.fixed_glimpse = False  # the loop every other reader takes
    x, y = torch.rand(args.batch, 1, 100, 100), torch.randint(0, 10, (args.batch,))
    bf16 = args.amp == "bf16"
    timers = {"per_step": Timer(step_function(per_step, x, y, bf16), lambda: None),
              "fixed": Timer(step_function(fixed, x, y, bf16), lambda: None)}  # fmt: skip
    for timer in timers.values():
        timer.warm(2, args.min_time)
    interleave(list(timers.values()), args.reps)
    rate = {name: args.batch / statistics.median(timer.times) for name, timer in timers.items()}
    figures = {"threads": torch.get_num_threads(), "glimpses": args.glimpses, "batch": args.batch,
               "rnn_size": args.rnn_size, "amp": args.amp,
               "per_step_images_per_s": round(rate["per_step"], 1), "fixed_images_per_s": round(rate["fixed"], 1),
               "ratio": round(rate["fixed"] / rate["per_step"], 3)}  # fmt: skip
    print(f"no-attention classifier training, LSTM {args.rnn_size} ({args.amp}), {args.glimpses} glimpses, "
          f"batch {args.batch}, {figures['threads']} "
          f"threads: read every step {figures['per_step_images_per_s']} images/s, read once "
          f"{figures['fixed_images_per_s']} ({figures['ratio']}x)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
