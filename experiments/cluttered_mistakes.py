"""Where a cluttered-MNIST classifier's mistakes come from: a read window that never found the
digit ("lost"), or a digit misread under a window that did.

Rebuilds the test split with each digit's centre (the data set records it), runs each
classifier with its windows recorded, and prints, for each run: the error among images whose
last window ends within --found pixels of the digit's centre and among the rest, the same split
by the digit's distance from the border (with how far the second window lands from the digit,
and how often digits whose ink reaches the edge are lost), how often clutter gathers into a
28 x 28 box of more ink than the digit's (among found and lost images), and the mean distance
from window to digit and the window's stride and sigma after each glimpse; with several runs,
how many images all of them get wrong, or lose.

    .venv/bin/python experiments/cluttered_mistakes.py runs/A runs/B --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import drawcli_synthetic
from drawcli import checkpoint
from drawcli.contract import Window

DIGIT = 28  # MNIST's side: the digit's box around its centre
CENTRE = (DIGIT + 1) / 2  # a box's 1-based centre minus its 0-based first pixel


def digit_centres(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(test images (N, 1, 100, 100), labels (N,), digit centres (N, 2) as (x, y) in the windows' 1-based pixels)."""
    test = drawcli_synthetic.ClutteredMNIST().load_labelled("test", data_dir, (1, 100, 100))
    assert test.centres is not None
    return test.images, test.labels, test.centres


def windows(run: Path, images: torch.Tensor, bf16: bool, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(predictions (N,), window centres (T, N, 2), window (stride, sigma) (T, N, 2)) of the run's
    checkpoint; float32 like `drawcli evaluate`, or under bf16 autocast."""
    model = checkpoint.load_model(run, torch.device("cpu"))[0].eval()
    predicted, centres, shapes = [], [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), batch):
            out = model(images[start : start + batch].float() / 255, record=True)
            predicted.append(out.logits.argmax(1))
            if not all(isinstance(w, Window) for w in out.read_windows):
                raise SystemExit(f"{run}'s reader has no filterbank windows: this analysis reads their stride and sigma")
            centres.append(torch.stack([w.centre().float() for w in out.read_windows]))
            shapes.append(torch.stack([torch.stack([w.delta, w.sigma2.sqrt()], dim=1).float() for w in out.read_windows]))
    return torch.cat(predicted), torch.cat(centres, dim=1), torch.cat(shapes, dim=1)


def ink_from_edge(images: torch.Tensor, digits: torch.Tensor, level: int = 64) -> torch.Tensor:
    """(N,) pixels between the image's edge and the nearest pixel above `level` inside each digit's
    28 x 28 box (clutter inside the box counts too; it is rare there)."""
    corners = (digits - CENTRE).long()
    out = torch.empty(len(images), dtype=torch.long)
    side = images.shape[-1] - 1
    for i, (x0, y0) in enumerate(corners.tolist()):
        ys, xs = (images[i, 0, y0 : y0 + DIGIT, x0 : x0 + DIGIT] > level).nonzero(as_tuple=True)
        out[i] = torch.stack([xs + x0, side - xs - x0, ys + y0, side - ys - y0]).min() if len(xs) else side
    return out


def rival_ink(images: torch.Tensor, digits: torch.Tensor, away: float = 20.0) -> torch.Tensor:
    """(N,) the ink of the heaviest 28 x 28 box whose centre is `away` pixels or more from the digit's,
    over the ink of the digit's own box: above 1 where clutter gathers into a blob heavier than
    the digit, which a coarse first glimpse may take for it."""
    ink = torch.nn.functional.avg_pool2d(images.float(), DIGIT, stride=1).flatten(1) * DIGIT**2  # (N, (101 - DIGIT)^2)
    side = images.shape[-1] - DIGIT + 1
    centre = torch.arange(side, dtype=torch.float32) + CENTRE  # of the boxes at each 0-based corner
    cy, cx = (c.flatten() for c in torch.meshgrid(centre, centre, indexing="ij"))
    far = torch.hypot(cx[None] - digits[:, :1], cy[None] - digits[:, 1:]) >= away  # (N, positions)
    own = (digits - CENTRE).long()
    digit_ink = ink[torch.arange(len(images)), own[:, 1] * side + own[:, 0]]
    return ink.masked_fill(~far, 0.0).max(dim=1).values / digit_ink.clamp(min=1.0)


def report(run: Path, images: torch.Tensor, labels: torch.Tensor, digits: torch.Tensor, found: float,
           bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Print the run's breakdown; return its (wrong, lost) masks (N,)."""
    predicted, centres, shapes = windows(run, images, bf16)
    wrong = predicted != labels
    distance = (centres - digits).norm(dim=-1)  # (T, N)
    lost = distance[-1] > found
    corner = digits - CENTRE
    border = torch.minimum(corner, 100 - DIGIT - corner).min(dim=1).values  # pixels between digit box and edge

    def line(name: str, mask: torch.Tensor) -> str:
        return f"{name}: {int(mask.sum())} images, {100 * wrong[mask].float().mean():.2f} % wrong"

    print(f"{run}: {100 * wrong.float().mean():.2f} % wrong, {int(wrong.sum())} images")
    print(f"  {line(f'last window within {found:g} px of the digit', ~lost)}")
    print(f"  {line('lost (the rest)', lost)}; {100 * (wrong & lost).sum() / wrong.sum():.0f} % of the mistakes")
    for low, high in ((0, 4), (4, 12), (12, 100)):
        near = (border >= low) & (border < high)
        print(f"  digit box {low}-{high} px from the edge: {int(near.sum())} images, lost {100 * lost[near].float().mean():.2f} %,"
              f" wrong {100 * wrong[near & ~lost].float().mean():.2f} % when found, {100 * wrong[near & lost].float().mean():.1f} % when lost,"
              f" second window a median {distance[1, near].median():.1f} px from the digit")  # fmt: skip
    rival = rival_ink(images, digits) > 1
    print(f"  a heavier 28 x 28 box of ink 20+ px from the digit: {100 * rival[~lost].float().mean():.1f} % of the found images,"
          f" {100 * rival[lost].float().mean():.1f} % of the lost")  # fmt: skip
    touching = ink_from_edge(images, digits) < 3
    print(f"  digits with ink 0-2 px from the edge: {int(touching.sum())} images, lost {100 * lost[touching].float().mean():.2f} %")
    for name, mask in (("found", ~lost), ("lost", lost)):
        print(f"  mean distance after each glimpse, {name}: {', '.join(f'{d:.1f}' for d in distance[:, mask].mean(dim=1).tolist())}")
    stride, sigma = shapes.mean(dim=1).unbind(dim=-1)
    print(f"  mean stride after each glimpse: {', '.join(f'{d:.2f}' for d in stride.tolist())}")
    print(f"  mean sigma after each glimpse: {', '.join(f'{d:.2f}' for d in sigma.tolist())}")
    return wrong, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="cluttered-MNIST classifier runs or checkpoints")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--found", type=float, default=12.0, help="pixels from the digit's centre that count as found")
    parser.add_argument("--bf16", action="store_true", help="evaluate under bf16 autocast (default float32, as evaluate does)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels, digits = digit_centres(args.data_dir)
    masks = [report(run, images, labels, digits, args.found, args.bf16) for run in args.runs]
    if len(masks) > 1:  # do the runs fail on the same images?
        wrong, lost = (torch.stack(m).all(dim=0) for m in zip(*masks))
        print(f"all {len(masks)} runs: {int(wrong.sum())} images wrong in every run, {int(lost.sum())} lost in every run")


if __name__ == "__main__":
    main()
