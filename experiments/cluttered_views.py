"""How much a classifier's answers depend on small shifts of the image, and what averaging
`evaluate --views` gains at each shift: the numbers behind `--views` and its default `--view-shift`.

For each run and each shift S: the share of test images whose answer changes when the image moves
S pixels along one of the eight directions (the mean over them), the error of each shifted view
alone (lowest and highest), and the test error of the probabilities averaged over the first 3, 5 and 9 views of `drawcli.views` (1 view: the plain error).

    .venv/bin/python experiments/cluttered_views.py runs/A runs/B --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from drawcli import checkpoint, data, views
from drawcli.accuracy import predict


def report(run: Path, images: torch.Tensor, labels: torch.Tensor, shifts: list[int]) -> None:
    """Print the run's plain error and, per shift, its changed answers and averaged-view errors."""
    cpu = torch.device("cpu")
    model = checkpoint.load_model(run, cpu)[0]
    plain = predict(model, images, cpu).softmax(-1)

    def error(probs: torch.Tensor) -> float:
        return 100 * (probs.argmax(-1) != labels).double().mean().item()

    print(f"{run}: plain error {error(plain):.2f} %")
    for shift in shifts:
        probs = [plain] + [predict(model, views.shifted(images, dy, dx), cpu).softmax(-1)
                           for dy, dx in views.offsets(views.MAX_VIEWS, shift)[1:]]  # fmt: skip
        changed = torch.stack([(p.argmax(-1) != plain.argmax(-1)).double().mean() for p in probs[1:]]).mean().item()
        alone = [error(p) for p in probs[1:]]
        averaged = ", ".join(f"{k} views {error(torch.stack(probs[:k]).mean(0)):.2f} %" for k in (3, 5, 9))
        print(f"  shift {shift} px: answers changed {100 * changed:.2f} % a view; a shifted view alone "
              f"{min(alone):.2f}-{max(alone):.2f} %; error of {averaged}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="cluttered-MNIST classifier runs or checkpoints")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--shifts", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = data.load_labelled(data.open_dataset("cluttered-mnist"), "test", args.data_dir, (1, 100, 100))
    for run in args.runs:
        report(run, test.images, test.labels, args.shifts)


if __name__ == "__main__":
    main()
