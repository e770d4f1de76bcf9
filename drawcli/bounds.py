"""How good is a model: the variational bound and the importance-weighted bound, in nats per image.

The bound is recon + sum_t KL_t (analytic KL). The importance-weighted bound (Burda et al.
2015) is -log (1/K) sum_k w_k with log w_k = log p(x | z_k) + sum_t [log P(z_t,k) - log Q(z_t,k | x)]
over K posterior samples: it is never looser in expectation and tends to -log p(x) as K grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from drawcli.model import DRAW

EVAL_SEED = 1234  # the posterior noise used by evaluation, fixed so results repeat exactly


@dataclass
class PerImage:
    """Per-image results of one pass over a data set."""

    recon: torch.Tensor  # (N,)
    kl: torch.Tensor  # (N, T)
    iw: torch.Tensor | None = None  # (N,) importance-weighted bound, when samples > 0

    @property
    def bound(self) -> torch.Tensor:
        return self.recon + self.kl.sum(dim=1)


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error across images."""
    n = len(values)
    se = values.double().std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return values.double().mean().item(), se


@torch.no_grad()
def importance_weighted(model: DRAW, x: torch.Tensor, samples: int, chunk: int = 4096) -> torch.Tensor:
    """(B,) -log mean_k w_k for binarized x (B, C, H, W), using K = `samples` posterior draws."""
    batch = x.shape[0]
    log_w = []
    per_pass = max(1, min(samples, chunk // max(batch, 1)))
    done = 0
    while done < samples:
        k = min(per_pass, samples - done)
        out = model(x.repeat(k, 1, 1, 1), densities=True)  # rows: sample-major, image-minor
        log_w.append((-out.recon + out.log_ratio).view(k, batch))
        done += k
    log_w_all = torch.cat(log_w).double()  # (K, B)
    return -(torch.logsumexp(log_w_all, dim=0) - math.log(samples))


@torch.no_grad()
def per_image(
    model: DRAW,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
    samples: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> PerImage:
    """Evaluate binarized images (N, C, H, W) in batches with a fixed RNG stream of its own.

    The fork keeps evaluation from depending on, or disturbing, any training RNG state.
    """
    was_training = model.training
    model.eval()
    recon, kl, iw = [], [], []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED)
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            out = model(x)
            recon.append(out.recon.double().cpu())
            kl.append(out.kl.double().cpu())
            if samples > 0:
                iw.append(importance_weighted(model, x, samples).cpu())
            if on_batch is not None:
                on_batch(len(x))
    model.train(was_training)
    return PerImage(recon=torch.cat(recon), kl=torch.cat(kl), iw=torch.cat(iw) if iw else None)


def summarize(result: PerImage) -> dict[str, Any]:
    """Means with standard errors, and the KL per glimpse: a JSON-able report."""
    bound, bound_se = _mean_se(result.bound)
    summary: dict[str, Any] = {
        "images": len(result.recon),
        "bound": bound,
        "bound_se": bound_se,
        "recon": result.recon.mean().item(),
        "kl": result.kl.sum(dim=1).mean().item(),
        "kl_per_glimpse": result.kl.mean(dim=0).tolist(),
    }
    if result.iw is not None:
        summary["iw_bound"], summary["iw_bound_se"] = _mean_se(result.iw)
        summary["iw_gain"] = bound - summary["iw_bound"]
    return summary
