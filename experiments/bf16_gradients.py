"""How far the bf16 training path's gradients are from float32's, on one fixed batch.

Both passes see the same images, binarization and noise; the bf16 pass runs the LSTM matmuls
in bfloat16 from weight copies made once per step (drawcli/lstm.py). Prints the cosine
similarity of the whole gradient and of each tensor, the loss difference, and each pass's time.
`--float64` adds float32's own distance from a float64 pass: how far rounding alone moves the
gradient of this model, the scale against which bf16's distance is read.

    .venv/bin/python experiments/bf16_gradients.py --data-dir ../shared/data/mnist            # at initialisation
    .venv/bin/python experiments/bf16_gradients.py --checkpoint runs/X/checkpoint.safetensors  # a trained model
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from drawcli import checkpoint, data, presets
from drawcli.model import DRAW
from drawcli.training.execution import native_bf16


def paper_model() -> DRAW:
    """paper-mnist's architecture, its reader options (if any) included, at its seed-0 initialisation."""
    config, _ = presets.build("paper-mnist")
    torch.manual_seed(0)
    return DRAW(config)


def gradients(model: DRAW, x: torch.Tensor, noise: torch.Tensor, dtype: torch.dtype | None) -> tuple[float, dict, float]:
    """(mean loss, {name: gradient}, seconds) of one forward and backward."""
    model.zero_grad()
    model.low_precision(dtype)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    tick = time.perf_counter()
    loss = model(x, noise=noise).loss
    loss.mean().backward()
    sync()
    seconds = time.perf_counter() - tick
    return float(loss.detach().mean()), {n: p.grad.clone() for n, p in model.named_parameters()}, seconds


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors as flat vectors, in float64 (float32 drifts past 1 at a million entries)."""
    return float(torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained DRAW (default: paper-mnist at initialisation)")
    parser.add_argument("--data-dir", type=Path, help="MNIST's folder (default: the checkpoint's, else the cache)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent noise (the batch is fixed)")
    parser.add_argument("--float64", action="store_true", help="also compare float32 with a float64 pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.checkpoint:
        model, info = checkpoint.load_model(args.checkpoint, device)
        data_dir = args.data_dir or (Path(info.training["data_dir"]) if info.training.get("data_dir") else None)
    else:
        model, data_dir = paper_model().to(device), args.data_dir
    model.train()
    images = data.load_images(data.open_dataset("mnist"), "test", data_dir, model.config.image_shape)
    x = data.binarize_fixed(images[: args.batch], "stochastic").to(device)
    torch.manual_seed(args.seed)
    noise = model.noise(args.batch, device)
    loss32, exact, t32 = gradients(model, x, noise, None)
    loss16, fast, t16 = gradients(model, x, noise, torch.bfloat16)
    flat = cosine(torch.cat([g.flatten() for g in exact.values()]), torch.cat([g.flatten() for g in fast.values()]))
    print(f"model: {args.checkpoint or 'paper-mnist at initialisation (seed 0)'}; batch {args.batch}; "
          f"noise seed {args.seed}; device {device}; native bf16 matmuls: {native_bf16(device)}")
    print(f"loss: float32 {loss32:.4f}, bf16 {loss16:.4f} nats (difference {loss16 - loss32:+.4f})")
    print(f"forward+backward: float32 {t32:.2f} s, bf16 {t16:.2f} s")
    print(f"cosine similarity of the whole gradient: {float(flat):.6f}")
    for name in exact:
        norm = float(fast[name].norm() / exact[name].norm().clamp_min(1e-30))
        print(f"  {name:28s} cosine {cosine(exact[name], fast[name]):.6f}  norm ratio {norm:.4f}")
    if args.float64:
        loss64, wide, _ = gradients(copy.deepcopy(model).double(), x.double(), noise.double(), None)
        flat64 = cosine(torch.cat([g.flatten() for g in wide.values()]), torch.cat([g.flatten() for g in exact.values()]))
        print(f"float64 reference: loss {loss64:.4f} nats; cosine similarity of float32's whole gradient "
              f"to float64's: {flat64:.6f}")


if __name__ == "__main__":
    main()
