"""Shared fixtures: one torch thread, a factory for tiny DRAW configs, a tiny MNIST-format data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from helpers import write_idx_dataset

from drawcli.config import DrawConfig

torch.set_num_threads(1)

TINY: dict[str, Any] = dict(
    channels=1,
    height=8,
    width=8,
    glimpses=3,
    enc_size=16,
    dec_size=16,
    z_size=4,
    read_size=2,
    write_size=3,
)


@pytest.fixture
def tiny_config() -> Callable[..., DrawConfig]:
    """A factory: tiny_config(channels=3, reader='none', ...) -> a small DrawConfig."""

    def make(**overrides: Any) -> DrawConfig:
        return DrawConfig(**{**TINY, **overrides})

    return make


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """MNIST-format idx files of 48 training and 20 test images (3 steps an epoch at batch 16)."""
    write_idx_dataset(tmp_path / "data", n_train=48, n_test=20)
    return tmp_path / "data"
