"""Where a classifier's read windows sit after each glimpse, and how far one Adam step could move them.

For each run: the error on the first --n test images of its data set, then per glimpse the median
window centre (pixels), the median |g~| behind it (the window layer's centre output, eq. 22-23;
under `centre=inside` the tanh is undone, so |g~| above about 2 means tanh' below 0.07 and a
centre that barely moves), the median stride, sigma and gamma, and the mean sum_j |u_j| of what
the layer that outputs g~ reads (u: the LSTM state h, or the filterbank's `hidden` units of it):
Adam moves each window weight by about the rate a step, so one step of the last layer alone moves
g~ by up to lr x sum |u| (printed at --lr; under `hidden` the units move too, so the whole step
can be larger). A collapsed run's windows sit in a corner (docs/reproducing.md).

    .venv/bin/python experiments/window_state.py runs/A runs/B --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from drawcli import checkpoint, data


def g_tilde(centre: torch.Tensor, side: int, placement: str) -> torch.Tensor:
    """The window layer's output behind a centre in 1-based pixels (eq. 22: g = (A + 1) / 2 (g~ + 1)),
    through atanh when `placement` is "inside" (clamped short of +-1, where atanh is infinite)."""
    unit = 2 * centre / (side + 1) - 1
    return torch.atanh(unit.clamp(-1 + 1e-6, 1 - 1e-6)) if placement == "inside" else unit


def glimpse_states(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list, list[torch.Tensor]]:
    """(logits, the T windows, the T states (B, dec_size) each window was computed from) of the
    classifier on x: its own forward, with the reader's read_image wrapped to record its h."""
    states: list[torch.Tensor] = []
    read = model.reader.read_image

    def recording(image: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, object]:
        states.append(h)
        return read(image, h)

    model.reader.read_image = recording
    try:
        out = model(x, record=True)
    finally:
        del model.reader.read_image  # the instance attribute; the class's method shows again
    return out.logits, out.read_windows, states


def last_layer_input(window: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """What the layer that outputs g~ reads (B, units): h itself, or the ReLU units of reader option `hidden`."""
    return window[:-1](h) if isinstance(window, torch.nn.Sequential) else h


def report(run: Path, data_dir: Path | None, n: int, lr: float) -> None:
    """Print the run's error and its windows' state after each glimpse."""
    model, info = checkpoint.load_model(run, torch.device("cpu"))
    model.eval()
    config = model.config
    test = data.load_labelled(data.open_dataset(info.training.get("dataset", "cluttered-mnist")), "test", data_dir,
                              config.image_shape)  # fmt: skip
    x, labels = test.images[:n].float() / 255, test.labels[:n]
    with torch.no_grad():
        logits, windows, states = glimpse_states(model, x)
    placement = config.reader_options.get("centre", "free")
    print(f"{run}: LSTM {config.dec_size}, {100 * (logits.argmax(1) != labels).float().mean():.2f} % wrong on {len(x)} test images")
    print("  glimpse  centre x, y   |g~| x   stride   sigma   gamma   sum|u|   step of g~ at lr")
    for t, (w, h) in enumerate(zip(windows, states)):
        with torch.no_grad():
            total = last_layer_input(model.reader.window, h).abs().sum(dim=1).mean().item()
        print(f"  {t + 1:7d}  {w.gx.median():5.1f} {w.gy.median():5.1f}  {g_tilde(w.gx, config.width, placement).abs().median():7.2f}"
              f"  {w.delta.median():7.2f}  {w.sigma2.sqrt().median():6.2f}  {w.gamma.median():6.2f}  {total:7.1f}  {lr * total:8.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="classifier runs (filterbank reader) or checkpoints")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--n", type=int, default=500, help="test images")
    parser.add_argument("--lr", type=float, default=6e-4, help="the rate for the last column")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for run in args.runs:
        report(run, args.data_dir, args.n, args.lr)


if __name__ == "__main__":
    main()
