"""Training settings: one home for each default and list of modes, and the resume tags on every field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import TINY_ARGS, invoke

from drawcli.choices import AMP_MODES, BINARIZE_MODES, COMPILE_CHOICES, COMPILE_MODES, DEVICES, LR_SCHEDULES
from drawcli.errors import ConfigError
from drawcli.training.settings import EXECUTION, RUN, TrainSettings


def test_every_field_is_tagged_run_or_execution() -> None:
    """Resume's rules come from these tags, so an untagged field would be neither kept nor changeable."""
    fields = [f.name for f in dataclasses.fields(TrainSettings)]
    assert sorted(TrainSettings.fields_tagged(RUN) + TrainSettings.fields_tagged(EXECUTION)) == sorted(fields)
    assert TrainSettings.fields_tagged(RUN) == ("dataset", "binarize", "redraw", "batch_size", "lr", "lr_schedule", "window_lr", "clip", "beta1", "beta2",
                                                "kl_warmup", "ema", "teachers", "teacher_weight", "teacher_temperature",
                                                "locate_loss",
                                                "seed")  # fmt: skip


@pytest.mark.parametrize(("field", "allowed"), [("amp", AMP_MODES), ("compile", COMPILE_CHOICES), ("compile_mode", COMPILE_MODES),
                                                ("binarize", BINARIZE_MODES), ("device", DEVICES),
                                                ("lr_schedule", LR_SCHEDULES)])  # fmt: skip
def test_modes_are_checked_against_their_one_list(field: str, allowed: tuple[str, ...]) -> None:
    for value in allowed:
        assert getattr(TrainSettings(**{field: value}), field) == value
    flag = field.replace("_", "-")
    with pytest.raises(ConfigError, match=rf"^unknown --{flag} 'nope'; expected one of {', '.join(allowed)}$"):
        TrainSettings(**{field: "nope"})


def test_cosine_learning_rate_by_hand() -> None:
    """lr (1 + cos(pi s / 4)) / 2 for s = 0..4: 1, (1 + 1/sqrt 2) / 2, 1/2, (1 - 1/sqrt 2) / 2, 0 (times lr)."""
    cosine = TrainSettings(lr=2e-3, lr_schedule="cosine")
    assert [cosine.lr_at(s, 4) for s in range(5)] == pytest.approx([2e-3, 1.7071068e-3, 1e-3, 0.2928932e-3, 0.0])
    assert TrainSettings(lr=2e-3).lr_at(3, 4) == 2e-3  # constant
    assert cosine.lr_at(9, 4) == 0.0  # past the end (a shortened resume) it stays at 0


def test_run_json_round_trip_drops_retired_fields_and_refuses_unknown_ones() -> None:
    settings = TrainSettings(lr=3e-4, steps=7, compile_mode="reduce-overhead")
    assert settings.compile == "on"  # a compile mode implies --compile on
    assert TrainSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert TrainSettings.from_dict({**settings.to_dict(), "extra": {}}) == settings  # run.json of earlier versions
    old = {**settings.to_dict(), "compile_mode": "default"}  # --compile was a flag: run.json held a bool
    assert TrainSettings.from_dict({**old, "compile": True}).compile == "on"
    assert TrainSettings.from_dict({**old, "compile": False}).compile == "off"
    with pytest.raises(ConfigError, match="^unknown training setting\\(s\\): warp$"):
        TrainSettings.from_dict({"warp": 9})


@pytest.mark.parametrize("field", ["label_smoothing", "glimpse_loss"])
def test_a_retired_objective_term_loads_when_off_and_is_refused_when_used(field: str) -> None:
    """0.1.0 wrote label_smoothing and glimpse_loss in every run.json, 0.0 when off: such a run.json
    resumes as the same run without them; one that used the term is refused by name."""
    settings = TrainSettings(lr=3e-4, seed=5)
    assert TrainSettings.from_dict({**settings.to_dict(), "label_smoothing": 0.0, "glimpse_loss": 0.0}) == settings
    with pytest.raises(ConfigError, match=f"^training setting '{field}' is 0.25, but drawcli 0.1.0 was the last version "
                                          f"with '{field}'; load this file with drawcli 0.1.0$"):  # fmt: skip
        TrainSettings.from_dict({**settings.to_dict(), field: 0.25})


def test_train_defaults_are_the_settings_defaults(idx_dir: Path, tmp_path: Path) -> None:
    """A run given no training options saves exactly TrainSettings' defaults (plus what was given)."""
    run = tmp_path / "run"
    assert invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--steps", "1", "--quiet").exit_code == 0
    saved = json.loads((run / "run.json").read_text())["settings"]
    given = {"data_dir": str(idx_dir), "steps": 1, "batch_size": 16, "threads": 1}
    assert saved == {**TrainSettings().to_dict(), **given}


def test_preset_with_resume_is_refused(idx_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--steps", "1", "--quiet",
                  "--sample-every", "0").exit_code == 0  # fmt: skip
    result = invoke("train", "--resume", run, "--preset", "paper-mnist", "--steps", "2")
    assert result.exit_code == 2
    assert "error: --preset sets up a new run; a resumed run keeps its own settings (drop --preset)" in result.stderr


def test_resume_takes_execution_options_and_a_new_length(idx_dir: Path, tmp_path: Path) -> None:
    """--steps replaces --epochs on resume; --sample-every and --threads are taken; run.json keeps the start."""
    run = tmp_path / "run"
    assert invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--epochs", "1", "--quiet",
                  "--sample-every", "0").exit_code == 0  # fmt: skip
    result = invoke("train", "--resume", run, "--steps", "5", "--sample-every", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000005.gif"]
    assert json.loads((run / "run.json").read_text())["settings"]["epochs"] == 1


def test_sample_boxes_asks_the_writer_not_its_name(idx_dir: Path, tmp_path: Path) -> None:
    """A writer that declares no windows (here the built-in no-attention one) refuses --boxes by saying so."""
    run = tmp_path / "run"
    assert invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--steps", "1", "--quiet",
                  "--writer", "none", "--sample-every", "0").exit_code == 0  # fmt: skip
    result = invoke("sample", run, "--gif", tmp_path / "s.gif", "--boxes")
    assert result.exit_code == 1
    assert "--boxes needs a writer that produces windows; this model's writer 'none' has none" in result.stderr
    assert not (tmp_path / "s.gif").exists()
