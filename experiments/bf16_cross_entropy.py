"""What a cross-entropy computed in bf16 does to a trained classifier's gradient (the classifier's
objective under `--amp bf16` takes the labels' term from the bf16 logits in bf16, on purpose:
docs/reproducing.md, "The labels' cross-entropy in bf16").

In bf16, 1 + sum_k e^-(margin_k) rounds to 1 once the competitors' share is under 2^-8, so a
confident right answer gets loss 0 and no gradient on its label's logit. Classifies the first
--n test images under the bf16 autocast (as training does), then prints how many right answers
had that zero gradient, and the gradient with respect to the logits in bf16 against float32.

    .venv/bin/python experiments/bf16_cross_entropy.py runs/clut75-r512-f32win-s0 --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from drawcli import checkpoint, data
from drawcli.accuracy import predict
from drawcli.classifier import ClassifierOutput


def logit_gradients(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d(summed cross-entropy)/d(logits) (N, K) for bf16 logits, computed in bf16 and in float32."""
    low = logits.to(torch.bfloat16).requires_grad_(True)
    ClassifierOutput(low).loss(labels, exact=False).sum().backward()  # the training objective's term
    high = logits.to(torch.bfloat16).float().requires_grad_(True)
    ClassifierOutput(high).loss(labels).sum().backward()
    assert low.grad is not None and high.grad is not None
    return low.grad.float(), high.grad


def report(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Share of right answers whose label logit got no gradient in bf16, and both gradients' norms."""
    low, high = logit_gradients(logits, labels)
    right = logits.argmax(dim=1) == labels
    zero = low.gather(1, labels[:, None]).squeeze(1) == 0
    return {
        "right": right.float().mean().item(),
        "right_with_zero_gradient": (zero & right).float().sum().item() / max(int(right.sum()), 1),
        "gradient_norm_bf16": low.norm().item(),
        "gradient_norm_float32": high.norm().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--n", type=int, default=2000, help="test images to classify")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = checkpoint.load_model(args.run, torch.device("cpu"))
    dataset = data.open_dataset("cluttered-mnist")
    test = data.load_labelled(dataset, "test", args.data_dir, model.config.image_shape)
    logits = predict(model, test.images[: args.n], torch.device("cpu"), bf16=True)
    out = report(logits, test.labels[: args.n])
    print(f"{args.run}: {args.n} test images, {100 * out['right']:.2f} % right")
    print(f"right answers whose label logit got no gradient in bf16: {100 * out['right_with_zero_gradient']:.1f} %")
    print(f"gradient norm with respect to the logits: bf16 {out['gradient_norm_bf16']:.4f}, float32 {out['gradient_norm_float32']:.4f}")


if __name__ == "__main__":
    main()
