"""Shared fixtures: one torch thread, and a factory for tiny DRAW configs."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

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
