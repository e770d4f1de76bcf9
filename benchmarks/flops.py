"""The analytic matmul FLOP count of DRAW's training step, by part, and the settings' labels.

Whether read and write use attention is asked of the model built from the config (on the meta
device, so nothing is allocated or initialised), never decided by the components' names.
"""

from __future__ import annotations

import torch

from drawcli.config import DrawConfig
from drawcli.model import DRAW

ISSUE_GLIMPSE_MFLOP, ISSUE_TRAIN_MFLOP = 1.9, 370.0  # the issue's estimates, attention setting
LSTM_INNER, LSTM_COLS = 520, 1024  # the encoder's [r, h_dec, h_enc] x 4 gates at the paper setting

FLOP_PARTS = [
    "encoder LSTM", "decoder LSTM", "sampler linear", "read window linear", "write window linear",
    "write patch linear", "write linear", "read filterbank", "write filterbank",
]  # fmt: skip


def attention(cfg: DrawConfig) -> tuple[bool, bool]:
    """(read, write): whether the config's reader and writer attend, as the built components report."""
    with torch.device("meta"):
        model = DRAW(cfg)
    return model.reader.produces_windows, model.writer.produces_windows


def setting_label(cfg: DrawConfig) -> str:
    """'attention', 'no attention', or which half attends when only one does."""
    read, write = attention(cfg)
    if read == write:
        return "attention" if read else "no attention"
    return "read attention" if read else "write attention"


def lstm_shape(rows: int) -> str:
    """The name of the encoder LSTM's matmul shape at `rows` images (a key of the matmul rates)."""
    return f"{rows} x {LSTM_INNER} x {LSTM_COLS}"


def glimpse_flops(cfg: DrawConfig) -> dict[str, int]:
    """Matmul FLOPs (2 per multiply-add) of one glimpse's forward for one image, by part."""
    c, h, w = cfg.image_shape
    read_attn, write_attn = attention(cfg)
    n, m = cfg.read_size, cfg.write_size
    read_out = 2 * c * n * n if read_attn else 2 * c * h * w
    parts = {
        "encoder LSTM": 2 * (read_out + cfg.dec_size + cfg.enc_size) * 4 * cfg.enc_size,  # input [r, h_dec] + h_enc
        "decoder LSTM": 2 * (cfg.z_size + cfg.dec_size) * 4 * cfg.dec_size,  # input z + h_dec
        "sampler linear": 2 * cfg.enc_size * 2 * cfg.z_size,
    }
    if read_attn:
        parts["read window linear"] = 2 * cfg.dec_size * 5
        # x and x_hat, each channel: F_y (N x H) @ img (H x W), then @ F_x^T (W x N)
        parts["read filterbank"] = 2 * c * 2 * (n * h * w + n * w * n)
    if write_attn:
        parts["write window linear"] = 2 * cfg.dec_size * 5
        parts["write patch linear"] = 2 * cfg.dec_size * c * m * m
        # each channel: w (N x N) @ F_x (N x W), then F_y^T (H x N) @ (N x W)
        parts["write filterbank"] = 2 * c * (m * m * w + h * m * w)
    else:
        parts["write linear"] = 2 * cfg.dec_size * c * h * w
    return parts


def train_flops(cfg: DrawConfig) -> int:
    """Matmul FLOPs of one training step per image: forward + backward = 3 x forward, T glimpses."""
    return 3 * cfg.glimpses * sum(glimpse_flops(cfg).values())
