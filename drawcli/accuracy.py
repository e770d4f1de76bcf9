"""How good is a classifier: its logits over a set of images, and the test error with its standard
error, per class and as a confusion matrix (used by training, `evaluate`, `glimpses` and the teachers)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from drawcli.heldout import EVAL_BATCH_SIZE


def grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float grey levels in [0, 1]: the classifier reads them unbinarized."""
    return images.float() / 255.0


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = EVAL_BATCH_SIZE,
            on_batch: Any = None, bf16: bool = False) -> torch.Tensor:  # fmt: skip
    """Logits (N, classes) of uint8 images (N, C, H, W), in evaluation mode, on the CPU (bf16: under autocast)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(grey(images[start : start + batch_size].to(device))).logits
        out.append(logits.float().cpu())
        if on_batch is not None:
            on_batch(len(out[-1]))
    model.train(was_training)
    return torch.cat(out)


def error_report(logits: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> dict[str, Any]:
    """Test error in % with its standard error (binomial), mean cross-entropy, per-class errors, confusion matrix."""
    n = len(labels)
    wrong = (logits.argmax(dim=1) != labels).double()
    p = wrong.mean().item()
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.int64)  # rows: true class, columns: predicted
    confusion.index_put_((labels, logits.argmax(dim=1)), torch.ones(n, dtype=torch.int64), accumulate=True)
    per_class = {}
    for k, name in enumerate(classes):
        total = int(confusion[k].sum())
        per_class[name] = {"images": total, "error": 100.0 * (total - int(confusion[k, k])) / total if total else None}
    return {
        "images": n,
        "error": 100.0 * p,
        "error_se": 100.0 * math.sqrt(p * (1 - p) / n) if n > 1 else float("nan"),
        "loss": torch.nn.functional.cross_entropy(logits.double(), labels).item(),
        "classes": list(classes),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
