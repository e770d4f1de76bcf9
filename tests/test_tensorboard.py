"""TensorBoard shows what the model draws: pictures at each sample interval and at the end, and the
run's hyperparameters with its final held-out metric, read back from the event file."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import CLASSIFIER, TINY_ARGS, invoke
from safetensors.torch import load_file

from drawcli import render
from drawcli import tensorboard as board
from drawcli.checkpoint import read_info

pytest.importorskip("tensorboard")

SIDE = 28  # the tiny data's images: 28 x 28, 20 test images (conftest.py)


def _events(run: Path) -> Any:
    """The run's one event file, read back whole."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1, files  # scalars, pictures and hyperparameters share one writer
    events = EventAccumulator(str(files[0]), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def _hparams(events: Any) -> tuple[dict[str, Any], list[str]]:
    """The hyperparameters of the run's session (name -> number or text), and the metric names of its experiment."""
    from google.protobuf.json_format import MessageToDict
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    values = {key: MessageToDict(value) for key, value in start.hparams.items()}
    return values, [info.name.tag for info in experiment.metric_infos]


def _grid(count: int, columns: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) of `count` cells of width x height laid out `columns` wide, as make_grid pads them."""
    pad, rows = render.GRID_PADDING, math.ceil(count / columns)
    return columns * (width + pad) + pad, rows * (height + pad) + pad


def _pictures(events: Any) -> dict[str, list[tuple[int, int, int]]]:
    """tag -> [(step, width, height)] of every picture logged."""
    return {tag: [(e.step, e.width, e.height) for e in events.Images(tag)] for tag in events.Tags()["images"]}


def test_draw_run_shows_samples_strip_reconstruction_and_hparams(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    result = invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", run, "--epochs", "2", "--sample-every", "1", "--quiet")
    assert result.exit_code == 0, result.output
    events = _events(run)
    cell = SIDE * board.SCALE
    samples = _grid(64, 8, cell, cell)  # the default --sample-count of 64, a square grid
    strip = _grid(board.STRIP_ROWS * 3, 3, cell, cell)  # 3 glimpses, all of them in the strip
    left_w, height = _grid(board.SHOWN, render.grid_columns(board.SHOWN), cell, cell)
    steps = [3, 6]  # both epoch ends (3 steps an epoch)
    assert _pictures(events) == {
        "images/samples": [(s, *samples) for s in steps],
        "images/samples_by_glimpse": [(s, *strip) for s in steps],
        "images/reconstruction": [(s, 2 * left_w + render.SIDE_BY_SIDE_GAP, height) for s in steps],
    }
    values, metrics = _hparams(events)
    assert metrics == ["hparams/test_bound"]
    assert values["kind"] == "draw" and values["glimpses"] == 3 and values["lr"] == 1e-3 and values["dataset"] == "mnist"
    assert values["teachers"] == "[]" and values["redraw"] == "false" and values["threads"] == 1  # lists and flags as JSON
    assert "epoch/test_bound" in events.Tags()["scalars"]  # the metrics log's scalars, in the same file
    (final,) = events.Scalars("hparams/test_bound")
    bound = read_info(run / "checkpoint.safetensors").training["last_test"]["bound"]
    assert final.step == 6 and final.value == pytest.approx(bound, rel=1e-6)


def test_classifier_run_shows_windows_with_labels_and_its_error(tmp_path: Path, data_dir: Path) -> None:
    """Every second epoch of three, and the end: the pictures of step 9 come from the saved model."""
    run = tmp_path / "run"
    result = invoke("train", *CLASSIFIER, "--data-dir", data_dir, "--out", run, "--epochs", "3", "--sample-every", "2")
    assert result.exit_code == 0, result.output
    events = _events(run)
    cell, rows = SIDE * board.SCALE, board.STRIP_ROWS
    captioned = _grid(rows, render.grid_columns(rows), cell, cell + render.CAPTION_HEIGHT)
    strip = _grid(rows * 2, 2, cell, cell)  # 2 glimpses
    assert _pictures(events) == {
        "images/glimpses": [(6, *captioned), (9, *captioned)],
        "images/glimpses_by_glimpse": [(6, *strip), (9, *strip)],
    }
    values, metrics = _hparams(events)
    assert metrics == ["hparams/test_error"] and values["kind"] == "classifier"
    assert values["classes"] == 10  # the checkpoint's config: the data's classes
    error = read_info(run / "checkpoint.safetensors").training["last_test"]["error"]
    assert [(e.step, e.value) for e in events.Scalars("hparams/test_error")] == [(9, pytest.approx(error, rel=1e-6))]


def test_pictures_leave_the_weights_bit_identical(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with TensorBoard's pictures computes the very weights of one without tensorboard, which writes no folder."""
    common = ["train", *TINY_ARGS, "--data-dir", data_dir, "--epochs", "2", "--sample-every", "1", "--quiet"]
    assert invoke(*common, "--out", tmp_path / "with").exit_code == 0
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    result = invoke(*common, "--out", tmp_path / "without")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "without" / "tensorboard").exists() and (tmp_path / "with" / "tensorboard").is_dir()
    with_, without = (load_file(tmp_path / name / "checkpoint.safetensors") for name in ("with", "without"))
    assert with_.keys() == without.keys() and all(with_[k].equal(without[k]) for k in with_)


def test_strip_glimpses_spread_from_the_first_to_the_last() -> None:
    assert board.strip_glimpses(1) == [0]
    assert board.strip_glimpses(3) == [0, 1, 2]
    assert board.strip_glimpses(64) == [0, 9, 18, 27, 36, 45, 54, 63]
