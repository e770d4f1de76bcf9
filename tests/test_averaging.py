"""--ema: the moving average of the weights by hand, what a run saves, and its exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, invoke
from safetensors.torch import load_file
from torch import nn

from drawcli import checkpoint, kinds
from drawcli.training.averaging import WeightAverage, decay_at

DRAW = [*TINY_ARGS, "--quiet", "--device", "cpu"]


def test_decay_ramps_up_to_the_given_one() -> None:
    assert decay_at(0.999, 0) == pytest.approx(0.1)  # the first update keeps a tenth of the start
    assert decay_at(0.999, 90) == pytest.approx(0.91)
    assert decay_at(0.5, 10) == 0.5


def test_the_average_by_hand_and_applied_in_place() -> None:
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, 0.5)
    for step, value in enumerate((1.0, 2.0)):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(step)
    # step 0: d = 1/10, 0.1 * 0 + 0.9 * 1 = 0.9; step 1: d = 2/11, (2/11) 0.9 + (9/11) 2 = 1.8
    assert average.shadow[0].item() == pytest.approx(1.8)
    tensor = layer.weight
    with average.applied():
        assert layer.weight.item() == pytest.approx(1.8) and layer.weight is tensor
    assert layer.weight.item() == 2.0 and layer.weight is tensor
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(layer, 1.0)


def test_a_classifier_run_saves_the_average_trains_the_raw_weights_and_resumes_exactly(idx_dir: Path,
                                                                                        tmp_path: Path) -> None:  # fmt: skip
    common = [*CLASSIFIER, "--data-dir", idx_dir, "--lr", "1e-2"]
    runs = {name: tmp_path / name for name in ("plain", "ema1", "straight", "split")}
    for name, extra in (("plain", ["--steps", "1"]), ("ema1", ["--steps", "1", "--ema", "0.9"]),
                        ("straight", ["--steps", "4", "--ema", "0.9"]), ("split", ["--steps", "2", "--ema", "0.9"])):  # fmt: skip
        result = invoke("train", *common, *extra, "--out", runs[name])
        assert result.exit_code == 0, result.output
    assert invoke("train", "--resume", runs["split"], "--steps", "4", "--quiet").exit_code == 0

    # After one step the average is 0.1 start + 0.9 w (decay_at(0.9, 0) = 0.1); training followed the raw w,
    # which is what the run without --ema saved.
    torch.manual_seed(0)
    start = kinds.build(checkpoint.read_info(runs["plain"]).config).state_dict()
    raw = load_file(runs["plain"] / "checkpoint.safetensors")
    saved, kept = load_file(runs["ema1"] / "checkpoint.safetensors"), load_file(runs["ema1"] / "resume.safetensors")
    for name, w in raw.items():
        assert torch.equal(kept[f"model.{name}"], w)
        assert torch.allclose(saved[name], 0.1 * start[name] + 0.9 * w, atol=1e-6)
    assert not torch.equal(saved["classify.weight"], raw["classify.weight"])

    for file in ("checkpoint.safetensors", "resume.safetensors"):
        a, b = load_file(runs["straight"] / file), load_file(runs["split"] / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    epoch = json.loads((runs["straight"] / "metrics.jsonl").read_text().splitlines()[-1])
    report = json.loads(invoke("evaluate", runs["straight"], "--json", "--threads", "1").stdout)
    assert report["error"] == pytest.approx(epoch["test_error"])  # evaluate scores the averaged weights
    assert {"test_raw_error", "test_raw_loss"} <= set(epoch)


def test_a_draw_run_reports_both_bounds(idx_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "draw"
    result = invoke("train", *DRAW, "--data-dir", idx_dir, "--out", run, "--steps", "2", "--ema", "0.5")
    assert result.exit_code == 0, result.output
    epoch = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"| test bound {epoch['test_bound']:.2f} nats" in result.stderr and "(raw weights: bound " in result.stderr
    assert {"test_bound", "test_raw_bound"} <= set(epoch) and epoch["test_bound"] != epoch["test_raw_bound"]
    info = checkpoint.read_info(run)
    assert info.training["ema"] == 0.5 and info.training["last_test"]["bound"] == epoch["test_bound"]


@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_a_decay_outside_0_1_is_refused(idx_dir: Path, tmp_path: Path, value: str) -> None:
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", tmp_path / "run", "--steps", "1", "--ema", value)
    assert result.exit_code == 2 and f"--ema {float(value)} is not a decay" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_a_resume_keeps_the_runs_decay(idx_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", run, "--steps", "1", "--ema", "0.9").exit_code == 0
    result = invoke("train", "--resume", run, "--ema", "0.5", "--steps", "2", "--quiet")
    assert result.exit_code == 2 and "--ema 0.5 conflicts with the run being resumed (ema = 0.9)" in result.output
