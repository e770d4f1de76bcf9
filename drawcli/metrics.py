"""The run's metrics log: one JSON object per line, mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drawcli import tensorboard
from drawcli.atomic import append_line

SCALARS = ("loss", "recon", "kl", "train_loss", "test_bound", "test_recon", "test_kl")


class MetricsLog:
    """Appends records to a JSON-lines file; with `tensorboard` installed, also to a TensorBoard folder."""

    def __init__(self, path: Path, tensorboard_dir: Path | None = None) -> None:
        self.path = path
        # The run's one writer, shared with its pictures and hyperparameters (tensorboard.py); None without tensorboard.
        self._tb: Any = tensorboard.writer(tensorboard_dir) if tensorboard_dir is not None else None

    def write(self, record: dict[str, Any]) -> None:
        append_line(self.path, json.dumps(record))  # a full disk raises WriteError naming the file
        if self._tb is not None:
            for key, value in record.items():
                if key in SCALARS or key.startswith(("train_", "test_")):
                    self._tb.add_scalar(f"{record.get('event', 'train')}/{key}", value, record["step"])
            self._tb.flush()
