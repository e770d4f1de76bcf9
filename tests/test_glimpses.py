"""`drawcli glimpses --mistakes`: only the test images the classifier gets wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, invoke
from PIL import Image

import drawcli.cli.draw as draw_cli


@pytest.fixture
def run(idx_dir: Path, tmp_path: Path) -> Path:
    """A classifier after one step: wrong on many of the 20 test images."""
    out = tmp_path / "run"
    assert invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", out, "--steps", "1").exit_code == 0
    return out


def test_mistakes_shows_only_misclassified_test_images(run: Path, tmp_path: Path) -> None:
    """Every image shown is one it gets wrong, and the count of mistakes is evaluate's error x 20 images."""
    report = json.loads(invoke("evaluate", run, "--json", "--threads", "1", "--device", "cpu").stdout)
    wrong = round(report["error"] * 20 / 100)
    assert 3 <= wrong < 20  # the fixture's model, or this test says nothing
    cpu = ["--threads", "1", "--device", "cpu"]
    result = invoke("glimpses", run, "--mistakes", "--gif", tmp_path / "g.gif", "--n", "3", *cpu)
    assert result.exit_code == 0, result.output
    assert f"3 of {wrong} mistakes in 20 test images" in result.stdout and "0 of 3 classified right" in result.stdout
    with Image.open(tmp_path / "g.gif") as gif:
        assert gif.n_frames == 2  # one per glimpse
    every = invoke("glimpses", run, "--mistakes", "--gif", tmp_path / "e.gif", "--n", "20", *cpu)
    assert f"{wrong} of {wrong} mistakes in 20 test images" in every.stdout  # --n above the mistakes: all of them
    plain = invoke("glimpses", run, "--gif", tmp_path / "h.gif", "--n", "20", *cpu)
    assert f"{20 - wrong} of 20 classified right" in plain.stdout


def test_mistakes_of_a_model_without_any_is_one_clear_error(run: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(draw_cli, "misclassified", lambda model, test, target: torch.zeros(len(test.images), dtype=torch.bool))
    result = invoke("glimpses", run, "--mistakes", "--gif", tmp_path / "g.gif", "--threads", "1", "--device", "cpu")
    assert result.exit_code == 1 and "classifies all 20 test images right: no mistakes to show" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "g.gif").exists()
