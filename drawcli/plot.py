"""Learning curves from a run's metrics.jsonl: training loss and test bound (a classifier's: test loss) against steps and time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drawcli.errors import DrawcliError
from drawcli.rundir import METRICS

FIGSIZE = (10.0, 4.0)  # inches; at DPI 100 the PNG is 1000 x 400 pixels
DPI = 100


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every well-formed JSON line of a metrics log (a torn last line is skipped).

    A log with no record is either a run's that has logged nothing yet (empty, or one torn line)
    or not a metrics log at all: the second says which line could not be read.
    """
    if path.is_dir():
        path = path / METRICS
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except OSError as exc:
        raise DrawcliError(f"cannot read metrics log {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DrawcliError(f"cannot read metrics log {path}: byte {exc.start} is not UTF-8 text; "
                           f"a run's {METRICS} holds one JSON record per line") from None
    records, unreadable = [], None
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
        elif unreadable is None and line.strip() and not (number == len(lines) and line.startswith("{")):  # not a torn last line
            unreadable = number
    if not records and unreadable is not None:
        raise DrawcliError(f"cannot read metrics log {path}: line {unreadable} is not a JSON record with a step; "
                           f"a run's {METRICS} holds one per line")  # fmt: skip
    if not records:
        raise DrawcliError(f"{path} holds no metrics yet")
    return records


# The held-out figure of an epoch record, in nats: DRAW's test bound or a classifier's test loss.
TEST_KEYS = ("test_bound", "test_loss")


def test_key(record: dict[str, Any]) -> str | None:
    """Which of TEST_KEYS an epoch record carries, if any."""
    return next((key for key in TEST_KEYS if key in record), None)


def run_labels(paths: list[Path]) -> list[str]:
    """A legend label per run: its folder's name, or the whole path where two names would clash."""
    names = [path.name if path.is_dir() else path.parent.name for path in paths]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, paths)]


def plot_curves(runs: dict[str, list[dict[str, Any]]], out: Path, ylim: tuple[float, float] | None = None) -> None:
    """One PNG, two panels (nats against steps, and against wall time), one colour per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DrawcliError("plotting needs matplotlib: pip install 'drawcli[plot]'") from None
    fig, axes = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI)
    for colour, (label, records) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4, runs.items()):
        train = [r for r in records if r.get("event") == "train"]
        test = [r for r in records if r.get("event") == "epoch" and test_key(r)]
        key = (test_key(test[0]) if test else None) or TEST_KEYS[0]  # one model kind per run
        for ax, x_key in zip(axes, ("step", "wall_time_s")):
            ax.plot([r[x_key] for r in train], [r["loss"] for r in train], color=colour, alpha=0.4, label=f"{label} train loss")
            ax.plot([r[x_key] for r in test], [r[key] for r in test], "o-", color=colour,
                    label=f"{label} {key.replace('_', ' ')}")  # fmt: skip
    for ax, xlabel in zip(axes, ("step", "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("nats per image")
        ax.grid(alpha=0.3)
        if ylim:
            ax.set_ylim(*ylim)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
