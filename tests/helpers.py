"""Test helpers: the tiny training options and `invoke` for the command line, tiny data written to
tmp_path (idx files in MNIST's format), a benchmark or experiment script as a module, a run's metrics log, a
model patched to diverge, and an identity whose backward fails."""

from __future__ import annotations

import errno
import gzip
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from drawcli.cli import app
from drawcli.model import DRAW

# A tiny attention classifier, on the CPU wherever the suite runs: the messages and stop points
# pinned with it are the CPU's (device auto takes a GPU).
CLASSIFIER = ["--model", "classifier", "--glimpses", "2", "--rnn-size", "8", "--read-size", "3", "--batch-size", "16",
              "--threads", "1", "--quiet", "--device", "cpu"]  # fmt: skip
# A tiny attention classifier's config fields (12 x 12 images, 3 glimpses of 3 x 3, LSTM 8, 4 classes).
SMALL_CLASSIFIER = dict(channels=1, height=12, width=12, glimpses=3, dec_size=8, read_size=3, classes=4)  # fmt: skip
# A tiny model and one thread: what every end-to-end test trains.
TINY_ARGS = ["--glimpses", "3", "--rnn-size", "16", "--z-size", "4", "--batch-size", "16", "--threads", "1"]
runner = CliRunner()


def load_script(folder: str, name: str) -> ModuleType:
    """FOLDER/NAME.py (FOLDER at the checkout's top) imported as the module NAME: neither
    benchmarks/ nor experiments/ is a package."""
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py, the benchmark's scripts, as the module NAME."""
    return load_script("benchmarks", name)


def load_experiment(name: str) -> ModuleType:
    """experiments/NAME.py, a one-off analysis script, as the module NAME."""
    return load_script("experiments", name)


IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def invoke(*args: Any) -> Any:
    """Run `drawcli ARGS...` in-process (arguments turned into strings); returns the click Result."""
    return runner.invoke(app, [str(a) for a in args])


def idx_bytes(images: torch.Tensor) -> bytes:
    """uint8 (N, H, W) -> the bytes of an idx3-ubyte file."""
    n, h, w = images.shape
    header = (0x0803).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w))
    return header + images.contiguous().numpy().tobytes()


def write_idx_dataset(folder: Path, n_train: int = 64, n_test: int = 16, size: int = 28, gz: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write MNIST-style idx files of random blobs and labels (image i has label i % 10) into folder; return the images."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = (torch.rand(n, size, size, generator=gen) * 255).to(torch.uint8)
        labels = (0x0801).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(i % 10 for i in range(n))
        img_name, lbl_name = IDX_NAMES[split]
        for name, payload in ((img_name, idx_bytes(images)), (lbl_name, labels)):
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(payload)
            else:
                (folder / name).write_bytes(payload)
        out[split] = images
    return out


def metric_records(run: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl, all or those of one event ("train", "epoch"); every line must parse."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if event is None or r["event"] == event]


def make_losses_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch DRAW.forward so that every reconstruction term, hence every loss, is NaN."""
    forward = DRAW.forward

    def nan_forward(self: DRAW, *args: Any, **kwargs: Any) -> Any:
        out = forward(self, *args, **kwargs)
        out.recon = out.recon * float("nan")
        return out

    monkeypatch.setattr(DRAW, "forward", nan_forward)


class FailingBackward(torch.autograd.Function):
    """The identity whose backward raises `message`, as a compiled graph's lazily compiled backward can."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, message: str) -> torch.Tensor:
        ctx.message = message
        return t.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        raise RuntimeError(ctx.message)


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def error_line(result: Any, code: int = 1) -> str:
    """The exit code is `code`, and stderr ends with exactly one `error:` line and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    return errors[0]


def snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in ("checkpoint.safetensors", "resume.safetensors")}


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*") if ".tmp" in p.name]


def rewrite_metadata(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the decoded metadata of a checkpoint in place (tensors, hence their checksum, unchanged)."""
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    decoded = {k: json.loads(v) if k in ("config", "components", "training") else v for k, v in metadata.items()}
    change(decoded)
    save_file(tensors, str(path), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items()})
