"""Knowledge distillation (Hinton, Vinyals and Dean 2015): a classifier learns from the labels and
from trained classifiers' ("teachers'") class probabilities on the same training images.

The teachers' averaged probabilities at temperature T carry what an ensemble knows about which
wrong classes are plausible; a single student trained on them can close part of the gap between
one model and the ensemble at one model's cost.
"""

from __future__ import annotations

from pathlib import Path

import torch

from drawcli import checkpoint
from drawcli.accuracy import predict
from drawcli.rundir import checkpoint_file, file_digest


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * -sum_k p_k log softmax(logits / T)_k per example: (B, K) logits and targets -> (B,).

    The T^2 keeps this term's gradient on the scale of the label cross-entropy's as T changes
    (the softened gradient shrinks as 1/T^2). Its minimum over the logits is at softmax(logits / T) = p.
    """
    log_p = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(targets * log_p).sum(dim=-1) * temperature**2


def digests(paths: tuple[str, ...]) -> list[str]:
    """SHA-256 of each teacher's checkpoint file: a resume checks that the teachers are unchanged."""
    return [file_digest(checkpoint_file(Path(path)).read_bytes()) for path in paths]


class Teachers:
    """Trained classifiers of the same classes and image size, loaded once; they label the training
    images at the first epoch (and after a resume), and every epoch with --redraw."""

    def __init__(self, paths: tuple[str, ...], classes: tuple[str, ...], image_shape: tuple[int, int, int],
                 device: torch.device, temperature: float, bf16: bool) -> None:  # fmt: skip
        for path in paths:  # every teacher checked before any is loaded
            checkpoint.read_info(Path(path)).require_classifier_of(classes, image_shape, "--teacher")
        self.models = [checkpoint.load_model(Path(path), device)[0].eval().requires_grad_(False) for path in paths]
        self.digests = digests(paths)
        self.device, self.temperature, self.bf16 = device, temperature, bf16

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """(N, K) mean over teachers of softmax(logits / T) for uint8 images (N, C, H, W), on the images' device."""
        total = None
        # Forked: a reader that draws random numbers must not move the student's RNG, which a
        # resumed run restores before this is called and a straight run does not.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for model in self.models:
                probs = (predict(model, images, self.device, bf16=self.bf16) / self.temperature).softmax(dim=-1)
                total = probs if total is None else total + probs
        assert total is not None
        return (total / len(self.models)).to(images.device)
