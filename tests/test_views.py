"""`evaluate --views`: shifted copies of each test image by hand, and their averaged probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, invoke

from drawcli import checkpoint, data, views
from drawcli.accuracy import predict


def test_a_shift_moves_the_image_and_repeats_its_edge() -> None:
    image = torch.arange(9, dtype=torch.uint8).reshape(1, 1, 3, 3)  # rows 0 1 2 / 3 4 5 / 6 7 8
    down_left = views.shifted(image, 1, -1)
    assert down_left.dtype == torch.uint8
    assert down_left[0, 0].tolist() == [[1, 2, 2], [1, 2, 2], [4, 5, 5]]
    assert views.shifted(image, 0, 0) is image  # the plain view is not copied
    assert views.shifted(image, -2, 2)[0, 0].tolist() == [[6, 6, 6], [6, 6, 6], [6, 6, 6]]


def test_views_go_diagonals_first_then_axes() -> None:
    assert views.offsets(1, 6) == [(0, 0)]
    assert views.offsets(5, 6) == [(0, 0), (6, 6), (-6, -6), (6, -6), (-6, 6)]
    assert views.offsets(9, 2)[5:] == [(2, 0), (0, 2), (-2, 0), (0, -2)]
    with pytest.raises(ValueError, match="views must be 1 to 9, not 10"):
        views.offsets(10, 1)


def test_evaluate_averages_the_probabilities_of_the_shifted_views(idx_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", run, "--steps", "2").exit_code == 0
    result = invoke("evaluate", run, "--views", "3", "--view-shift", "2", "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["views"] == {"count": 3, "shift": 2}
    test = data.load_labelled(data.open_dataset("mnist"), "test", idx_dir, (1, 28, 28))
    model = checkpoint.load_model(run)[0]
    probs = [predict(model, views.shifted(test.images, d, d), torch.device("cpu")).softmax(-1) for d in (0, 2, -2)]
    mean = sum(probs) / 3
    assert not probs[0].equal(probs[1])  # the shift changes what the model sees
    assert report["error"] == pytest.approx(100 * (mean.argmax(-1) != test.labels).sum().item() / 20)
    assert report["loss"] == pytest.approx(-mean[torch.arange(20), test.labels].log().mean().item(), rel=1e-5)

    draw = tmp_path / "draw"
    assert invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", draw, "--steps", "1", "--quiet").exit_code == 0
    for args, message in (((draw, "--views", "2"), "a DRAW model's bound has no views"),
                          ((run, "--views", "2", "--view-shift", "28"), "--view-shift must be under the images' 28 pixels"),
                          ((run, "--views", "10"), "less than or equal to 9"),
                          ((run, "--view-shift", "3"), "--view-shift is the shift of --views K's copies: give --views too"),
                          ((run, "--samples", "5"), "--samples is for DRAW models: the importance-weighted bound is DRAW's"),
                          ((run, "--binarize", "threshold"), "--binarize is for DRAW models: the classifier reads grey levels")):  # fmt: skip
        result = invoke("evaluate", *args)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
