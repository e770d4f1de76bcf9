"""Runs written by drawcli 0.1.0 (commit 6d1a645, before the options removed in 0.2.0; its checkpoints'
version field set to the 0.1.0 a release would have written): tiny DRAW and classifier runs in
tests/data/v0.1.0, trained on `write_idx_dataset`'s data, load, sample, evaluate to the numbers 0.1.0
gave, and resume to the weights 0.1.0's own resume reached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import invoke, write_idx_dataset
from safetensors.torch import load_file

OLD = Path(__file__).parent / "data" / "v0.1.0"


@pytest.fixture
def old_data(tmp_path: Path) -> Path:
    write_idx_dataset(tmp_path / "data", n_train=48, n_test=20)  # the data 0.1.0 trained the runs on
    return tmp_path / "data"


def test_old_runs_inspect_and_sample(tmp_path: Path) -> None:
    for name, kind in (("draw", "draw"), ("classifier", "classifier")):
        report = json.loads(invoke("inspect", OLD / name, "--json").stdout)
        assert report["drawcli_version"] == "0.1.0" and report["config"]["kind"] == kind
        assert "glimpse_hidden" not in report["config"]  # retired at its neutral value
    # 0.1.0's one config held both kinds' fields: each now loads as its own kind's config.
    draw, classifier = (json.loads(invoke("inspect", OLD / name, "--json").stdout)["config"] for name in ("draw", "classifier"))
    assert "classes" not in draw and draw["enc_size"] == 8
    assert not {"enc_size", "z_size", "writer", "write_size", "canvas"} & set(classifier) and classifier["classes"] == 10
    assert invoke("sample", OLD / "draw", "--png", tmp_path / "s.png", "--device", "cpu").exit_code == 0
    assert (tmp_path / "s.png").is_file()


def test_old_runs_evaluate_as_they_did(old_data: Path) -> None:
    draw = json.loads(invoke("evaluate", OLD / "draw", "--json", "--device", "cpu", "--data-dir", old_data).stdout)
    assert draw["bound"] == 549.8918565899133
    classifier = json.loads(invoke("evaluate", OLD / "classifier", "--json", "--device", "cpu", "--data-dir", old_data).stdout)
    assert classifier["error"] == 90.0


def test_an_old_run_resumes_to_the_weights_0_1_0_reached(old_data: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(OLD / "draw", tmp_path / "draw"))
    result = invoke("train", "--resume", run, "--steps", "6", "--threads", "1", "--quiet", "--data-dir", old_data)
    assert result.exit_code == 0, result.output
    now, then = load_file(str(run / "checkpoint.safetensors")), load_file(str(OLD / "draw-step-6.safetensors"))
    assert now.keys() == then.keys() and all(torch.equal(now[k], then[k]) for k in now)
