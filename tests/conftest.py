"""Shared fixtures: one torch thread, a factory for tiny DRAW configs, tiny MNIST-format data folders,
and a finished tiny run to work on copies of."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from helpers import TINY_ARGS, invoke, write_idx_dataset

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


def _tiny_idx(folder: Path, n_train: int = 48, n_test: int = 20) -> Path:
    write_idx_dataset(folder, n_train=n_train, n_test=n_test)
    return folder


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """MNIST-format idx files of 48 training and 20 test images (3 steps an epoch at batch 16)."""
    return _tiny_idx(tmp_path / "data")


@pytest.fixture
def cluttered_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MNIST files of 30 train / 20 test digits, and cluttered-mnist shrunk to 40 train / 10 test
    images built from them (3 steps an epoch at batch 16)."""
    from drawcli_synthetic import ClutteredMNIST

    monkeypatch.setattr(ClutteredMNIST, "sizes", {"train": 40, "test": 10})
    return _tiny_idx(tmp_path / "mnist", n_train=30, n_test=20)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """idx_dir's files, written once per session for the tests that only read them."""
    return _tiny_idx(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step (one-epoch) run; tests work on copies."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", run, "--steps", "3", "--quiet", "--sample-every", "0")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))
