"""DRAW as a model family: binarized images in, the negative variational bound (eqs. 9-12) out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from drawcli import bounds as evaluation
from drawcli import data, distributed
from drawcli.config import DrawConfig
from drawcli.heldout import EVAL_BATCH_SIZE
from drawcli.model import DRAW, DrawOutput
from drawcli.training.execution import Execution, as_run, plan
from drawcli.training.family import BatchLoss, ModelFamily
from drawcli.training.settings import TrainSettings


def kl_annealed(out: DrawOutput, step: int, warmup: int) -> torch.Tensor:
    """Per image recon + beta KL, beta rising linearly from 1/warmup to 1 over `warmup` steps.

    Only the gradient sees beta < 1; the loss that is logged and evaluated is the true bound.
    """
    beta = (step + 1) / warmup
    return out.recon + beta * out.kl.sum(dim=1)


def held_out_bound(model: DRAW, images: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Mean per-image bound on binarized images (N, C, H, W): {'bound', 'recon', 'kl'} in nats."""
    summary = evaluation.summarize(evaluation.per_image(model, images, device, EVAL_BATCH_SIZE))
    return {key: summary[key] for key in ("bound", "recon", "kl")}


class DrawFamily(ModelFamily):
    """DRAW trained on a data set's images, binarized afresh each batch (or by threshold, or the data set's own bits)."""

    metrics = ("loss", "recon", "kl")
    labels = {"kl": "KL"}

    def __init__(self, config: DrawConfig, settings: TrainSettings, device: torch.device,
                 ctx: distributed.Dist | None = None) -> None:  # fmt: skip
        self.config, self.settings, self.device = config, settings, device
        self.ctx = ctx or distributed.Dist()
        dataset = data.open_dataset(settings.dataset)
        data_dir = Path(settings.data_dir) if settings.data_dir else None
        self.train_images = data.load_images(dataset, "train", data_dir, config.image_shape)
        test = data.load_images(dataset, "test", data_dir, config.image_shape)
        self.binarize = data.binarization(dataset, settings.binarize)  # refuses `fixed` for grey levels
        self.test_set = data.binarize_fixed(test, self.binarize)
        self.train_size = len(self.train_images)
        self._binarize_gen: torch.Generator | None = None
        self._model: DRAW | None = None
        precision = "bf16" if settings.amp == "bf16" else "float32"
        self._execution = plan(settings, self.train_size, config.glimpses, device, precision)

    def execution(self) -> Execution:
        return as_run(self._execution, self._model)

    def build(self) -> DRAW:
        model = DRAW(self.config).to(self.device)
        if self.config.canvas == "learned":
            model.init_canvas(self.train_images.to(self.device))
        if self._execution.compiled:
            model.compile_glimpses(self.settings.compile_mode)
        if self._execution.precision == "bf16":
            model.low_precision(torch.bfloat16)
        return model

    def prepare(self, model: nn.Module) -> None:
        self._model = model  # type: ignore[assignment]
        if self.device.type == "cuda":  # the whole training set on the GPU, binarized there: no copies per step
            self.train_images = self.train_images.to(self.device)
        self._binarize_gen = torch.Generator(device=self.train_images.device).manual_seed(self.settings.seed + 1)

    def index_device(self) -> torch.device:
        return self.train_images.device

    def generators(self) -> dict[str, torch.Generator]:
        assert self._binarize_gen is not None, "prepare() first"
        return {"binarize": self._binarize_gen}

    def capturable_from(self) -> int | None:
        return self.settings.kl_warmup  # before it, the KL weight changes every step (kl_annealed)

    def batch_loss(self, net: nn.Module, model: nn.Module, indices: torch.Tensor, step: int) -> BatchLoss:
        settings = self.settings
        model.start_step()
        # The global batch, its binarization and its noise, identical on every rank; then this rank's shard.
        x = data.binarize(self.train_images[indices], self.binarize, self._binarize_gen)
        noise = model.noise(len(indices), self.device)
        x = distributed.shard(x, self.ctx).to(self.device, non_blocking=True)
        out = net(x, noise=distributed.shard(noise, self.ctx, dim=1))
        objective = out.loss if step >= settings.kl_warmup else kl_annealed(out, step, settings.kl_warmup)
        sums = {"loss": out.loss.detach().sum(), "recon": out.recon.detach().sum(), "kl": out.kl.detach().sum()}
        return BatchLoss(objective, sums)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return held_out_bound(model, self.test_set, self.device)  # type: ignore[arg-type]

    def describe(self, metrics: dict[str, float]) -> str:
        """'loss 95.20 nats (recon 70.10, KL 25.10)'; held out, 'bound ...'."""
        if not metrics:
            return "not measured"
        (first, value), *rest = metrics.items()
        parts = ", ".join(f"{self.labels.get(k, k)} {v:.2f}" for k, v in rest)
        return f"{first} {value:.2f} nats" + (f" ({parts})" if parts else "")

    def summary(self) -> dict[str, Any]:
        return {"data_dir": self.settings.data_dir}
